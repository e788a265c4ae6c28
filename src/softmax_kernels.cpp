#include "softmax_kernels.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include <ATen/Parallel.h>

#include "simd.h"

namespace s2s::kernels {
namespace {

constexpr int64_t kRowGrain = 8;  // rows per unit of work split across threads

struct RowStats {
  float lse, mean;
};

// Sums in double: one float accumulator over thousands of terms would lose ~1e-5 (the AVX2 path keeps
// 8 partial sums instead).
RowStats softmax_row_portable(const float* l, int64_t V, float* p) {
  float top = -std::numeric_limits<float>::infinity();
  double total = 0;
  for (int64_t i = 0; i < V; ++i) {
    top = std::max(top, l[i]);
    total += l[i];
  }
  double z = 0;
  for (int64_t i = 0; i < V; ++i) z += (p[i] = std::exp(l[i] - top));
  const float inv = static_cast<float>(1.0 / z);
  for (int64_t i = 0; i < V; ++i) p[i] *= inv;
  return {top + static_cast<float>(std::log(z)), static_cast<float>(total / static_cast<double>(V))};
}

void scale_shift_portable(float* p, float g, float shift, int64_t V) {
  for (int64_t i = 0; i < V; ++i) p[i] = g * (p[i] - shift);
}

#ifdef S2S_SIMD_AVX2
using simd::tail_mask;

S2S_AVX2 RowStats softmax_row_avx2(const float* l, int64_t V, float* p) {
  const auto lowest = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  __m256 top = lowest, total = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= V; i += 8) {
    const auto x = _mm256_loadu_ps(l + i);
    top = _mm256_max_ps(top, x);
    total = _mm256_add_ps(total, x);
  }
  const auto m = tail_mask(V - i);
  const int64_t tail = i;
  if (tail < V) {
    const auto x = _mm256_maskload_ps(l + tail, m);
    top = _mm256_max_ps(top, _mm256_blendv_ps(lowest, x, _mm256_castsi256_ps(m)));
    total = _mm256_add_ps(total, x);  // masked-off lanes load as 0
  }
  const float max = simd::horizontal_max(top);
  const auto shift = _mm256_set1_ps(max);
  __m256 z = _mm256_setzero_ps();
  for (i = 0; i + 8 <= V; i += 8) {
    const auto e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_loadu_ps(l + i), shift));
    _mm256_storeu_ps(p + i, e);
    z = _mm256_add_ps(z, e);
  }
  if (tail < V) {
    const auto e = _mm256_and_ps(Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(l + tail, m), shift)),
                                 _mm256_castsi256_ps(m));
    _mm256_maskstore_ps(p + tail, m, e);
    z = _mm256_add_ps(z, e);
  }
  const float sum = simd::horizontal_sum(z);
  const auto inv = _mm256_set1_ps(1.0f / sum);
  for (i = 0; i + 8 <= V; i += 8) _mm256_storeu_ps(p + i, _mm256_mul_ps(_mm256_loadu_ps(p + i), inv));
  if (tail < V) _mm256_maskstore_ps(p + tail, m, _mm256_mul_ps(_mm256_maskload_ps(p + tail, m), inv));
  return {max + std::log(sum), simd::horizontal_sum(total) / static_cast<float>(V)};
}

S2S_AVX2 void scale_shift_avx2(float* p, float g, float shift, int64_t V) {
  const auto gg = _mm256_set1_ps(g), ss = _mm256_set1_ps(shift);
  int64_t i = 0;
  for (; i + 8 <= V; i += 8) _mm256_storeu_ps(p + i, _mm256_mul_ps(gg, _mm256_sub_ps(_mm256_loadu_ps(p + i), ss)));
  if (i < V) {
    const auto m = tail_mask(V - i);
    _mm256_maskstore_ps(p + i, m, _mm256_mul_ps(gg, _mm256_sub_ps(_mm256_maskload_ps(p + i, m), ss)));
  }
}
#endif

}  // namespace

void softmax_rows(const float* logits, int64_t N, int64_t V, float* probs, float* lse, float* mean) {
  const bool vector = simd::avx2();
  at::parallel_for(0, N, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      RowStats s;
#ifdef S2S_SIMD_AVX2
      if (vector)
        s = softmax_row_avx2(logits + r * V, V, probs + r * V);
      else
#endif
        s = softmax_row_portable(logits + r * V, V, probs + r * V);
      (void)vector;
      lse[r] = s.lse;
      mean[r] = s.mean;
    }
  });
}

void cross_entropy_grad_rows(float* probs, const float* g, const int64_t* target, float smoothing, int64_t N,
                             int64_t V) {
  const bool vector = simd::avx2();
  const float shift = smoothing / static_cast<float>(V);
  at::parallel_for(0, N, kRowGrain, [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      float* p = probs + r * V;
      if (g[r] == 0) {
        std::fill(p, p + V, 0.0f);
        continue;
      }
#ifdef S2S_SIMD_AVX2
      if (vector)
        scale_shift_avx2(p, g[r], shift, V);
      else
#endif
        scale_shift_portable(p, g[r], shift, V);
      (void)vector;
      p[target[r]] -= g[r] * (1 - smoothing);
    }
  });
}

}  // namespace s2s::kernels
