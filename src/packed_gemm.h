// Products with a few rows (one step of a recurrence: the batch, 32-64 sentences) by a matrix that stays
// the same for many of them (a weight, for all the steps of a batch).
//
// OpenBLAS copies ("packs") the whole right-hand matrix into its own layout in every call. With 32 rows
// that copy is about as much work as the product: [32 x 256] x [256 x 256] ran at 66-76 GFLOP/s against
// 150-173 for the same product from a matrix packed once (one core of this project's AVX-512 machine).
// A PackedMatrix is that packing done once; its product is an AVX-512 kernel that sums over k in order with
// one fused multiply-add per term, as OpenBLAS's kernel does (the results came out bit-identical in that
// comparison, which is not promised in general). Only where the processor has AVX-512F (`available()`);
// elsewhere the callers keep to LibTorch's products.
#pragma once
#include <cstdint>
#include <utility>

#include <torch/torch.h>

namespace s2s {

class PackedMatrix {
 public:
  // Packs B [K, N] (float32 CPU, any strides; W.t() of a weight W [N, K] is a view, not a copy).
  explicit PackedMatrix(const torch::Tensor& b);
  PackedMatrix() = default;
  // Packed before (panels() of a PackedMatrix of B [K, N]), e.g. kept in an autograd node's saved data.
  PackedMatrix(torch::Tensor panels, int64_t k, int64_t n) : panels_(std::move(panels)), k_(k), n_(n) {}
  const torch::Tensor& panels() const { return panels_; }
  bool defined() const { return panels_.defined(); }
  int64_t k() const { return k_; }
  int64_t n() const { return n_; }

  // c + a B, or a B when c is undefined: a [M, K] float32 CPU with unit column stride; c [M, N] or [N] (a
  // bias). Returns a new [M, N] tensor (no autograd). On the calling thread, or with split_columns, its
  // column panels shared among LibTorch's threads (for a wide B: each thread reads only its part).
  torch::Tensor addmm(const torch::Tensor& c, const torch::Tensor& a, bool split_columns = false) const;

  // Whether this build and processor run the kernel, and it is allowed (the default; the tests switch it).
  static bool available();
  // available(), and m is a float32 CPU matrix that can be packed.
  static bool suits(const torch::Tensor& m) {
    return available() && m.is_cpu() && m.scalar_type() == torch::kFloat && m.dim() == 2;
  }
  static void allow(bool allowed);

 private:
  torch::Tensor panels_;  // [ceil(N / 32), K, 32]: column block p of B, row by row, zero past column N
  int64_t k_ = 0, n_ = 0;
};

}  // namespace s2s
