#include "row_parallel.h"

#include <atomic>
#include <cstring>

#include <ATen/Parallel.h>

#include "softmax_kernels.h"

namespace s2s {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::atomic<bool> kernels_enabled{true};

// at::parallel_for over [0, n) in blocks of at least `grain`. Worker threads do not inherit the caller's
// autograd mode, so each block runs without gradient recording (the callers work on detached tensors).
template <class F>
void for_blocks(int64_t n, int64_t grain, const F& f) {
  at::parallel_for(0, n, grain, [&](int64_t begin, int64_t end) {
    torch::NoGradGuard no_grad;
    f(begin, end);
  });
}

class LinearRows : public torch::autograd::Function<LinearRows> {
 public:
  // x [N, K], W [V, K], b [V] -> [N, V]
  static torch::Tensor forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor W, torch::Tensor b) {
    x = x.detach().contiguous();
    auto w = W.detach(), bias = b.detach();
    auto y = torch::empty({x.size(0), w.size(0)}, x.options());
    const bool rows_of_bias = bias.is_contiguous() && y.scalar_type() == bias.scalar_type();
    for_blocks(x.size(0), 16, [&](int64_t begin, int64_t end) {
      auto out = y.narrow(0, begin, end - begin);
      if (rows_of_bias) {
        // b into each row, then out += x W^T in place (addmm with self == result skips its own copy of
        // the broadcast bias, a strided pass that cost more than the rows written here)
        const auto row_bytes = static_cast<size_t>(bias.numel()) * bias.element_size();
        const auto* src = static_cast<const char*>(bias.data_ptr());
        auto* dst = static_cast<char*>(out.data_ptr());
        for (int64_t r = 0; r < end - begin; ++r) std::memcpy(dst + r * row_bytes, src, row_bytes);
        torch::addmm_out(out, out, x.narrow(0, begin, end - begin), w.t());
      } else {
        torch::addmm_out(out, bias, x.narrow(0, begin, end - begin), w.t());
      }
    });
    ctx->save_for_backward({x, W});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto x = saved[0].detach(), w = saved[1].detach();
    const auto gy = grads[0].detach().contiguous();  // [N, V]
    torch::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) {
      gx = torch::empty_like(x);
      for_blocks(x.size(0), 16, [&](int64_t begin, int64_t end) {
        auto out = gx.narrow(0, begin, end - begin);
        torch::mm_out(out, gy.narrow(0, begin, end - begin), w);
      });
    }
    if (ctx->needs_input_grad(1) || ctx->needs_input_grad(2)) {
      gw = torch::empty_like(w);
      gb = torch::empty({w.size(0)}, w.options());
      for_blocks(w.size(0), 64, [&](int64_t begin, int64_t end) {
        auto g = gy.narrow(1, begin, end - begin);  // [N, rows of W]
        auto out_w = gw.narrow(0, begin, end - begin);
        auto out_b = gb.narrow(0, begin, end - begin);
        torch::mm_out(out_w, g.t(), x);
        torch::sum_out(out_b, g, {0});
      });
    }
    return {gx, gw, gb};
  }
};

class CrossEntropyRows : public torch::autograd::Function<CrossEntropyRows> {
 public:
  // logits [N, V], targets [N] -> {loss [N], nll [N]}
  static variable_list forward(AutogradContext* ctx, torch::Tensor logits, torch::Tensor targets, double smoothing,
                               int64_t pad) {
    auto l = logits.detach().contiguous();
    const int64_t N = l.size(0), V = l.size(1);
    auto real = targets.ne(pad);
    auto index = targets.clamp_min(0).unsqueeze(1);  // [N, 1]
    ctx->saved_data["smoothing"] = smoothing;
    if (l.is_cpu() && l.scalar_type() == torch::kFloat && index.scalar_type() == torch::kLong &&
        kernels_enabled.load(std::memory_order_relaxed)) {
      // softmax_kernels.h: the probabilities are kept and become the gradient in place in backward
      auto probs = torch::empty_like(l);
      auto lse = torch::empty({N}, l.options()), mean = torch::empty({N}, l.options());
      kernels::softmax_rows(l.data_ptr<float>(), N, V, probs.data_ptr<float>(), lse.data_ptr<float>(),
                            mean.data_ptr<float>());
      auto nll = (lse - l.gather(1, index).squeeze(1)).masked_fill_(real.logical_not(), 0);
      auto loss = nll;
      if (smoothing > 0) loss = (1 - smoothing) * nll + smoothing * (lse - mean).masked_fill_(real.logical_not(), 0);
      ctx->saved_data["probs"] = probs;  // not versioned: backward overwrites it, once
      ctx->save_for_backward({torch::Tensor(), torch::Tensor(), index.contiguous(), real});
      auto nll_out = nll.clone();
      ctx->mark_non_differentiable({nll_out});
      return {loss, nll_out};
    }
    // Other devices (a GPU) and types: LibTorch's log-softmax over all rows, a few passes over [N, V]
    auto logp = torch::log_softmax(l, 1);
    auto nll = (-logp.gather(1, index).squeeze(1)).masked_fill_(real.logical_not(), 0);
    auto loss = nll;
    if (smoothing > 0) {
      auto uniform = (-logp.mean(1)).masked_fill_(real.logical_not(), 0);  // cross-entropy to 1/V
      loss = (1 - smoothing) * nll + smoothing * uniform;
    }
    ctx->save_for_backward({logp, torch::Tensor(), index, real});
    auto nll_out = nll.clone();
    ctx->mark_non_differentiable({nll_out});
    return {loss, nll_out};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const double smoothing = ctx->saved_data["smoothing"].toDouble();
    if (ctx->saved_data.count("probs")) {
      auto probs = ctx->saved_data["probs"].toTensor();
      TORCH_CHECK(probs.defined(), "cross_entropy_rows: backward through the same graph twice");
      ctx->saved_data["probs"] = torch::Tensor();
      const auto index = saved[2], real = saved[3];
      const auto g = grads[0].detach().masked_fill(real.logical_not(), 0).contiguous();
      kernels::cross_entropy_grad_rows(probs.data_ptr<float>(), g.data_ptr<float>(), index.data_ptr<int64_t>(),
                                       static_cast<float>(smoothing), probs.size(0), probs.size(1));
      return {probs, torch::Tensor(), torch::Tensor(), torch::Tensor()};
    }
    // g softmax - (s / V) g in one pass after the exp, then - (1 - s) g at the targets. (Log-softmax's own
    // backward, from dL/dlogp, lost 1e-5 of the gradient in float32 on the CPU; this loses 6e-7.)
    const auto logp = saved[0].detach(), index = saved[2], real = saved[3];
    const int64_t V = logp.size(1);
    const auto g = grads[0].detach().masked_fill(real.logical_not(), 0).unsqueeze(1);  // [N, 1]: 0 on pad rows
    auto grad = torch::addcmul(g * (-smoothing / static_cast<double>(V)), torch::exp(logp), g);
    grad.scatter_add_(1, index, g * -(1 - smoothing));
    return {grad, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor linear_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b) {
  TORCH_CHECK(W.dim() == 2 && b.dim() == 1 && b.size(0) == W.size(0) && x.size(-1) == W.size(1),
              "linear_rows: x [..., K], W [V, K], b [V] expected, got ", x.sizes(), ", ", W.sizes(), ", ", b.sizes());
  auto sizes = x.sizes().vec();
  sizes.back() = W.size(0);
  if (!x.is_cpu() || !kernels_enabled.load(std::memory_order_relaxed))  // the bias added by the product itself
    return torch::addmm(b, x.reshape({-1, x.size(-1)}), W.t()).view(sizes);
  return LinearRows::apply(x.reshape({-1, x.size(-1)}), W, b).view(sizes);
}

void set_row_kernels(bool enabled) { kernels_enabled.store(enabled); }

RowCrossEntropy cross_entropy_rows(const torch::Tensor& logits, const torch::Tensor& targets, double smoothing,
                                   int64_t pad) {
  TORCH_CHECK(logits.dim() == 2 && targets.dim() == 1 && targets.size(0) == logits.size(0),
              "cross_entropy_rows: logits [N, V] and targets [N] expected, got ", logits.sizes(), ", ", targets.sizes());
  auto out = CrossEntropyRows::apply(logits, targets, smoothing, pad);
  return {out[0], out[1]};
}

}  // namespace s2s
