// The row-parallel output layer and cross-entropy against the plain LibTorch expressions they replace,
// values and gradients, in float64, with sizes that make them split the work into several blocks and
// threads.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "row_parallel.h"

namespace s2s {
namespace {

// Runs the test body with two LibTorch threads (so that blocks go to both) and restores the count.
class TwoThreads {
 public:
  TwoThreads() : before_(torch::get_num_threads()) { torch::set_num_threads(2); }
  ~TwoThreads() { torch::set_num_threads(before_); }

 private:
  int before_;
};

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double err = (a - b).abs().max().item<double>(), scale = b.abs().max().item<double>();
  EXPECT_LE(err, 1e-12 * std::max(scale, 1.0)) << what << ": max difference " << err;
}

// Switches the CPU's row routes off for one scope (the route of other devices, e.g. a GPU).
class OtherDevicesRoute {
 public:
  explicit OtherDevicesRoute(bool on) { set_row_kernels(!on); }
  ~OtherDevicesRoute() { set_row_kernels(true); }
};

TEST(RowParallel, LinearRowsIsXWTransposedPlusBWithTheSameGradients) {
  TwoThreads threads;
  torch::manual_seed(3);
  const auto opt = torch::TensorOptions().dtype(torch::kFloat64);
  for (bool other_route : {false, true})
  for (const auto& shape : {std::vector<int64_t>{37, 5}, std::vector<int64_t>{4, 9, 5}}) {
    SCOPED_TRACE(other_route ? "the route of other devices" : "blocks of rows");
    OtherDevicesRoute route(other_route);
    auto x = torch::randn(shape, opt).requires_grad_(), W = torch::randn({150, 5}, opt).requires_grad_();
    auto b = torch::randn({150}, opt).requires_grad_();
    auto x2 = x.detach().clone().requires_grad_(), W2 = W.detach().clone().requires_grad_();
    auto b2 = b.detach().clone().requires_grad_();
    auto y = linear_rows(x, W, b);
    auto ref = torch::matmul(x2, W2.t()) + b2;
    expect_close(y, ref, "forward");
    auto weights = torch::randn(ref.sizes(), opt);  // a loss that weighs every output differently
    (y * weights).sum().backward();
    (ref * weights).sum().backward();
    expect_close(x.grad(), x2.grad(), "dL/dx");
    expect_close(W.grad(), W2.grad(), "dL/dW");
    expect_close(b.grad(), b2.grad(), "dL/db");
  }
}

// float64 on the CPU takes the route of other devices (the kernels are float32).
TEST(RowParallel, CrossEntropyRowsIsLogSoftmaxNllWithTheSameGradients) {
  TwoThreads threads;
  torch::manual_seed(4);
  const auto opt = torch::TensorOptions().dtype(torch::kFloat64);
  const int64_t N = 50, V = 20000, pad = 0;  // V large: blocks of 13 rows, so several blocks per thread
  auto targets = torch::randint(1, V, {N}, torch::kInt64);
  targets.index_put_({torch::arange(0, N, 7)}, pad);  // some padding rows
  auto real = targets.ne(pad);
  for (double smoothing : {0.0, 0.1}) {
    SCOPED_TRACE("label smoothing " + std::to_string(smoothing));
    auto logits = (3 * torch::randn({N, V}, opt)).requires_grad_();
    auto logits2 = logits.detach().clone().requires_grad_();
    auto r = cross_entropy_rows(logits, targets, smoothing, pad);
    auto logp = torch::log_softmax(logits2, 1);
    auto nll = (-logp.gather(1, targets.unsqueeze(1)).squeeze(1)).masked_fill(real.logical_not(), 0);
    auto uniform = (-logp.mean(1)).masked_fill(real.logical_not(), 0);
    auto ref = (1 - smoothing) * nll + smoothing * uniform;
    expect_close(r.loss, ref, "loss rows");
    expect_close(r.nll, nll.detach(), "nll rows");
    EXPECT_FALSE(r.nll.requires_grad());
    EXPECT_EQ(r.loss.masked_select(real.logical_not()).abs().sum().item<double>(), 0.0);
    auto weights = torch::rand({N}, opt);
    (r.loss * weights).sum().backward();
    (ref * weights).sum().backward();
    expect_close(logits.grad(), logits2.grad(), "dL/dlogits");
    EXPECT_EQ(logits.grad().index_select(0, torch::arange(0, N, 7)).abs().max().item<double>(), 0.0)
        << "padding rows must get no gradient";
  }
}

}  // namespace
}  // namespace s2s
