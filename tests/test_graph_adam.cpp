// GraphAdam (graph_adam.h): the clipping and Adam's update that a CUDA graph records, run here on the CPU.
// Against LibTorch's own clip_grad_norm_ and torch::optim::Adam: the same parameters, moments and step
// counts after steps with a changing learning rate, clipping active, inactive and off, from a fresh
// optimizer and from one that LibTorch's route has already stepped. And what a graph needs: no value
// read back, and operations with the same numbers in them at every step (a graph keeps the numbers of the
// step it recorded).
#include <gtest/gtest.h>

#include <ATen/record_function.h>

#include <cmath>
#include <mutex>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "graph_adam.h"
#include "optimizer_step.h"

namespace s2s {
namespace {

const std::vector<std::vector<int64_t>> kShapes = {{37}, {5, 19}, {3, 7, 11}, {8}};

std::vector<torch::Tensor> make_params(torch::ScalarType dtype, const torch::Device& device = torch::kCPU) {
  torch::manual_seed(7);
  std::vector<torch::Tensor> ps;
  for (const auto& s : kShapes) ps.push_back(torch::randn(s, dtype).to(device).requires_grad_(true));
  return ps;
}

std::vector<torch::Tensor> clone_params(const std::vector<torch::Tensor>& ps) {
  std::vector<torch::Tensor> out;
  for (const auto& p : ps) out.push_back(p.detach().clone().requires_grad_(true));
  return out;
}

std::vector<torch::Tensor> make_grads(int k, double magnitude, torch::ScalarType dtype,
                                      const torch::Device& device = torch::kCPU) {
  torch::manual_seed(1000 + k);
  std::vector<torch::Tensor> gs;
  for (const auto& s : kShapes) gs.push_back((magnitude * torch::randn(s, dtype)).to(device));
  return gs;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.detach().to(torch::kDouble) - b.detach().to(torch::kDouble)).abs().max().item<double>();
}

torch::optim::AdamParamState& state_of(torch::optim::Adam& adam, const torch::Tensor& p) {
  auto* s = adam_state(adam, p);
  if (!s) throw std::runtime_error("no Adam state for the parameter");
  return *s;
}

double rate(int k) { return 0.01 * (k + 1) / (k + 2.0); }  // a warm-up-like schedule: another rate each step

// LibTorch's step on `ref` and GraphAdam's on `mine`, both with the gradients of step k and the rate(k).
void step_both(int k, double clip, double magnitude, torch::ScalarType dtype, std::vector<torch::Tensor>& ref,
               torch::optim::Adam& ref_opt, torch::optim::Adam& my_opt, GraphAdam& graph) {
  const auto grads = make_grads(k, magnitude, dtype, ref.front().device());
  for (size_t i = 0; i < ref.size(); ++i) ref[i].mutable_grad() = grads[i].clone();
  ref_opt.param_groups()[0].options().set_lr(rate(k));
  if (clip > 0) torch::nn::utils::clip_grad_norm_(ref, clip);
  ref_opt.step();

  std::vector<torch::Tensor> my_grads;
  for (const auto& g : grads) my_grads.push_back(g.clone());
  my_opt.param_groups()[0].options().set_lr(rate(k));
  graph.begin_step();
  graph.apply(my_grads);
}

void expect_same_state(std::vector<torch::Tensor>& ref, torch::optim::Adam& ref_opt, std::vector<torch::Tensor>& mine,
                       torch::optim::Adam& my_opt, double tol, const std::string& what) {
  for (size_t i = 0; i < ref.size(); ++i) {
    const auto at = what + ", parameter " + std::to_string(i);
    EXPECT_LE(max_diff(mine[i], ref[i]), tol) << at;
    auto& a = state_of(my_opt, mine[i]);
    auto& b = state_of(ref_opt, ref[i]);
    EXPECT_EQ(a.step(), b.step()) << at;
    EXPECT_LE(max_diff(a.exp_avg(), b.exp_avg()), tol) << at << " exp_avg";
    EXPECT_LE(max_diff(a.exp_avg_sq(), b.exp_avg_sq()), tol) << at << " exp_avg_sq";
  }
}

// `before` steps of LibTorch's route on both copies first (GraphAdam then starts from Adam's state as a
// resumed run finds it), then `steps` steps each way. `fused`: whether GraphAdam must take at::_fused_adam_.
void compare(double clip, double magnitude, torch::ScalarType dtype, int before, int steps, double tol,
             const torch::Device& device = torch::kCPU, bool fused = false) {
  auto ref = make_params(dtype, device);
  auto mine = clone_params(ref);
  torch::optim::Adam ref_opt(ref, torch::optim::AdamOptions(0.01));
  torch::optim::Adam my_opt(mine, torch::optim::AdamOptions(0.01));
  const std::string what = std::string(dtype == torch::kDouble ? "float64" : "float32") + " clip " +
                           std::to_string(clip) + " gradients x" + std::to_string(magnitude) + " after " +
                           std::to_string(before) + " steps" + (fused ? " fused" : "") + " on " + device.str();
  for (int k = 0; k < before; ++k) {
    const auto grads = make_grads(k, magnitude, dtype, device);
    for (auto* copy : {&ref, &mine}) {
      for (size_t i = 0; i < copy->size(); ++i) (*copy)[i].mutable_grad() = grads[i].clone();
      if (clip > 0) torch::nn::utils::clip_grad_norm_(*copy, clip);
    }
    ref_opt.step();
    my_opt.step();
  }
  std::string why;
  auto graph = GraphAdam::make(my_opt, mine, clip, &why);
  ASSERT_TRUE(graph) << why;
  EXPECT_EQ(graph->fused(), fused) << what;
  const auto start = mine[0].detach().clone();
  for (int k = before; k < before + steps; ++k) step_both(k, clip, magnitude, dtype, ref, ref_opt, my_opt, *graph);
  expect_same_state(ref, ref_opt, mine, my_opt, tol, what);
  EXPECT_GT(max_diff(mine[0], start), 1e-3) << what << ": the parameters did not move";
}

TEST(GraphAdam, FollowsLibTorchsClippingAndAdam) {
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const double tol = dtype == torch::kDouble ? 1e-13 : 2e-6;
    compare(0, 1.0, dtype, 0, 6, tol);       // no clipping
    compare(0.5, 1.0, dtype, 0, 6, tol);     // clipping active (norm ~ 20)
    compare(1e6, 1.0, dtype, 0, 6, tol);     // clipping inactive
    compare(1.0, 1e-4, dtype, 0, 6, tol);    // small gradients: eps matters
    compare(0.5, 1.0, dtype, 3, 4, tol);     // from the state of a run already 3 steps in
  }
}

// The same on a GPU against LibTorch's Adam there: float32 with Adam's update as one fused kernel (where
// the build has it) and as separate operations; float64 takes the separate operations.
TEST(GraphAdam, FollowsLibTorchsClippingAndAdamOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device (CPU-only LibTorch or no GPU)";
  const torch::Device gpu(torch::kCUDA);
  for (bool fused : {true, false}) {
    set_fused_adam(fused);
    const bool expect_fused = fused && fused_adam_available();
    compare(0, 1.0, torch::kFloat, 0, 6, 2e-6, gpu, expect_fused);
    compare(0.5, 1.0, torch::kFloat, 0, 6, 2e-6, gpu, expect_fused);
    compare(1e6, 1.0, torch::kFloat, 0, 6, 2e-6, gpu, expect_fused);
    compare(1.0, 1e-4, torch::kFloat, 0, 6, 2e-6, gpu, expect_fused);
    compare(0.5, 1.0, torch::kFloat, 3, 4, 2e-6, gpu, expect_fused);
  }
  set_fused_adam(true);
  compare(0.5, 1.0, torch::kDouble, 3, 4, 1e-13, gpu, false);
}

TEST(GraphAdam, RefusesWhatItDoesNotDo) {
  auto ps = make_params(torch::kFloat);
  std::string why;
  torch::optim::SGD sgd(ps, torch::optim::SGDOptions(0.1));
  EXPECT_FALSE(GraphAdam::make(sgd, ps, 1.0, &why));
  EXPECT_NE(why.find("not Adam"), std::string::npos) << why;
  torch::optim::Adam decay(ps, torch::optim::AdamOptions(0.1).weight_decay(0.01));
  EXPECT_FALSE(GraphAdam::make(decay, ps, 1.0, &why));
  EXPECT_NE(why.find("weight decay"), std::string::npos) << why;
  torch::optim::Adam ams(ps, torch::optim::AdamOptions(0.1).amsgrad(true));
  EXPECT_FALSE(GraphAdam::make(ams, ps, 1.0, &why));
  torch::optim::Adam adam(ps, torch::optim::AdamOptions(0.1));
  const std::vector<torch::Tensor> fewer(ps.begin(), ps.end() - 1);
  EXPECT_FALSE(GraphAdam::make(adam, fewer, 1.0, &why));
  EXPECT_NE(why.find("not the model's"), std::string::npos) << why;
  // some parameters stepped and some not: their step counts differ, and one update cannot serve both
  ps[0].mutable_grad() = torch::ones_like(ps[0]);
  adam.step();
  EXPECT_FALSE(GraphAdam::make(adam, ps, 1.0, &why));
  EXPECT_NE(why.find("no state"), std::string::npos) << why;
}

// save() and restore() give back the parameters, moments and step counts, into the same tensors.
TEST(GraphAdam, RestorePutsBackWhatSaveTook) {
  auto ps = make_params(torch::kFloat);
  torch::optim::Adam adam(ps, torch::optim::AdamOptions(0.01));
  auto graph = GraphAdam::make(adam, ps, 1.0, nullptr);
  ASSERT_TRUE(graph);
  graph->begin_step();
  graph->apply(make_grads(0, 1.0, torch::kFloat));
  const auto saved = graph->save();
  std::vector<const void*> storage;
  for (const auto& p : ps) storage.push_back(p.data_ptr());
  for (int k = 1; k < 3; ++k) {
    graph->begin_step();
    graph->apply(make_grads(k, 1.0, torch::kFloat));
  }
  EXPECT_GT(max_diff(ps[1], saved.params[1]), 1e-4);
  graph->restore(saved);
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_TRUE(torch::equal(ps[i].detach(), saved.params[i])) << i;
    EXPECT_EQ(ps[i].data_ptr(), storage[i]) << i;
    EXPECT_TRUE(torch::equal(state_of(adam, ps[i]).exp_avg(), saved.exp_avgs[i])) << i;
    EXPECT_TRUE(torch::equal(state_of(adam, ps[i]).exp_avg_sq(), saved.exp_avg_sqs[i])) << i;
    EXPECT_EQ(state_of(adam, ps[i]).step(), 1) << i;
  }
}

// --- what a CUDA graph needs ---------------------------------------------------------------------------
// Every LibTorch operation on this thread with the numbers among its arguments, while a Trace lives.
struct Call {
  std::string name;
  std::vector<double> numbers;
};

std::mutex trace_mutex;
std::vector<Call>* trace_calls = nullptr;

std::unique_ptr<at::ObserverContext> on_call(const at::RecordFunction& fn) {
  std::lock_guard<std::mutex> lock(trace_mutex);
  if (!trace_calls) return nullptr;
  Call c{fn.name(), {}};
  for (const auto& v : fn.inputs())
    if (v.isDouble() || v.isInt()) c.numbers.push_back(v.isDouble() ? v.toDouble() : static_cast<double>(v.toInt()));
  trace_calls->push_back(std::move(c));
  return nullptr;
}

class Trace {
 public:
  Trace() {
    std::lock_guard<std::mutex> lock(trace_mutex);
    trace_calls = &calls;
    handle_ = at::addThreadLocalCallback(
        at::RecordFunctionCallback(on_call).needsInputs(true).scopes({at::RecordScope::FUNCTION}));
  }
  ~Trace() {
    at::removeCallback(handle_);
    std::lock_guard<std::mutex> lock(trace_mutex);
    trace_calls = nullptr;
  }
  std::vector<Call> calls;

  bool reads_back() const {
    for (const auto& c : calls)
      if (c.name == "aten::item" || c.name == "aten::_local_scalar_dense" || c.name == "aten::is_nonzero") return true;
    return false;
  }

 private:
  at::CallbackHandle handle_ = 0;
};

// Three steps of apply() on `device`, traced: no value read back, and the same operations with the same
// numbers at every step. Returns the first step's operations.
std::vector<Call> expect_graph_safe_steps(std::vector<torch::Tensor>& ps, torch::optim::Adam& adam, GraphAdam& graph) {
  std::vector<std::vector<Call>> applied;
  for (int k = 0; k < 3; ++k) {
    adam.param_groups()[0].options().set_lr(rate(k));
    graph.begin_step();  // host side, outside the graph
    Trace trace;
    graph.apply(make_grads(k, 1.0, torch::kFloat, ps.front().device()));
    EXPECT_FALSE(trace.reads_back()) << "step " << k;
    applied.push_back(trace.calls);
  }
  for (int k = 1; k < 3; ++k) {
    EXPECT_EQ(applied[k].size(), applied[0].size()) << "step " << k;
    for (size_t i = 0; i < std::min(applied[k].size(), applied[0].size()); ++i) {
      EXPECT_EQ(applied[k][i].name, applied[0][i].name) << "step " << k << " call " << i;
      EXPECT_EQ(applied[k][i].numbers, applied[0][i].numbers)
          << "step " << k << " call " << i << " (" << applied[0][i].name << "): a number that a graph would freeze";
    }
  }
  return applied[0];
}

bool calls_named(const std::vector<Call>& calls, const std::string& name) {
  for (const auto& c : calls)
    if (c.name == name) return true;
  return false;
}

TEST(GraphAdam, ReadsNothingBackAndRunsTheSameOperationsWithTheSameNumbersEveryStep) {
  auto ps = make_params(torch::kFloat);
  torch::optim::Adam adam(ps, torch::optim::AdamOptions(0.01));
  auto graph = GraphAdam::make(adam, ps, 0.5, nullptr);
  ASSERT_TRUE(graph);
  EXPECT_FALSE(graph->fused());  // the fused kernel is for GPUs
  const auto calls = expect_graph_safe_steps(ps, adam, *graph);
  EXPECT_GT(calls.size(), 10u);
  // The detector sees a read-back where there is one: the step outside graphs reads the norm back.
  for (auto& p : ps) p.mutable_grad() = torch::ones_like(p);
  set_multi_tensor_on_cpu(true);
  Trace outside;
  clip_and_step(adam, ps, 0.5);
  set_multi_tensor_on_cpu(false);
  EXPECT_TRUE(outside.reads_back());
}

// On a GPU, fused or not: and the fused kernel is what runs where the build has it.
TEST(GraphAdam, ReadsNothingBackAndRunsTheSameOperationsWithTheSameNumbersEveryStepOnTheGpu) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device (CPU-only LibTorch or no GPU)";
  for (bool fused : {true, false}) {
    set_fused_adam(fused);
    auto ps = make_params(torch::kFloat, torch::kCUDA);
    torch::optim::Adam adam(ps, torch::optim::AdamOptions(0.01));
    auto graph = GraphAdam::make(adam, ps, 0.5, nullptr);
    ASSERT_TRUE(graph);
    EXPECT_EQ(graph->fused(), fused && fused_adam_available());
    const auto calls = expect_graph_safe_steps(ps, adam, *graph);
    EXPECT_EQ(calls_named(calls, "aten::_fused_adam_"), graph->fused()) << "fused " << fused;
  }
  set_fused_adam(true);
}

}  // namespace
}  // namespace s2s
