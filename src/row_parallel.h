// The two widest operations of a step, the output layer and its loss, split into blocks of rows that
// LibTorch's threads share. OpenBLAS gets one thread per call (runtime.h: two thread pools on the same
// cores oversubscribe them), so one [target tokens, vocabulary] product would otherwise run on one core.
// Each function computes what the plain expression in its comment computes, with its own gradient.
#pragma once
#include <torch/torch.h>

namespace s2s {

// x W^T + b for x [..., K], W [V, K], b [V] -> [..., V]. Forward and dL/dx split the rows of x across
// threads; dL/dW and dL/db split the rows of W. On other devices than the CPU: one addmm, the bias added
// by the product.
torch::Tensor linear_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b);

struct RowCrossEntropy {
  torch::Tensor loss;  // [N]: (1 - smoothing) * nll + smoothing * (lse - mean(logits)), 0 where target = pad
  torch::Tensor nll;   // [N]: lse - logits[target], 0 where target = pad (no gradient)
};
// Cross-entropy of logits [N, V] against targets [N] (pad rows give 0), with label smoothing towards the
// uniform distribution. On the CPU in float32, the kernels of softmax_kernels.h compute log-softmax, loss
// and gradient (softmax - (1 - s) one-hot - s / V) row by row while the row is in cache, and the kept
// probabilities become the gradient in place. Elsewhere (a GPU, other types): LibTorch's log_softmax and
// its backward over all rows, with the [N, V] log-probabilities kept for the backward pass.
RowCrossEntropy cross_entropy_rows(const torch::Tensor& logits, const torch::Tensor& targets, double smoothing,
                                   int64_t pad);

// The CPU's routes above (blocks of rows, the softmax kernels) on (the default), or the route of other
// devices on the CPU too: for the tests and `s2s bench --cpu-kernels off`.
void set_row_kernels(bool enabled);

}  // namespace s2s
