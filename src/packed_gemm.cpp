#include "packed_gemm.h"

#include <algorithm>
#include <atomic>

#include <ATen/Parallel.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define S2S_PACKED_GEMM 1
#define S2S_AVX512_KERNEL __attribute__((target("avx512f")))
#endif

namespace s2s {
namespace {

constexpr int64_t kPanel = 32;  // columns per panel: two 16-lane vectors
constexpr int64_t kRows = 8;    // rows per kernel call: 8 x 2 accumulators of the 32 vector registers

std::atomic<bool> allowed{true};

#ifdef S2S_PACKED_GEMM
// out[r, 0:32] = sum_k a[r, k] panel[k, 0:32] (+ c[r, 0:32]) for R rows; m0 / m1: which of the 32 columns exist.
template <int R>
S2S_AVX512_KERNEL void panel_rows(const float* a, int64_t lda, const float* panel, int64_t K, const float* c,
                                  int64_t ldc, float* out, int64_t ldo, __mmask16 m0, __mmask16 m1) {
  __m512 acc[R][2];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    const __m512 b0 = _mm512_loadu_ps(panel + k * kPanel), b1 = _mm512_loadu_ps(panel + k * kPanel + 16);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 ar = _mm512_set1_ps(a[r * lda + k]);
      acc[r][0] = _mm512_fmadd_ps(ar, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(ar, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    if (c) {  // the product first, then c added, as a BLAS call with beta = 1 does
      acc[r][0] = _mm512_add_ps(acc[r][0], _mm512_maskz_loadu_ps(m0, c + r * ldc));
      acc[r][1] = _mm512_add_ps(acc[r][1], _mm512_maskz_loadu_ps(m1, c + r * ldc + 16));
    }
    _mm512_mask_storeu_ps(out + r * ldo, m0, acc[r][0]);
    _mm512_mask_storeu_ps(out + r * ldo + 16, m1, acc[r][1]);
  }
}

using PanelRowsFn = void (*)(const float*, int64_t, const float*, int64_t, const float*, int64_t, float*, int64_t,
                             __mmask16, __mmask16);
constexpr PanelRowsFn kPanelRows[kRows + 1] = {nullptr,        panel_rows<1>, panel_rows<2>, panel_rows<3>, panel_rows<4>,
                                               panel_rows<5>, panel_rows<6>, panel_rows<7>, panel_rows<8>};

__mmask16 lanes(int64_t n) { return n >= 16 ? __mmask16(0xFFFF) : n <= 0 ? __mmask16(0) : __mmask16((1u << n) - 1); }
#endif

}  // namespace

bool PackedMatrix::available() {
#ifdef S2S_PACKED_GEMM
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") != 0;
  }();
  return supported && allowed.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

void PackedMatrix::allow(bool value) { allowed.store(value); }

PackedMatrix::PackedMatrix(const torch::Tensor& b) : k_(b.size(0)), n_(b.size(1)) {
  TORCH_CHECK(b.dim() == 2 && b.is_cpu() && b.scalar_type() == torch::kFloat, "PackedMatrix: float32 CPU [K, N] expected");
  torch::NoGradGuard no_grad;
  const int64_t panels = (n_ + kPanel - 1) / kPanel;
  auto padded = torch::constant_pad_nd(b.detach(), {0, panels * kPanel - n_});  // [K, panels * 32]
  panels_ = padded.view({k_, panels, kPanel}).permute({1, 0, 2}).contiguous();
}

torch::Tensor PackedMatrix::addmm(const torch::Tensor& c, const torch::Tensor& a_in, bool split_columns) const {
  TORCH_CHECK(defined() && a_in.dim() == 2 && a_in.size(1) == k_ && a_in.scalar_type() == torch::kFloat && a_in.is_cpu(),
              "PackedMatrix::addmm: a [M, ", k_, "] float32 expected, got ", a_in.sizes());
  const auto a = a_in.stride(1) == 1 ? a_in : a_in.contiguous();
  const int64_t M = a.size(0);
  auto out = torch::empty({M, n_}, a.options());
  torch::Tensor cc;
  int64_t ldc = 0;  // 0: c is a bias, the same row for every row of out
  if (c.defined()) {
    TORCH_CHECK(c.scalar_type() == torch::kFloat && ((c.dim() == 2 && c.size(0) == M && c.size(1) == n_) ||
                                                     (c.dim() == 1 && c.size(0) == n_)),
                "PackedMatrix::addmm: c [", M, ", ", n_, "] or [", n_, "] expected, got ", c.sizes());
    cc = c.stride(-1) == 1 ? c : c.contiguous();
    ldc = cc.dim() == 2 ? cc.stride(0) : 0;
  }
#ifdef S2S_PACKED_GEMM
  TORCH_CHECK(available(), "PackedMatrix::addmm: no AVX-512F on this processor");
  const float* const ap = a.data_ptr<float>();
  const float* const pp = panels_.data_ptr<float>();
  const float* const cp = cc.defined() ? cc.data_ptr<float>() : nullptr;
  float* const op = out.data_ptr<float>();
  const int64_t lda = a.stride(0), panels = panels_.size(0);
  // Panel by panel: a panel (K x 32 numbers) stays in cache for every block of rows.
  auto run = [&](int64_t first, int64_t last) {
    for (int64_t p = first; p < last; ++p) {
      const int64_t col = p * kPanel;
      const __mmask16 m0 = lanes(n_ - col), m1 = lanes(n_ - col - 16);
      for (int64_t i = 0; i < M; i += kRows) {
        const int64_t rows = std::min(kRows, M - i);
        kPanelRows[rows](ap + i * lda, lda, pp + p * k_ * kPanel, k_, cp ? cp + i * ldc + col : nullptr, ldc,
                         op + i * n_ + col, n_, m0, m1);
      }
    }
  };
  // Not split by default, like the one-thread OpenBLAS calls it replaces: a recurrence's [64 x 256] x
  // [256 x 256] split across two threads made greedy search 0.90x as fast, the fork and join costing more
  // than the halves saved.
  if (split_columns)
    at::parallel_for(0, panels, 8, run);
  else
    run(0, panels);
#else
  TORCH_CHECK(false, "PackedMatrix::addmm: not built for this processor");
#endif
  return out;
}

}  // namespace s2s
