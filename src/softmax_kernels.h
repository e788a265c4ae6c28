// Softmax cross-entropy over the target vocabulary on the CPU, row by row: one read of a row of logits
// from memory, the rest while the row is in cache (simd.h: AVX2 path chosen at run time, or portable loops).
#pragma once
#include <cstdint>

namespace s2s::kernels {

// For each row r of logits [N, V] (contiguous float32): probs[r] = softmax(logits[r]),
// lse[r] = log sum_v exp(logits[r, v]) and mean[r] = mean_v logits[r, v].
void softmax_rows(const float* logits, int64_t N, int64_t V, float* probs, float* lse, float* mean);

// In place, probs [N, V] -> the gradient of g[r] * ((1 - s) nll_r + s (lse_r - mean_r)) with respect to the
// logits: g[r] (probs[r] - s / V - (1 - s) onehot(target[r])). Rows with g[r] == 0 become 0.
void cross_entropy_grad_rows(float* probs, const float* g, const int64_t* target, float smoothing, int64_t N,
                             int64_t V);

}  // namespace s2s::kernels
