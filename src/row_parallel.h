// The two widest operations of a step, the output layer and its loss, split into blocks of rows that
// LibTorch's threads share. OpenBLAS gets one thread per call (runtime.h: two thread pools on the same
// cores oversubscribe them), so one [target tokens, vocabulary] product would otherwise run on one core.
// Each function computes what the plain expression in its comment computes, with its own gradient.
#pragma once
#include <torch/torch.h>

namespace s2s {

// x W^T + b for x [..., K], W [V, K], b [V] -> [..., V]. Forward and dL/dx split the rows of x across
// threads; dL/dW and dL/db split the rows of W. On other devices than the CPU: the plain expression.
torch::Tensor linear_rows(const torch::Tensor& x, const torch::Tensor& W, const torch::Tensor& b);

struct RowCrossEntropy {
  torch::Tensor loss;  // [N]: (1 - smoothing) * nll + smoothing * (lse - mean(logits)), 0 where target = pad
  torch::Tensor nll;   // [N]: lse - logits[target], 0 where target = pad (no gradient)
};
// Cross-entropy of logits [N, V] against targets [N] (pad rows give 0), with label smoothing towards the
// uniform distribution. log-softmax, loss and gradient (softmax - (1 - s) one-hot - s / V) are computed
// per block of rows that stays in cache; no [N, V] log-probability tensor is kept.
RowCrossEntropy cross_entropy_rows(const torch::Tensor& logits, const torch::Tensor& targets, double smoothing,
                                   int64_t pad);

}  // namespace s2s
