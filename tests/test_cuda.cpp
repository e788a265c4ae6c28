// Tests that need a GPU: a CUDA build of LibTorch on a machine with an NVIDIA GPU (../shared/gpu/ says
// how to build one). Each test skips where torch::cuda::is_available() is false, as on CI.
//   - a training update on the GPU (loss, every gradient, the parameters after Adam) equals the CPU's
//     within float32 tolerance, for each cell and attention;
//   - `s2s train` with training.device "cuda" writes checkpoints that `s2s translate` reads on either
//     device, with the same translations and scores; a run stopped and resumed on the GPU ends where
//     the unbroken run ends.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoint.h"
#include "config.h"
#include "data.h"
#include "model.h"
#include "random_examples.h"
#include "optimizer_step.h"
#include "test_util.h"
#include "update.h"

namespace s2s {
namespace {

using nlohmann::json;
using s2s::testing::RunResult;
using s2s::testing::run_s2s;
using s2s::testing::split_lines;
using s2s::testing::TempDir;
using s2s::testing::write_corpus;
using s2s::testing::write_file;

#define SKIP_WITHOUT_CUDA() \
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device (CPU-only LibTorch or no GPU)"

constexpr int64_t kSrcVocab = 41, kTgtVocab = 37;

std::vector<Example> make_examples(int n, uint32_t seed) {
  return s2s::testing::random_examples(n, seed, kSrcVocab, kTgtVocab, 11);
}

struct Step {
  Update update;
  std::vector<torch::Tensor> grads, params_after;  // on the CPU
};

// One update (forward, loss, backward, clipping, Adam) of a fresh model with fixed initial weights: the
// weights are made on the CPU and then moved, so both devices start from the same numbers.
Step one_step(const ModelConfig& m, const TrainingConfig& t, const std::vector<Example>& examples,
              const torch::Device& device) {
  torch::manual_seed(11);
  Seq2Seq model(m, kSrcVocab, kTgtVocab);
  model->to(device);
  model->train();
  const auto params = model->parameters();
  torch::optim::Adam adam(params, torch::optim::AdamOptions(0.01));
  std::vector<int64_t> batch(examples.size());
  for (size_t i = 0; i < batch.size(); ++i) batch[i] = static_cast<int64_t>(i);
  UpdateOptions options;
  options.shards = update_shards(t, device);
  Step s;
  s.update = compute_update(model, params, examples, {batch}, t, device, options, nullptr);
  for (const auto& p : params) s.grads.push_back(p.grad().detach().cpu().clone());
  clip_and_step(adam, params, t.clip_norm, s.update.grad_square_sum);
  for (const auto& p : params) s.params_after.push_back(p.detach().cpu().clone());
  return s;
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

TEST(Cuda, TrainingUpdateEqualsTheCpus) {
  SKIP_WITHOUT_CUDA();
  const auto examples = make_examples(17, 3);
  for (const std::string cell : {"rnn", "gru", "lstm"}) {
    for (const std::string attention : {"bahdanau", "qkv", "none"}) {
      ModelConfig m;
      m.cell = cell;
      m.embedding_size = 16;
      m.hidden_size = 32;
      m.bidirectional = true;
      m.attention = attention;
      m.dropout = 0;
      TrainingConfig t;
      t.label_smoothing = 0.1;
      t.clip_norm = 1.0;
      const auto cpu = one_step(m, t, examples, torch::kCPU);
      const auto gpu = one_step(m, t, examples, torch::Device(torch::kCUDA));
      const std::string what = cell + "+" + attention;
      EXPECT_EQ(gpu.update.tokens, cpu.update.tokens) << what;
      EXPECT_NEAR(gpu.update.loss, cpu.update.loss, 1e-5 * std::abs(cpu.update.loss)) << what;
      ASSERT_EQ(gpu.grads.size(), cpu.grads.size());
      double largest = 0;
      for (size_t i = 0; i < cpu.grads.size(); ++i) {
        largest = std::max(largest, max_abs(cpu.grads[i]));
        // float32 sums in another order: relative 1e-4 of the parameter's largest gradient
        const double scale = std::max(max_abs(cpu.grads[i]), 1e-6);
        EXPECT_LE(max_abs(gpu.grads[i] - cpu.grads[i]), 1e-4 * scale) << what << " gradient " << i;
        // Adam's first step moves every weight by about the learning rate: the same on both devices
        EXPECT_LE(max_abs(gpu.params_after[i] - cpu.params_after[i]), 1e-4) << what << " parameter " << i;
      }
      EXPECT_GT(largest, 1e-3) << what << ": the gradient is not trivially zero";
    }
  }
}

// --- the program on the GPU ------------------------------------------------------------------------

struct Corpus {
  std::string train_src, train_tgt, valid_src, valid_tgt;
};

json gpu_config(const Corpus& c, const std::string& output_dir, int64_t max_steps) {
  return json{{"data",
               {{"train_src", c.train_src},
                {"train_tgt", c.train_tgt},
                {"valid_src", c.valid_src},
                {"valid_tgt", c.valid_tgt}}},
              {"model", {{"embedding_size", 16}, {"hidden_size", 32}, {"attention", "bahdanau"}, {"dropout", 0.1}}},
              {"training",
               {{"batch_size", 8},
                {"learning_rate", 0.01},
                {"max_steps", max_steps},
                {"epochs", 100},
                {"seed", 5},
                {"device", "cuda"},
                {"log_every", 1},
                {"valid_every", 1000},
                {"checkpoint_every", 6},
                {"keep_checkpoints", 5}}},
              {"output_dir", output_dir}};
}

std::string write_config(const TempDir& dir, const json& config, const std::string& name) {
  const auto path = dir.file(name);
  write_file(path, config.dump(2));
  return path;
}

std::vector<torch::Tensor> checkpoint_parameters(const std::string& path) {
  const auto model = restore_model(read_checkpoint(path), torch::kCPU);
  std::vector<torch::Tensor> out;
  for (const auto& p : model->parameters()) out.push_back(p.detach().clone());
  return out;
}

// Trained with dropout on the GPU: 12 steps at once, and 6 steps then 6 more resumed from the
// checkpoint (optimizer state and the GPU's random generator included) end with the same weights.
TEST(CudaCli, TrainOnTheGpuResumesExactly) {
  SKIP_WITHOUT_CUDA();
  TempDir dir;
  const Corpus c{dir.file("train.src"), dir.file("train.tgt"), dir.file("valid.src"), dir.file("valid.tgt")};
  write_corpus(c.train_src, c.train_tgt, 40, 1);
  write_corpus(c.valid_src, c.valid_tgt, 8, 2);

  const auto a = run_s2s({"train", "--config", write_config(dir, gpu_config(c, dir.file("a"), 12), "a.json")},
                         dir.path());
  ASSERT_EQ(a.code(), 0) << a.describe();
  EXPECT_TRUE(s2s::testing::contains(a.err, "device: cuda")) << a.describe();
  const auto b_path = write_config(dir, gpu_config(c, dir.file("b"), 6), "b.json");
  const auto b1 = run_s2s({"train", "--config", b_path}, dir.path());
  ASSERT_EQ(b1.code(), 0) << b1.describe();
  const auto b2 = run_s2s({"train", "--config", b_path, "--resume", "auto", "--set", "training.max_steps=12"},
                          dir.path());
  ASSERT_EQ(b2.code(), 0) << b2.describe();
  EXPECT_TRUE(s2s::testing::contains(b2.err, "resumed from")) << b2.describe();

  const auto pa = checkpoint_parameters(dir.file("a/last.pt"));
  const auto pb = checkpoint_parameters(dir.file("b/last.pt"));
  const auto half = checkpoint_parameters(dir.file("a/step-0000006.pt"));
  ASSERT_EQ(pa.size(), pb.size());
  bool changed = false;
  for (size_t i = 0; i < pa.size(); ++i) {
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i << " differs by " << max_abs(pa[i] - pb[i]);
    changed |= !torch::equal(half[i], pa[i]);
  }
  EXPECT_TRUE(changed) << "the second half of training changed nothing";

  // The GPU-trained checkpoint translates on both devices: the same 5-best lists, scores within float32.
  const auto input = dir.file("input.txt");
  write_file(input, "a b c d\ne f g\nh i j k l\nb\n");
  auto translate = [&](const std::string& device) {
    return run_s2s({"translate", "-c", dir.file("a/last.pt"), "--device", device, "--beam", "5", "--n-best",
                    "5", "--format", "json", "--input", input},
                   dir.path());
  };
  const auto on_gpu = translate("cuda"), on_cpu = translate("cpu");
  ASSERT_EQ(on_gpu.code(), 0) << on_gpu.describe();
  ASSERT_EQ(on_cpu.code(), 0) << on_cpu.describe();
  const auto gpu_lines = split_lines(on_gpu.out), cpu_lines = split_lines(on_cpu.out);
  ASSERT_EQ(gpu_lines.size(), 4u) << on_gpu.describe();
  ASSERT_EQ(cpu_lines.size(), 4u) << on_cpu.describe();
  int compared = 0;
  for (size_t i = 0; i < gpu_lines.size(); ++i) {
    const auto g = json::parse(gpu_lines[i]).at("nbest"), p = json::parse(cpu_lines[i]).at("nbest");
    ASSERT_EQ(g.size(), p.size()) << gpu_lines[i] << "\n" << cpu_lines[i];
    // The scores, best first, agree within float32 sums in another order. Two hypotheses whose scores lie
    // within that of each other may trade places, so outputs and attention are compared only for a
    // hypothesis whose score stands apart from its neighbours'.
    for (size_t k = 0; k < g.size(); ++k) {
      const double score = p[k].at("score").get<double>();
      EXPECT_NEAR(g[k].at("score").get<double>(), score, 1e-4) << "line " << i << " hypothesis " << k;
      const bool apart = (k == 0 || p[k - 1].at("score").get<double>() - score > 1e-3) &&
                         (k + 1 == p.size() || score - p[k + 1].at("score").get<double>() > 1e-3);
      if (!apart) continue;
      ++compared;
      EXPECT_EQ(g[k].at("output"), p[k].at("output")) << "line " << i << " hypothesis " << k;
      const auto ga = g[k].at("attention"), pa = p[k].at("attention");
      ASSERT_EQ(ga.size(), pa.size());
      for (size_t r = 0; r < ga.size(); ++r)
        for (size_t col = 0; col < ga[r].size(); ++col)
          EXPECT_NEAR(ga[r][col].get<double>(), pa[r][col].get<double>(), 1e-4);
    }
  }
  EXPECT_GE(compared, 4) << "too few hypotheses stood apart to compare their outputs";
}

}  // namespace
}  // namespace s2s
