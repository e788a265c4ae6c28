#include "step_weight.h"

#include <atomic>

namespace s2s {

// The steps' recording: each step's input x_j (forward) and output gradient dy_j with its step (backward).
// c10::List is shared by reference, so the nodes' saved copies and the StepWeight see the same lists. The
// inputs are held detached: the recording node lies upstream of the steps that write into it, and
// tensors holding their autograd history here would make a cycle that outlives the graph.
struct StepRecording {
  c10::List<at::Tensor> inputs, grads;
  c10::List<int64_t> steps;  // the step of each entry of grads
};

namespace {

std::atomic<bool> enabled{true};

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// c + x W^T: a matrix product, or for a stack of weights [D, N, K] a batched one (x [D, rows, K]).
torch::Tensor product(const torch::Tensor& c, const torch::Tensor& x, const torch::Tensor& w) {
  if (w.dim() == 3) return c.defined() ? torch::baddbmm(c, x, w.transpose(1, 2)) : torch::bmm(x, w.transpose(1, 2));
  return c.defined() ? torch::addmm(c, x, w.t()) : torch::mm(x, w.t());
}

StepRecording recording_of(AutogradContext* ctx) {
  return {ctx->saved_data["inputs"].toTensorList(), ctx->saved_data["grads"].toTensorList(),
          ctx->saved_data["steps"].toIntList()};
}

// The weight passes through unchanged; the backward turns the steps' recorded inputs and output
// gradients into dL/dW with one product, plus whatever reached the weight otherwise.
class RecordedWeight : public torch::autograd::Function<RecordedWeight> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor weight, const StepRecording& recording) {
    ctx->saved_data["inputs"] = recording.inputs;  // filled in later by the steps
    ctx->saved_data["grads"] = recording.grads;
    ctx->saved_data["steps"] = recording.steps;
    ctx->set_materialize_grads(false);
    return {weight};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    auto recording = recording_of(ctx);
    // The steps that got a gradient, in the order their backward ran (the reverse of the steps',
    // normally): their inputs in the same order. Steps without a gradient add nothing.
    std::vector<torch::Tensor> xs, dys;
    for (size_t i = 0; i < recording.grads.size(); ++i) {
      xs.push_back(recording.inputs.get(recording.steps.get(i)));
      dys.push_back(recording.grads.get(i));
    }
    recording.inputs.clear();  // released now, not when the graph is
    recording.grads.clear();
    torch::Tensor gw;
    if (!xs.empty()) {
      // [(D,) steps * rows, K] and [(D,) steps * rows, N]
      const auto x = torch::cat(xs, -2), dy = torch::cat(dys, -2);
      gw = x.dim() == 3 ? torch::bmm(dy.transpose(1, 2), x) : torch::mm(dy.t(), x);  // [(D,) N, K]
      if (grad_out[0].defined()) gw = gw + grad_out[0];
    } else {
      gw = grad_out[0];
    }
    return {gw, torch::Tensor()};
  }
};

// One step's c + x W^T. The forward records x; the backward records dy and returns dL/dx and dL/dc, not
// dL/dW (RecordedWeight makes that).
class StepProduct : public torch::autograd::Function<StepProduct> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor weight, torch::Tensor c,
                               const StepRecording& recording, int64_t step, const PackedMatrix& packed_forward,
                               const PackedMatrix& packed_backward) {
    recording.inputs.push_back(x.detach());  // a reference, no copy
    ctx->saved_data["weight"] = weight;
    ctx->saved_data["grads"] = recording.grads;
    ctx->saved_data["steps"] = recording.steps;
    ctx->saved_data["step"] = step;
    ctx->saved_data["c_sizes"] = c.numel() ? c.sizes().vec() : std::vector<int64_t>{};
    if (packed_backward.defined()) ctx->saved_data["packed"] = packed_backward.panels();
    ctx->set_materialize_grads(false);
    if (packed_forward.defined()) return {packed_forward.addmm(c.numel() ? c : torch::Tensor(), x)};
    return {product(c.numel() ? c : torch::Tensor(), x, weight)};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grad_out) {
    const auto& dy = grad_out[0];
    if (!dy.defined()) return variable_list(7);
    const auto weight = ctx->saved_data["weight"].toTensor();
    ctx->saved_data["grads"].toTensorList().push_back(dy.detach());
    ctx->saved_data["steps"].toIntList().push_back(ctx->saved_data["step"].toInt());
    const auto c_sizes = ctx->saved_data["c_sizes"].toIntVector();  // c: as dy, or a bias to broadcast
    const torch::Tensor dc = c_sizes.empty() ? torch::Tensor() : dy.sizes() == c_sizes ? dy : dy.sum_to_size(c_sizes);
    torch::Tensor dx;
    if (ctx->needs_input_grad(0)) {  // not for a first step from a zero state
      const auto packed = ctx->saved_data.find("packed");
      dx = packed != ctx->saved_data.end()
               ? PackedMatrix(packed->second.toTensor(), weight.size(0), weight.size(1)).addmm(torch::Tensor(), dy)
               : weight.dim() == 3 ? torch::bmm(dy, weight) : torch::mm(dy, weight);
    }
    return {dx, torch::Tensor(), dc, torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
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
  steps_ = steps;
  rows_ = rows;
  recording_ = std::make_shared<StepRecording>();
  weight_ = RecordedWeight::apply(weight, *recording_)[0];
  if (packable) {
    forward_ = PackedMatrix(weight.detach().t());
    backward_ = PackedMatrix(weight.detach());
  }
}

torch::Tensor StepWeight::addmm(const torch::Tensor& c, const torch::Tensor& x) {
  if (forward_.defined() && !deferred() && !torch::GradMode::is_enabled() && x.dim() == 2 &&
      (!c.defined() || c.dim() == 2 || c.dim() == 1))
    return forward_.addmm(c, x);
  if (!deferred() || next_ >= steps_ || x.dim() != weight_.dim() || x.size(-2) != rows_) {
    // a plain product (also the fallback for a step that does not fit the recording: autograd then
    // sends its dL/dW through RecordedWeight's own input gradient)
    return product(c, x, weight_);
  }
  const auto step = next_++;
  // every input of a custom function must be defined: an empty tensor stands for "no c"
  return StepProduct::apply(x, weight_, c.defined() ? c : torch::empty({0}, x.options()), *recording_, step,
                            forward_, backward_)[0];
}

void set_deferred_step_weights(bool on) { enabled.store(on); }
bool deferred_step_weights_enabled() { return enabled.load(std::memory_order_relaxed); }

}  // namespace s2s
