// clip_and_step (optimizer_step.h) against LibTorch's own clip_grad_norm_ and torch::optim::Adam: the
// same parameters and moments after several steps, clipping active, inactive and off, a parameter without
// gradient, sizes with vector tails and chunk boundaries; the fused and the unfused route taking turns on
// one optimiser (so each finds the state the other left); the same bits at any thread count.
#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "optimizer_step.h"
#include "simd.h"
#include "worker_threads.h"

namespace s2s {
namespace {

class Route {
 public:
  // fused: the fused routes (else LibTorch's); multi_tensor: the multi-tensor route a GPU takes, here on
  // the CPU, instead of the fused loop
  Route(bool fused, bool avx2, bool multi_tensor = false) {
    set_fused_optimizer(fused);
    simd::allow_avx2(avx2);
    set_multi_tensor_on_cpu(multi_tensor);
  }
  ~Route() {
    set_fused_optimizer(true);
    simd::allow_avx2(true);
    set_multi_tensor_on_cpu(false);
  }
};

std::vector<bool> simd_paths() { return simd::avx2() ? std::vector<bool>{true, false} : std::vector<bool>{false}; }

// Shapes: tails shorter than a vector, one over a 16,384-element chunk boundary, a bias.
const std::vector<std::vector<int64_t>> kShapes = {{37}, {5, 19}, {16390}, {3, 7, 11}, {8}};

std::vector<torch::Tensor> make_params(uint64_t seed) {
  torch::manual_seed(seed);
  std::vector<torch::Tensor> ps;
  for (const auto& s : kShapes) ps.push_back(torch::randn(s).requires_grad_(true));
  return ps;
}

std::vector<torch::Tensor> clone_params(const std::vector<torch::Tensor>& ps) {
  std::vector<torch::Tensor> out;
  for (const auto& p : ps) out.push_back(p.detach().clone().requires_grad_(true));
  return out;
}

// Gradients of step k: the last parameter gets none every other step (Adam skips it then).
std::vector<torch::Tensor> make_grads(int k, double magnitude) {
  torch::manual_seed(1000 + k);
  std::vector<torch::Tensor> gs;
  for (size_t i = 0; i < kShapes.size(); ++i)
    gs.push_back(i + 1 == kShapes.size() && k % 2 == 1 ? torch::Tensor() : magnitude * torch::randn(kShapes[i]));
  return gs;
}

void set_grads(std::vector<torch::Tensor>& ps, const std::vector<torch::Tensor>& gs) {
  for (size_t i = 0; i < ps.size(); ++i) ps[i].mutable_grad() = gs[i].defined() ? gs[i].clone() : torch::Tensor();
}

double norm_in_double(const std::vector<torch::Tensor>& gs) {
  double s = 0;
  for (const auto& g : gs)
    if (g.defined()) s += g.to(torch::kDouble).pow(2).sum().item<double>();
  return std::sqrt(s);
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol, const std::string& what) {
  const double err = (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
  EXPECT_LE(err, tol * std::max(1.0, b.abs().max().item<double>())) << what << ": max difference " << err;
}

// The optimiser's state of p (optimizer_step.h's lookup; on LibTorch's own optimiser it throws unless
// the key is the one LibTorch uses).
torch::optim::AdamParamState& state_of(torch::optim::Adam& adam, const torch::Tensor& p) {
  auto* s = adam_state(adam, p);
  if (!s) throw std::runtime_error("no Adam state for the parameter");
  return *s;
}

// Steps `steps` times with the unfused LibTorch route on one copy and clip_and_step on another (fused
// on the steps where `fused_on(k)`), and compares parameters and moments.
void compare_with_torch(double clip, double grad_magnitude, bool avx2, bool (*fused_on)(int),
                        bool (*multi_tensor_on)(int) = [](int) { return false; }) {
  const int steps = 6;
  auto reference = make_params(7);
  auto mine = clone_params(reference);
  torch::optim::Adam ref_opt(reference, torch::optim::AdamOptions(0.01));
  torch::optim::Adam my_opt(mine, torch::optim::AdamOptions(0.01));
  for (int k = 0; k < steps; ++k) {
    const auto grads = make_grads(k, grad_magnitude);
    set_grads(reference, grads);
    set_grads(mine, grads);
    if (clip > 0) torch::nn::utils::clip_grad_norm_(reference, clip);
    ref_opt.step();
    double norm = 0;
    {
      Route route(fused_on(k), avx2, multi_tensor_on(k));
      norm = clip_and_step(my_opt, mine, clip);
    }
    if (clip > 0) {
      EXPECT_NEAR(norm, norm_in_double(grads), 1e-5 * norm_in_double(grads)) << "step " << k;
    }
  }
  for (size_t i = 0; i < mine.size(); ++i) {
    const auto what = "parameter " + std::to_string(i) + (avx2 ? " (avx2)" : " (portable)") + " clip " +
                      std::to_string(clip);
    expect_close(mine[i].detach(), reference[i].detach(), 2e-6, what);
    auto& a = state_of(my_opt, mine[i]);
    auto& b = state_of(ref_opt, reference[i]);
    EXPECT_EQ(a.step(), b.step()) << what;
    expect_close(a.exp_avg(), b.exp_avg(), 2e-6, what + " exp_avg");
    expect_close(a.exp_avg_sq(), b.exp_avg_sq(), 2e-6, what + " exp_avg_sq");
  }
  // The parameters moved: the comparison is not between two untouched copies.
  EXPECT_GT((mine[0].detach() - make_params(7)[0]).abs().max().item<double>(), 1e-3);
}

TEST(OptimizerStep, FusedAdamMatchesLibTorchAdamAndClipping) {
  for (bool avx2 : simd_paths()) {
    compare_with_torch(0, 1.0, avx2, [](int) { return true; });      // no clipping
    compare_with_torch(0.5, 1.0, avx2, [](int) { return true; });    // clipping active (norm ~ 130)
    compare_with_torch(1e6, 1.0, avx2, [](int) { return true; });    // clipping inactive
    compare_with_torch(1.0, 1e-4, avx2, [](int) { return true; });   // small gradients: eps matters
  }
}

// The route of parameters on a GPU, run here on the CPU: the same numbers as LibTorch's route, and the same
// optimiser state as the other routes leave (alternating with the fused loop and with LibTorch's).
TEST(OptimizerStep, MultiTensorRouteMatchesLibTorchAdamAndClipping) {
  auto always = [](int) { return true; };
  compare_with_torch(0, 1.0, simd::avx2(), always, always);
  compare_with_torch(0.5, 1.0, simd::avx2(), always, always);
  compare_with_torch(1e6, 1.0, simd::avx2(), always, always);
  compare_with_torch(1.0, 1e-4, simd::avx2(), always, always);
  compare_with_torch(0.5, 1.0, simd::avx2(), always, [](int k) { return k % 2 == 0; });
  compare_with_torch(0.5, 1.0, simd::avx2(), [](int k) { return k % 3 != 0; }, [](int k) { return k % 2 == 1; });
}

TEST(OptimizerStep, FusedAndUnfusedStepsShareTheOptimiserState) {
  // Alternating routes on one optimiser only agree with LibTorch throughout if each finds and updates
  // the moments and step count the other left (a fused route with state of its own would restart the
  // bias correction and the moments).
  compare_with_torch(0.5, 1.0, simd::avx2(), [](int k) { return k % 2 == 0; });
  compare_with_torch(0.5, 1.0, simd::avx2(), [](int k) { return k >= 3; });
}

// The parameters after three clipped Adam steps from make_params(3).
std::vector<torch::Tensor> three_clipped_steps() {
  auto ps = make_params(3);
  torch::optim::Adam opt(ps, torch::optim::AdamOptions(0.01));
  for (int k = 0; k < 3; ++k) {
    auto gs = make_grads(k, 1.0);
    set_grads(ps, gs);
    clip_and_step(opt, ps, 0.5);
  }
  return ps;
}

TEST(OptimizerStep, SameBitsAtAnyThreadCount) {
  std::vector<std::vector<torch::Tensor>> results;
  const int before = torch::get_num_threads();
  for (int threads : {1, 2, 3}) {
    torch::set_num_threads(threads);
    results.push_back(three_clipped_steps());
  }
  torch::set_num_threads(before);
  for (size_t r = 1; r < results.size(); ++r)
    for (size_t i = 0; i < results[0].size(); ++i)
      EXPECT_TRUE(torch::equal(results[r][i], results[0][i])) << "threads run " << r << ", parameter " << i;
}

// With cpu_parallel "batch" the fused route's passes run on the training step's worker threads
// (worker_threads.h) instead of LibTorch's: the same bits as without them, with 2 or 3 of them, and
// still LibTorch's Adam.
TEST(OptimizerStep, SameBitsOnTheWorkerThreads) {
  // First without the pool (as ctest runs each test in a process of its own; with the whole binary in
  // one process an earlier test may have made it).
  const auto first = three_clipped_steps();
  const int before = worker_thread_count();
  for (int threads : {2, 3}) {
    worker_threads(threads);
    ASSERT_GE(worker_thread_count(), threads);
    const auto with = three_clipped_steps();
    for (size_t i = 0; i < first.size(); ++i)
      EXPECT_TRUE(torch::equal(with[i], first[i]))
          << worker_thread_count() << " worker threads (" << before << " at first), parameter " << i;
  }
  compare_with_torch(0.5, 1.0, simd::avx2(), [](int) { return true; });
}

TEST(OptimizerStep, AutogradSeesTheParametersChange) {
  // As with LibTorch's in-place update, a graph that saved a parameter before the step refuses to
  // run backward after it instead of using the new values silently.
  auto ps = make_params(9);
  torch::optim::Adam opt(ps, torch::optim::AdamOptions(0.01));
  set_grads(ps, make_grads(0, 1.0));
  auto y = (ps[0] * ps[0]).sum();
  const auto before = ps[0]._version();
  clip_and_step(opt, ps, 0.5);
  EXPECT_GT(ps[0]._version(), before);
  EXPECT_THROW(y.backward(), c10::Error);
}

// A square sum handed in (Update::grad_square_sum) is the norm the fused route clips with: the true one
// gives the update of a pass of its own; four times it (a norm twice as large) halves the clipped gradient,
// which the first moment (1 - beta1) g shows directly.
TEST(OptimizerStep, AKnownSquareSumIsTheClippingNorm) {
  if (!fused_optimizer_enabled()) GTEST_SKIP();
  auto a = make_params(8), b = clone_params(a), c = clone_params(a);
  torch::optim::Adam oa(a, torch::optim::AdamOptions(0.01)), ob(b, torch::optim::AdamOptions(0.01)),
      oc(c, torch::optim::AdamOptions(0.01));
  const auto gs = make_grads(0, 1.0);
  double squares = 0;
  for (const auto& g : gs) squares += g.to(torch::kDouble).pow(2).sum().item<double>();
  set_grads(a, gs);
  set_grads(b, gs);
  set_grads(c, gs);
  const double clip = 0.5 * std::sqrt(squares);  // clipping active
  const double na = clip_and_step(oa, a, clip);
  const double nb = clip_and_step(ob, b, clip, squares);
  const double nc = clip_and_step(oc, c, clip, 4 * squares);
  EXPECT_NEAR(na, std::sqrt(squares), 1e-9 * na);
  EXPECT_DOUBLE_EQ(nb, std::sqrt(squares));
  EXPECT_DOUBLE_EQ(nc, 2 * std::sqrt(squares));
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_TRUE(torch::allclose(b[i], a[i], 1e-6, 1e-7)) << "parameter " << i;
    const auto ma = adam_state(oa, a[i])->exp_avg(), mc = adam_state(oc, c[i])->exp_avg();
    EXPECT_TRUE(torch::allclose(mc, 0.5 * ma, 1e-5, 1e-9)) << "first moment of parameter " << i;
  }
}

TEST(OptimizerStep, SgdTakesLibTorchsRoute) {
  auto a = make_params(5), b = clone_params(a);
  torch::optim::SGD sa(a, torch::optim::SGDOptions(0.1).momentum(0.9)), sb(b, torch::optim::SGDOptions(0.1).momentum(0.9));
  for (int k = 0; k < 3; ++k) {
    const auto gs = make_grads(k, 1.0);
    set_grads(a, gs);
    set_grads(b, gs);
    torch::nn::utils::clip_grad_norm_(a, 0.5);
    sa.step();
    clip_and_step(sb, b, 0.5);
  }
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i])) << "parameter " << i;
}

}  // namespace
}  // namespace s2s
