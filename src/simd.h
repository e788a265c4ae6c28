// What the hand-written CPU kernels (attention_kernels.cpp, softmax_kernels.cpp) share: an AVX2 + FMA
// path, compiled per function (the rest of the program keeps the compiler's default target) and chosen
// at run time, with SLEEF's vector exp and tanh, the ones LibTorch's own AVX2 kernels call.
#pragma once
#include <cstdint>

#if defined(__x86_64__) && defined(S2S_HAVE_SLEEF)
#include <immintrin.h>
#define S2S_SIMD_AVX2 1
#define S2S_AVX2 __attribute__((target("avx2,fma")))

// From sleef.h, which declares its AVX2 functions only when a whole file is compiled for AVX. Error
// bounds: exp 1.0 ULP; tanh 3.5 ULP (SLEEF's u35 variant: 2.4x the u10 variant's rate on this project's
// machine, and the additive attention evaluates it for every source position of every target step).
extern "C" __m256 Sleef_tanhf8_u35avx2(__m256);
extern "C" __m256 Sleef_expf8_u10avx2(__m256);

namespace s2s::simd {

S2S_AVX2 inline float horizontal_sum(__m256 x) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

S2S_AVX2 inline float horizontal_max(__m256 x) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// The first n < 8 lanes: masked loads and stores that touch only the row.
S2S_AVX2 inline __m256i tail_mask(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

}  // namespace s2s::simd
#endif

namespace s2s::simd {
// True when this build has the AVX2 path, the processor runs it, and it is allowed (the default).
bool avx2();
// Off: the portable loops everywhere (the tests run both paths).
void allow_avx2(bool allowed);
}  // namespace s2s::simd
