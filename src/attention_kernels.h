// One decoder step of attention on the CPU, fused: scores, masked softmax and context in one pass over
// the source positions forward, and one pass backward that adds the keys' and values' gradients into
// buffers kept for the whole target sentence. Written as plain loops over float32 rows, with an AVX2
// path (simd.h) chosen at run time.
//
// The unfused expression (attention.cpp) makes for every step a [batch, src_len, attn] tensor for the
// sum, one for the tanh, one for each gradient, and adds each step's [batch, src_len, *] key and value
// gradients into the running total: about a dozen passes over memory per step where these make two.
//
// Shapes, all contiguous row-major float32: keys [B, S, A], values [B, S, C], q [B, A], v [A],
// mask [B, S] (true on real tokens; every row has at least one), weights [B, S], context [B, C].
#pragma once
#include <cstdint>

namespace s2s::kernels {

enum class Score { Additive, Dot };  // v . tanh(k + q)   or   scale * (k . q)

struct StepShape {
  int64_t B, S, A, C;
};

// Whether the AVX2 path is used on this machine (false: the portable loops).
bool vectorized();

// Forward. scores -> softmax over the real positions (exactly 0 on the others) -> weights, context.
// Additive: tanh_out [B, S, A] (may be null when no backward follows) receives tanh(k + q) of the real
// positions, which the backward reads. Dot: v and tanh_out are unused.
void attention_step_forward(Score score, const StepShape& n, const float* keys, const float* values, const float* q,
                            const float* v, const bool* mask, float scale, float* tanh_out, float* weights,
                            float* context);

// Backward, given dL/dcontext (gc [B, C]) and optionally dL/dweights (gw_in [B, S], may be null):
//   grad_keys [B, S, A] and grad_values [B, S, C] are ADDED to (the sentence's running totals);
//   grad_q [B, A] and grad_v [A] (additive only; may be null) are overwritten.
// keys is read by Dot, tanh by Additive (the other may be null).
void attention_step_backward(Score score, const StepShape& n, const float* keys, const float* values, const float* q,
                             const float* v, const float* tanh, const float* weights, const float* gc,
                             const float* gw_in, float scale, float* grad_keys, float* grad_values, float* grad_q,
                             float* grad_v);

}  // namespace s2s::kernels
