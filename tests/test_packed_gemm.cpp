// The packed-matrix product (packed_gemm.h) against float64 products: every row count of the kernel's
// blocks and their remainders, column counts that leave a partial panel, strided inputs, and the three
// forms of c (none, a matrix, a bias).
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "packed_gemm.h"

namespace s2s {
namespace {

TEST(PackedGemm, MatchesTheFloat64ProductForEveryShape) {
  if (!PackedMatrix::available()) GTEST_SKIP() << "no AVX-512F on this processor";
  torch::manual_seed(11);
  for (int64_t M : {1, 3, 8, 13, 32, 64}) {
    for (int64_t K : {1, 7, 256, 300}) {
      for (int64_t N : {1, 5, 16, 17, 32, 33, 70, 256}) {
        SCOPED_TRACE("M " + std::to_string(M) + " K " + std::to_string(K) + " N " + std::to_string(N));
        const auto W = torch::randn({N, K});               // a weight; B = W^T is a strided view
        const auto wide = torch::randn({M, K + 5});        // a with row stride K + 5
        const auto a = wide.narrow(1, 2, K);
        const auto c_wide = torch::randn({M, N + 3});
        const auto c = c_wide.narrow(1, 1, N);             // c with row stride N + 3
        const auto bias = torch::randn({N});
        const PackedMatrix packed(W.t());
        ASSERT_EQ(packed.k(), K);
        ASSERT_EQ(packed.n(), N);
        const auto product = torch::mm(a.to(torch::kDouble), W.t().to(torch::kDouble));
        const double tol = 1e-5 * std::sqrt(static_cast<double>(K)) * 4;
        auto check = [&](const torch::Tensor& got, const torch::Tensor& want, const char* what) {
          ASSERT_EQ(got.sizes(), want.sizes()) << what;
          EXPECT_LE((got.to(torch::kDouble) - want).abs().max().item<double>(), tol) << what;
        };
        check(packed.addmm(torch::Tensor(), a), product, "a B");
        check(packed.addmm(c, a), product + c.to(torch::kDouble), "c + a B");
        check(packed.addmm(bias, a), product + bias.to(torch::kDouble), "bias + a B");
        {  // the column panels shared among two threads: the same numbers
          const int before = torch::get_num_threads();
          torch::set_num_threads(2);
          EXPECT_TRUE(packed.addmm(bias, a, /*split_columns=*/true).equal(packed.addmm(bias, a))) << "split columns";
          torch::set_num_threads(before);
        }
        // the other orientation: B = W itself (what dL/dx = dy W multiplies by)
        const auto dy = torch::randn({M, N});
        check(PackedMatrix(W).addmm(torch::Tensor(), dy), torch::mm(dy.to(torch::kDouble), W.to(torch::kDouble)),
              "dy W");
      }
    }
  }
}

TEST(PackedGemm, WrongShapesAreRejected) {
  if (!PackedMatrix::available()) GTEST_SKIP() << "no AVX-512F on this processor";
  const PackedMatrix packed(torch::randn({4, 6}));
  EXPECT_THROW(packed.addmm(torch::Tensor(), torch::randn({2, 5})), c10::Error);
  EXPECT_THROW(packed.addmm(torch::randn({2, 5}), torch::randn({2, 4})), c10::Error);
  EXPECT_THROW(packed.addmm(torch::Tensor(), torch::randn({2, 4}, torch::kDouble)), c10::Error);
}

}  // namespace
}  // namespace s2s
