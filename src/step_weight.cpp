#include "step_weight.h"

#include <atomic>

namespace s2s {
namespace {

std::atomic<bool> enabled{true};

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// The weight passes through unchanged; the backward turns the steps' recorded inputs and output
// gradients into dL/dW with one product, plus whatever reached the weight otherwise.
class RecordedWeight : public torch::autograd::Function<RecordedWeight> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor weight, torch::Tensor inputs, torch::Tensor grads,
                               torch::Tensor used) {
    // filled in later by the steps: kept as references, not versioned
    ctx->saved_data["inputs"] = inputs;
    ctx->saved_data["grads"] = grads;
    ctx->saved_data["used"] = used;
    ctx->set_materialize_grads(false);
    return {weight};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    // the slots that steps recorded (the others hold no inputs)
    const auto used = ctx->saved_data["used"].toTensor().item<int64_t>();
    const auto inputs = ctx->saved_data["inputs"].toTensor().narrow(0, 0, used);
    const auto grads = ctx->saved_data["grads"].toTensor().narrow(0, 0, used);
    const auto K = inputs.size(2), N = grads.size(2);
    auto gw = torch::mm(grads.reshape({-1, N}).t(), inputs.reshape({-1, K}));  // [N, K]
    if (grad_out[0].defined()) gw = gw + grad_out[0];
    return {gw, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// One step's c + x W^T. The forward records x in inputs[step]; the backward records dy in grads[step]
// and returns dL/dx and dL/dc, not dL/dW (RecordedWeight makes that).
class StepProduct : public torch::autograd::Function<StepProduct> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor weight, torch::Tensor c,
                               torch::Tensor inputs, torch::Tensor grads, int64_t step,
                               const PackedMatrix& packed_forward, const PackedMatrix& packed_backward) {
    inputs.select(0, step).copy_(x);
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["grads"] = grads;
    ctx->saved_data["step"] = step;
    ctx->saved_data["c_dim"] = c.numel() ? c.dim() : int64_t{0};
    if (packed_backward.defined()) ctx->saved_data["packed"] = packed_backward.panels();
    ctx->set_materialize_grads(false);
    if (packed_forward.defined()) return {packed_forward.addmm(c.numel() ? c : torch::Tensor(), x)};
    return {c.numel() ? torch::addmm(c, x, weight.t()) : torch::mm(x, weight.t())};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const auto& dy = grad_out[0];
    if (!dy.defined()) return variable_list(8);
    const auto weight = ctx->saved_data["weight"].toTensor();
    ctx->saved_data["grads"].toTensor().select(0, ctx->saved_data["step"].toInt()).copy_(dy);
    const auto c_dim = ctx->saved_data["c_dim"].toInt();
    const torch::Tensor dc = c_dim == 2 ? dy : c_dim == 1 ? dy.sum(0) : torch::Tensor();
    const auto packed = ctx->saved_data.find("packed");
    auto dx = packed != ctx->saved_data.end()
                  ? PackedMatrix(packed->second.toTensor(), weight.size(0), weight.size(1)).addmm(torch::Tensor(), dy)
                  : torch::mm(dy, weight);
    return {dx, torch::Tensor(), dc, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
  }
};

}  // namespace

StepWeight::StepWeight(const torch::Tensor& weight, int64_t steps, int64_t rows) : weight_(weight) {
  if (!enabled.load(std::memory_order_relaxed) || steps < 2) return;
  const bool packable = PackedMatrix::suits(weight);
  if (!torch::GradMode::is_enabled()) {  // search: the products only, by W^T packed once
    if (packable) forward_ = PackedMatrix(weight.t());
    return;
  }
  if (!weight.requires_grad()) return;
  inputs_ = torch::empty({steps, rows, weight.size(1)}, weight.options().requires_grad(false));
  // steps whose output gets no gradient leave their slot as it is: zero
  grads_ = torch::zeros({steps, rows, weight.size(0)}, weight.options().requires_grad(false));
  used_ = torch::zeros({1}, torch::kLong);
  weight_ = RecordedWeight::apply(weight, inputs_, grads_, used_)[0];
  if (packable) {
    forward_ = PackedMatrix(weight.detach().t());
    backward_ = PackedMatrix(weight.detach());
  }
}

torch::Tensor StepWeight::addmm(const torch::Tensor& c, const torch::Tensor& x) {
  if (forward_.defined() && !deferred() && !torch::GradMode::is_enabled() && x.dim() == 2 &&
      (!c.defined() || c.dim() == 2 || c.dim() == 1))
    return forward_.addmm(c, x);
  if (!deferred() || next_ >= inputs_.size(0) || x.dim() != 2 || x.size(0) != inputs_.size(1)) {
    // a plain product (also the fallback for a step that does not fit the recording: autograd then
    // sends its dL/dW through RecordedWeight's own input gradient)
    return c.defined() ? torch::addmm(c, x, weight_.t()) : torch::mm(x, weight_.t());
  }
  const auto step = next_++;
  used_.data_ptr<int64_t>()[0] = next_;
  // every input of a custom function must be defined: an empty tensor stands for "no c"
  return StepProduct::apply(x, weight_, c.defined() ? c : torch::empty({0}, x.options()), inputs_, grads_, step,
                            forward_, backward_)[0];
}

void set_deferred_step_weights(bool on) { enabled.store(on); }
bool deferred_step_weights_enabled() { return enabled.load(std::memory_order_relaxed); }

}  // namespace s2s
