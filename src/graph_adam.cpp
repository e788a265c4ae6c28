#include "graph_adam.h"

#include <atomic>
#include <cmath>

#include <torch/version.h>

#include "optimizer_step.h"

// LibTorch 2.3 and later multiply or divide a list of tensors by a one-value tensor in one multi-tensor
// operation (_foreach_mul_.Tensor); 1.13 has no such overload, and each tensor takes an operation.
// They also have at::_fused_adam_ with the learning rate as a tensor (2.2 added that overload).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define S2S_FOREACH_BY_TENSOR 1
#define S2S_FUSED_ADAM 1
#endif

namespace s2s {
namespace {

std::atomic<bool> in_graph{true};
std::atomic<bool> fused_enabled{true};

// The kernel wants each parameter's gradient and moments with exactly the parameter's strides: the
// graphs' gradients are made row-major (cuda_graph_update.cpp), Adam's moments with the parameter's.
bool row_major(const torch::Tensor& t) {
  int64_t expected = 1;
  for (int64_t d = t.dim() - 1; d >= 0; --d) {
    if (t.stride(d) != expected) return false;
    expected *= t.size(d);
  }
  return true;
}

void mul_by(const std::vector<torch::Tensor>& xs, const torch::Tensor& factor) {
#ifdef S2S_FOREACH_BY_TENSOR
  at::_foreach_mul_(xs, factor);
#else
  for (const auto& x : xs) x.mul_(factor);
#endif
}

void div_by(const std::vector<torch::Tensor>& xs, const torch::Tensor& divisor) {
#ifdef S2S_FOREACH_BY_TENSOR
  at::_foreach_div_(xs, divisor);
#else
  for (const auto& x : xs) x.div_(divisor);
#endif
}

}  // namespace

std::unique_ptr<GraphAdam> GraphAdam::make(torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& params,
                                           double clip_norm, std::string* why) {
  auto refuse = [&](const char* reason) {
    if (why) *why = reason;
    return std::unique_ptr<GraphAdam>();
  };
  auto* adam = dynamic_cast<torch::optim::Adam*>(&optimizer);
  if (!adam) return refuse("the optimizer is not Adam");
  if (adam->param_groups().size() != 1) return refuse("Adam has several parameter groups");
  const auto& group = adam->param_groups()[0];
  const auto& o = static_cast<const torch::optim::AdamOptions&>(group.options());
  if (o.weight_decay() != 0 || o.amsgrad()) return refuse("Adam has weight decay or amsgrad");
  if (params.empty() || group.params().size() != params.size()) return refuse("Adam's parameters are not the model's");
  const auto& first = params.front();
  int64_t with_state = 0, step = -1;
  for (size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    if (!group.params()[i].is_same(p)) return refuse("Adam's parameters are not the model's");
    if (p.device() != first.device() || p.scalar_type() != first.scalar_type() || p.is_sparse() ||
        !at::isFloatingType(p.scalar_type()))
      return refuse("the parameters are not dense floating-point tensors of one type on one device");
    if (const auto* state = adam_state(*adam, p)) {
      if (step >= 0 && state->step() != step) return refuse("Adam's parameters are at different steps");
      step = state->step();
      ++with_state;
    }
  }
  if (with_state != 0 && with_state != static_cast<int64_t>(params.size()))
    return refuse("some of Adam's parameters have no state yet");

  std::unique_ptr<GraphAdam> g(new GraphAdam());
  g->adam_ = adam;
  g->params_ = params;
  for (const auto& p : params) {
    auto* state = adam_state(*adam, p);
    if (!state) {  // made as Adam::step makes it, without counting a step
      state = &next_step_state(*adam, p);
      state->step(state->step() - 1);
    }
    g->exp_avgs_.push_back(state->exp_avg());
    g->exp_avg_sqs_.push_back(state->exp_avg_sq());
  }
  g->clip_norm_ = clip_norm;
  g->beta1_ = std::get<0>(o.betas());
  g->beta2_ = std::get<1>(o.betas());
  g->eps_ = o.eps();
  const auto scalar = torch::TensorOptions().dtype(first.scalar_type()).device(first.device());
  g->neg_step_size_ = torch::zeros({}, scalar);
  g->sqrt_bias2_ = torch::ones({}, scalar);
  g->fused_ = fused_adam() && fused_adam_available() && first.is_cuda() && first.scalar_type() == torch::kFloat;
  for (const auto& p : params) g->fused_ = g->fused_ && row_major(p);
  if (g->fused_) {
    const auto f32 = torch::TensorOptions().dtype(torch::kFloat).device(first.device());
    g->lr_ = torch::zeros({}, f32);
    g->step_ = torch::zeros({}, f32);
    g->steps_.assign(params.size(), g->step_);
  }
  return g;
}

void GraphAdam::begin_step() {
  int64_t step = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& state = next_step_state(*adam_, params_[i]);
    // The recorded operations hold these tensors: a state replaced since (an optimizer loaded from a
    // checkpoint in the middle of a run) would no longer be the one updated.
    TORCH_CHECK(state.exp_avg().is_same(exp_avgs_[i]) && state.exp_avg_sq().is_same(exp_avg_sqs_[i]),
                "GraphAdam: Adam's state of parameter ", i, " was replaced after the step was recorded");
    step = state.step();
  }
  const double lr = adam_->param_groups()[0].options().get_lr();
  torch::NoGradGuard no_grad;
  if (fused_) {  // the kernel computes the bias corrections from the step count
    lr_.fill_(lr);
    step_.fill_(static_cast<double>(step));
    return;
  }
  const double bias1 = 1 - std::pow(beta1_, static_cast<double>(step));
  const double bias2 = 1 - std::pow(beta2_, static_cast<double>(step));
  neg_step_size_.fill_(-lr / bias1);  // on a GPU: a kernel taking the number, launched without waiting
  sqrt_bias2_.fill_(std::sqrt(bias2));
}

void GraphAdam::apply(const std::vector<torch::Tensor>& grads) {
  TORCH_CHECK(grads.size() == params_.size(), "GraphAdam: ", grads.size(), " gradients for ", params_.size(),
              " parameters");
  torch::NoGradGuard no_grad;
#ifdef S2S_FUSED_ADAM
  if (fused_) {
    // The kernel divides each gradient by grad_scale and stores it: 1 / the clipping factor, at least 1.
    c10::optional<torch::Tensor> scale;
    if (clip_norm_ > 0)
      scale = torch::clamp((at::stack(at::_foreach_norm(grads)).norm() + 1e-6) / clip_norm_, 1.0, c10::nullopt);
    at::_fused_adam_(params_, grads, exp_avgs_, exp_avg_sqs_, /*max_exp_avg_sqs=*/{}, steps_, lr_, beta1_, beta2_,
                     /*weight_decay=*/0.0, eps_, /*amsgrad=*/false, /*maximize=*/false, scale, /*found_inf=*/c10::nullopt);
    return;
  }
#endif
  if (clip_norm_ > 0) {
    // clip_grad_norm_: the 2-norm of the gradients' 2-norms, and the factor max_norm / (norm + 1e-6)
    // clamped to at most 1, here without reading the norm back
    const auto norm = at::stack(at::_foreach_norm(grads)).norm();
    mul_by(grads, torch::clamp(clip_norm_ / (norm + 1e-6), c10::nullopt, 1.0));
  }
  // Adam::step: m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g g;
  // p += -lr / bias1 * m / (sqrt(v) / sqrt(bias2) + eps)
  at::_foreach_mul_(exp_avgs_, beta1_);
  at::_foreach_add_(exp_avgs_, grads, 1 - beta1_);
  at::_foreach_mul_(exp_avg_sqs_, beta2_);
  at::_foreach_addcmul_(exp_avg_sqs_, grads, grads, 1 - beta2_);
  auto denom = at::_foreach_sqrt(exp_avg_sqs_);
  div_by(denom, sqrt_bias2_);
  at::_foreach_add_(denom, eps_);
  auto step = at::_foreach_div(exp_avgs_, denom);
  mul_by(step, neg_step_size_);
  at::_foreach_add_(params_, step);
}

GraphAdam::Saved GraphAdam::save() const {
  torch::NoGradGuard no_grad;
  Saved s;
  for (size_t i = 0; i < params_.size(); ++i) {
    s.params.push_back(params_[i].detach().clone());
    s.exp_avgs.push_back(exp_avgs_[i].clone());
    s.exp_avg_sqs.push_back(exp_avg_sqs_[i].clone());
    s.steps.push_back(adam_state(*adam_, params_[i])->step());
  }
  return s;
}

void GraphAdam::restore(const Saved& s) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    params_[i].copy_(s.params[i]);
    exp_avgs_[i].copy_(s.exp_avgs[i]);
    exp_avg_sqs_[i].copy_(s.exp_avg_sqs[i]);
    adam_state(*adam_, params_[i])->step(s.steps[i]);
  }
}

void set_optimizer_in_graph(bool enabled) { in_graph.store(enabled); }
bool optimizer_in_graph() { return in_graph.load(); }

void set_fused_adam(bool enabled) { fused_enabled.store(enabled); }
bool fused_adam() { return fused_enabled.load(); }
bool fused_adam_available() {
#ifdef S2S_FUSED_ADAM
  return true;
#else
  return false;
#endif
}

}  // namespace s2s
