#include "attention_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include <ATen/Parallel.h>

#include "simd.h"

namespace s2s::kernels {
namespace {

// --- the operations on one row, portable --------------------------------------------------------------

struct PortableRows {
  static void tanh_add(const float* k, const float* q, float* t, int64_t n) {
    for (int64_t i = 0; i < n; ++i) t[i] = std::tanh(k[i] + q[i]);
  }
  static float dot(const float* a, const float* b, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
    return s;
  }
  static void axpy(float alpha, const float* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
  }
  // returns x . g and adds alpha g to y
  static float dot_axpy(const float* x, const float* g, float alpha, float* y, int64_t n) {
    float s = 0;
    for (int64_t i = 0; i < n; ++i) {
      s += x[i] * g[i];
      y[i] += alpha * g[i];
    }
    return s;
  }
  // d = g v (1 - t^2): gk += d, gq += d, gv += g t
  static void additive_back(float g, const float* t, const float* v, float* gk, float* gq, float* gv, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
      const float d = g * v[i] * (1 - t[i] * t[i]);
      gk[i] += d;
      gq[i] += d;
      gv[i] += g * t[i];
    }
  }
};

// --- the same with AVX2 and FMA -----------------------------------------------------------------------

#ifdef S2S_SIMD_AVX2
using simd::horizontal_sum;
using simd::tail_mask;

struct Avx2Rows {
  S2S_AVX2 static void tanh_add(const float* k, const float* q, float* t, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(t + i, Sleef_tanhf8_u35avx2(_mm256_add_ps(_mm256_loadu_ps(k + i), _mm256_loadu_ps(q + i))));
    if (i < n) {
      const auto m = tail_mask(n - i);
      const auto x = _mm256_add_ps(_mm256_maskload_ps(k + i, m), _mm256_maskload_ps(q + i, m));
      _mm256_maskstore_ps(t + i, m, Sleef_tanhf8_u35avx2(x));
    }
  }
  S2S_AVX2 static float dot(const float* a, const float* b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
      s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    if (i < n) {
      const auto m = tail_mask(n - i);
      s1 = _mm256_fmadd_ps(_mm256_maskload_ps(a + i, m), _mm256_maskload_ps(b + i, m), s1);
    }
    return horizontal_sum(_mm256_add_ps(s0, s1));
  }
  S2S_AVX2 static void axpy(float alpha, const float* x, float* y, int64_t n) {
    const auto a = _mm256_set1_ps(alpha);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    if (i < n) {
      const auto m = tail_mask(n - i);
      _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(a, _mm256_maskload_ps(x + i, m), _mm256_maskload_ps(y + i, m)));
    }
  }
  S2S_AVX2 static float dot_axpy(const float* x, const float* g, float alpha, float* y, int64_t n) {
    const auto a = _mm256_set1_ps(alpha);
    __m256 s = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const auto gi = _mm256_loadu_ps(g + i);
      s = _mm256_fmadd_ps(_mm256_loadu_ps(x + i), gi, s);
      _mm256_storeu_ps(y + i, _mm256_fmadd_ps(a, gi, _mm256_loadu_ps(y + i)));
    }
    if (i < n) {
      const auto m = tail_mask(n - i);
      const auto gi = _mm256_maskload_ps(g + i, m);
      s = _mm256_fmadd_ps(_mm256_maskload_ps(x + i, m), gi, s);
      _mm256_maskstore_ps(y + i, m, _mm256_fmadd_ps(a, gi, _mm256_maskload_ps(y + i, m)));
    }
    return horizontal_sum(s);
  }
  S2S_AVX2 static void additive_back(float g, const float* t, const float* v, float* gk, float* gq, float* gv,
                                     int64_t n) {
    const auto gg = _mm256_set1_ps(g), one = _mm256_set1_ps(1.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
      const auto ti = _mm256_loadu_ps(t + i);
      const auto d = _mm256_mul_ps(_mm256_mul_ps(gg, _mm256_loadu_ps(v + i)), _mm256_fnmadd_ps(ti, ti, one));
      _mm256_storeu_ps(gk + i, _mm256_add_ps(_mm256_loadu_ps(gk + i), d));
      _mm256_storeu_ps(gq + i, _mm256_add_ps(_mm256_loadu_ps(gq + i), d));
      _mm256_storeu_ps(gv + i, _mm256_fmadd_ps(gg, ti, _mm256_loadu_ps(gv + i)));
    }
    if (i < n) {
      const auto m = tail_mask(n - i);
      const auto ti = _mm256_maskload_ps(t + i, m);
      const auto d = _mm256_mul_ps(_mm256_mul_ps(gg, _mm256_maskload_ps(v + i, m)), _mm256_fnmadd_ps(ti, ti, one));
      _mm256_maskstore_ps(gk + i, m, _mm256_add_ps(_mm256_maskload_ps(gk + i, m), d));
      _mm256_maskstore_ps(gq + i, m, _mm256_add_ps(_mm256_maskload_ps(gq + i, m), d));
      _mm256_maskstore_ps(gv + i, m, _mm256_fmadd_ps(gg, ti, _mm256_maskload_ps(gv + i, m)));
    }
  }
};

#endif

// --- the step, over a block of sentences [b0, b1) -------------------------------------------------------

// Sentences per block of work. Fixed (not derived from the thread count), so that grad_v's per-block
// partial sums, added in block order, give the same bits with any number of threads.
constexpr int64_t kBlock = 8;

template <class Rows>
void forward_block(Score score, const StepShape& n, int64_t b0, int64_t b1, const float* keys, const float* values,
                   const float* q, const float* v, const bool* mask, float scale, float* tanh_out, float* weights,
                   float* context) {
  const auto [B, S, A, C] = n;
  (void)B;
  std::vector<float> scratch(tanh_out ? 0 : static_cast<size_t>(A));
  for (int64_t b = b0; b < b1; ++b) {
    const float* qb = q + b * A;
    float* w = weights + b * S;
    float top = -std::numeric_limits<float>::infinity();
    for (int64_t s = 0; s < S; ++s) {
      if (!mask[b * S + s]) continue;
      const float* k = keys + (b * S + s) * A;
      float e;
      if (score == Score::Additive) {
        float* t = tanh_out ? tanh_out + (b * S + s) * A : scratch.data();
        Rows::tanh_add(k, qb, t, A);
        e = Rows::dot(t, v, A);
      } else {
        e = scale * Rows::dot(k, qb, A);
      }
      w[s] = e;
      top = std::max(top, e);
    }
    float z = 0;
    for (int64_t s = 0; s < S; ++s) {
      w[s] = mask[b * S + s] ? std::exp(w[s] - top) : 0.0f;  // exp(-inf) would be 0 too; this never reads -inf
      z += w[s];
    }
    float* c = context + b * C;
    std::fill(c, c + C, 0.0f);
    if (!(z > 0)) continue;  // no real position (not made by the model's batches): weights and context 0
    const float inv = 1.0f / z;
    for (int64_t s = 0; s < S; ++s) {
      w[s] *= inv;
      if (w[s] != 0) Rows::axpy(w[s], values + (b * S + s) * C, c, C);
    }
  }
}

template <class Rows>
void backward_block(Score score, const StepShape& n, int64_t b0, int64_t b1, const float* keys, const float* values,
                    const float* q, const float* v, const float* tanh, const float* weights, const float* gc,
                    const float* gw_in, float scale, float* grad_keys, float* grad_values, float* grad_q,
                    float* grad_v_partial) {
  const auto [B, S, A, C] = n;
  (void)B;
  std::vector<float> gw(static_cast<size_t>(S));
  for (int64_t b = b0; b < b1; ++b) {
    const float* w = weights + b * S;
    const float* gcb = gc + b * C;
    float* gqb = grad_q + b * A;
    std::fill(gqb, gqb + A, 0.0f);
    // context = sum_s w_s values_s: dL/dw_s = gc . values_s, dL/dvalues_s = w_s gc
    float mean = 0;
    for (int64_t s = 0; s < S; ++s) {
      gw[s] = 0;
      if (w[s] == 0) continue;  // masked (or underflowed): no gradient reaches it through the softmax either
      gw[s] = Rows::dot_axpy(values + (b * S + s) * C, gcb, w[s], grad_values + (b * S + s) * C, C);
      if (gw_in) gw[s] += gw_in[b * S + s];
      mean += w[s] * gw[s];
    }
    // softmax: dL/de_s = w_s (dL/dw_s - sum_r w_r dL/dw_r)
    for (int64_t s = 0; s < S; ++s) {
      if (w[s] == 0) continue;
      const float g = w[s] * (gw[s] - mean);
      const auto row = (b * S + s) * A;
      if (score == Score::Additive) {
        Rows::additive_back(g, tanh + row, v, grad_keys + row, gqb, grad_v_partial, A);
      } else {
        Rows::axpy(g * scale, q + b * A, grad_keys + row, A);
        Rows::axpy(g * scale, keys + row, gqb, A);
      }
    }
  }
}

template <class Rows>
void forward_all(Score score, const StepShape& n, const float* keys, const float* values, const float* q,
                 const float* v, const bool* mask, float scale, float* tanh_out, float* weights, float* context) {
  const int64_t blocks = (n.B + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    forward_block<Rows>(score, n, first * kBlock, std::min(n.B, last * kBlock), keys, values, q, v, mask, scale,
                        tanh_out, weights, context);
  });
}

template <class Rows>
void backward_all(Score score, const StepShape& n, const float* keys, const float* values, const float* q,
                  const float* v, const float* tanh, const float* weights, const float* gc, const float* gw_in,
                  float scale, float* grad_keys, float* grad_values, float* grad_q, float* grad_v) {
  const int64_t blocks = (n.B + kBlock - 1) / kBlock;
  const bool want_v = score == Score::Additive && grad_v;
  std::vector<float> partial(want_v ? static_cast<size_t>(blocks * n.A) : 0, 0.0f);
  std::vector<float> unused(want_v ? 0 : static_cast<size_t>(n.A));  // Dot never writes it
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    for (int64_t k = first; k < last; ++k)
      backward_block<Rows>(score, n, k * kBlock, std::min(n.B, (k + 1) * kBlock), keys, values, q, v, tanh, weights,
                           gc, gw_in, scale, grad_keys, grad_values, grad_q,
                           want_v ? partial.data() + k * n.A : unused.data());
  });
  if (want_v) {
    std::fill(grad_v, grad_v + n.A, 0.0f);
    for (int64_t k = 0; k < blocks; ++k)
      for (int64_t a = 0; a < n.A; ++a) grad_v[a] += partial[static_cast<size_t>(k * n.A + a)];
  }
}

}  // namespace

bool vectorized() { return simd::avx2(); }

void attention_step_forward(Score score, const StepShape& n, const float* keys, const float* values, const float* q,
                            const float* v, const bool* mask, float scale, float* tanh_out, float* weights,
                            float* context) {
#ifdef S2S_SIMD_AVX2
  if (vectorized())
    return forward_all<Avx2Rows>(score, n, keys, values, q, v, mask, scale, tanh_out, weights, context);
#endif
  forward_all<PortableRows>(score, n, keys, values, q, v, mask, scale, tanh_out, weights, context);
}

void attention_step_backward(Score score, const StepShape& n, const float* keys, const float* values, const float* q,
                             const float* v, const float* tanh, const float* weights, const float* gc,
                             const float* gw_in, float scale, float* grad_keys, float* grad_values, float* grad_q,
                             float* grad_v) {
#ifdef S2S_SIMD_AVX2
  if (vectorized())
    return backward_all<Avx2Rows>(score, n, keys, values, q, v, tanh, weights, gc, gw_in, scale, grad_keys,
                                  grad_values, grad_q, grad_v);
#endif
  backward_all<PortableRows>(score, n, keys, values, q, v, tanh, weights, gc, gw_in, scale, grad_keys, grad_values,
                             grad_q, grad_v);
}

}  // namespace s2s::kernels
