// Tests that need a GPU: a CUDA build of LibTorch on a machine with an NVIDIA GPU (../shared/gpu/ says
// how to build one). Each test skips where torch::cuda::is_available() is false, as on CI.
//   - a training update on the GPU (loss, every gradient, the parameters after Adam) equals the CPU's
//     within float32 tolerance, for each cell and attention;
//   - `s2s train` with training.device "cuda" writes checkpoints that `s2s translate` reads on either
//     device, with the same translations and scores (alone and as an ensemble); a run stopped and resumed
//     on the GPU ends where the unbroken run ends.
//   - CUDA graphs (training.cuda_graphs): a shape's eager run, its recording run and its replays give
//     bitwise the same gradients, dropout masks included; training with graphs follows training without
//     them within float32 tolerance, and reading each step's loss one step late changes no bit; a run
//     with graphs stopped and resumed ends where the unbroken one ends.
#include <gtest/gtest.h>

#include <cmath>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoint.h"
#include "config.h"
#include "cuda_graph_update.h"
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

// --- CUDA graphs ------------------------------------------------------------------------------------

ModelConfig small_model(const std::string& cell, const std::string& attention, double dropout) {
  ModelConfig m;
  m.cell = cell;
  m.attention = attention;
  m.embedding_size = 16;
  m.hidden_size = 32;
  m.bidirectional = true;
  m.dropout = dropout;
  return m;
}

std::vector<torch::Tensor> grads_on_cpu(const std::vector<torch::Tensor>& params) {
  std::vector<torch::Tensor> out;
  for (const auto& p : params) out.push_back(p.grad().detach().cpu().clone());
  return out;
}

// The same batch four times from the same generator state, without updating the model: the first run is
// eager, the second eager on the recording stream and recorded, the last two replay the graph. All four
// must be bitwise equal: the same kernels, the same dropout masks.
TEST(Cuda, GraphRunsOfOneShapeAreBitwiseEqualDropoutIncluded) {
  SKIP_WITHOUT_CUDA();
  const torch::Device device(torch::kCUDA);
  const auto examples = make_examples(17, 3);
  std::vector<int64_t> batch(examples.size());
  for (size_t i = 0; i < batch.size(); ++i) batch[i] = static_cast<int64_t>(i);
  for (const std::string cell : {"rnn", "lstm"}) {
    torch::manual_seed(11);
    Seq2Seq model(small_model(cell, "bahdanau", 0.3), kSrcVocab, kTgtVocab);
    model->to(device);
    model->train();
    const auto params = model->parameters();
    TrainingConfig t;
    t.label_smoothing = 0.1;
    CudaGraphUpdate graphs(4);
    auto generator = at::globalContext().defaultGenerator(device);
    torch::Tensor start;
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      start = generator.get_state();
    }
    auto run_from = [&](const torch::Tensor& state) {
      {
        std::lock_guard<std::mutex> lock(generator.mutex());
        generator.set_state(state);
      }
      const auto u = graphs.run(model, params, make_batch(examples, batch), t, device);
      return std::make_pair(u.loss, grads_on_cpu(params));
    };
    std::vector<std::pair<double, std::vector<torch::Tensor>>> runs;
    for (int k = 0; k < 4; ++k) runs.push_back(run_from(start));
    EXPECT_EQ(graphs.graphs(), 1) << cell;
    EXPECT_EQ(graphs.replays(), 2) << cell;
    EXPECT_EQ(graphs.eager(), 2) << cell;
    for (int k = 1; k < 4; ++k) {
      EXPECT_EQ(runs[k].first, runs[0].first) << cell << " run " << k;
      for (size_t i = 0; i < params.size(); ++i)
        EXPECT_TRUE(torch::equal(runs[k].second[i], runs[0].second[i]))
            << cell << " run " << k << " parameter " << i << " differs by "
            << max_abs(runs[k].second[i] - runs[0].second[i]);
    }
    // The dropout masks come from the generator: another state gives another loss (a replay too).
    torch::rand({1000}, torch::TensorOptions().device(device));
    torch::Tensor other;
    {
      std::lock_guard<std::mutex> lock(generator.mutex());
      other = generator.get_state();
    }
    const auto moved = run_from(other);
    EXPECT_EQ(graphs.replays(), 3) << cell;
    EXPECT_NE(moved.first, runs[0].first) << cell << ": the replay did not draw new dropout masks";
  }
}

// Eight updates (Adam, clipping) over batches of three shapes, each shape coming back, without graphs,
// with graphs and the optimizer's step after each, and with the step recorded in the graphs (GraphAdam),
// from the same weights and without dropout: the losses follow each other within float32 sums in another
// order (the graphs' batches are padded), and so do the first update's gradients (before clipping).
TEST(Cuda, TrainingWithGraphsFollowsTrainingWithout) {
  SKIP_WITHOUT_CUDA();
  const torch::Device device(torch::kCUDA);
  const auto examples = make_examples(24, 9);
  std::vector<std::vector<int64_t>> batches(3);
  for (int64_t i = 0; i < 24; ++i) batches[i % 3].push_back(i);
  const std::vector<int> order{0, 1, 0, 2, 1, 0, 2, 1};
  for (const std::string cell : {"rnn", "gru"}) {
    for (const std::string attention : {"bahdanau", "qkv"}) {
      const std::string what = cell + "+" + attention;
      std::vector<std::vector<double>> losses(4);
      std::vector<std::vector<torch::Tensor>> first_grads(4);
      std::vector<int64_t> replays(4, 0);
      // 2: the optimizer recorded too; 3: and each loss read after the next step is launched (the trainer's
      // way: the batch's copies and the loss's copy back do not wait for the GPU)
      for (int with_graphs = 0; with_graphs < 4; ++with_graphs) {
        torch::manual_seed(11);
        Seq2Seq model(small_model(cell, attention, 0), kSrcVocab, kTgtVocab);
        model->to(device);
        model->train();
        const auto params = model->parameters();
        torch::optim::Adam adam(params, torch::optim::AdamOptions(0.003));
        TrainingConfig t;
        t.label_smoothing = 0.1;
        t.clip_norm = 1.0;
        CudaGraphUpdate graphs(4);
        UpdateOptions options;
        if (with_graphs) options.graphs = &graphs;
        if (with_graphs >= 2) options.optimizer = &adam;
        options.defer_loss = with_graphs == 3;
        std::optional<Update> waiting;
        for (int b : order) {
          auto u = compute_update(model, params, examples, {batches[b]}, t, device, options, nullptr);
          EXPECT_EQ(static_cast<bool>(u.pending), with_graphs == 3) << what;
          if (waiting) losses[with_graphs].push_back(waiting->finish());
          waiting.reset();
          if (u.pending)
            waiting = u;
          else
            losses[with_graphs].push_back(u.loss);
          EXPECT_EQ(u.stepped, with_graphs >= 2) << what;
          // (with the step recorded, the gradients left are clipped: only the losses are compared)
          if (first_grads[with_graphs].empty() && !u.stepped) first_grads[with_graphs] = grads_on_cpu(params);
          if (!u.stepped) clip_and_step(adam, params, t.clip_norm, u.grad_square_sum);
        }
        if (waiting) losses[with_graphs].push_back(waiting->finish());
        if (with_graphs) replays[with_graphs] = graphs.replays();
        if (with_graphs >= 2) {
          EXPECT_TRUE(graphs.optimizer_recorded()) << what;
        }
      }
      // the same operations on the same inputs in the same order: the same bits
      EXPECT_EQ(losses[3], losses[2]) << what << ": reading the loss late changed the steps";
      for (int g = 1; g < 4; ++g) {
        EXPECT_GE(replays[g], 2) << what << ": the shapes' later batches should replay";
        for (size_t k = 0; k < order.size(); ++k)
          EXPECT_NEAR(losses[g][k], losses[0][k], 1e-4 * losses[0][k]) << what << " graphs " << g << " step " << k;
      }
      for (size_t i = 0; i < first_grads[0].size(); ++i) {
        const double scale = std::max(max_abs(first_grads[0][i]), 1e-6);
        EXPECT_LE(max_abs(first_grads[1][i] - first_grads[0][i]), 1e-4 * scale) << what << " gradient " << i;
      }
    }
  }
}

// The benchmark records its batches' graphs first (prepare), with the optimizer's step in them: that
// leaves the model, Adam's state and the generator as they were, and the first run of a prepared shape
// replays its graph, steps the optimizer and moves the model as a run without graphs does.
TEST(Cuda, PrepareWithTheOptimizerChangesNothingAndTheReplaysStep) {
  SKIP_WITHOUT_CUDA();
  const torch::Device device(torch::kCUDA);
  const auto examples = make_examples(16, 4);
  std::vector<int64_t> all(examples.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int64_t>(i);
  TrainingConfig t;
  t.clip_norm = 1.0;
  std::vector<std::vector<torch::Tensor>> before(2), after(2);
  std::vector<double> loss(2);
  for (int with_graphs = 0; with_graphs < 2; ++with_graphs) {
    torch::manual_seed(3);
    Seq2Seq model(small_model("rnn", "bahdanau", 0), kSrcVocab, kTgtVocab);
    model->to(device);
    model->train();
    const auto params = model->parameters();
    torch::optim::Adam adam(params, torch::optim::AdamOptions(0.003));
    CudaGraphUpdate graphs(4);
    UpdateOptions options;
    for (const auto& p : params) before[with_graphs].push_back(p.detach().cpu().clone());
    if (with_graphs) {
      graphs.prepare(model, params, {make_batch(examples, all)}, t, device, &adam);
      EXPECT_EQ(graphs.graphs(), 1);
      EXPECT_TRUE(graphs.optimizer_recorded());
      for (size_t i = 0; i < params.size(); ++i) {
        EXPECT_TRUE(torch::equal(params[i].detach().cpu(), before[1][i])) << "parameter " << i;
        const auto* state = adam_state(adam, params[i]);
        ASSERT_NE(state, nullptr);
        EXPECT_EQ(state->step(), 0) << "parameter " << i;
        EXPECT_EQ(max_abs(state->exp_avg()), 0) << "parameter " << i;
      }
      options.graphs = &graphs;
      options.optimizer = &adam;
    }
    const auto u = compute_update(model, params, examples, {all}, t, device, options, nullptr);
    EXPECT_EQ(u.stepped, with_graphs == 1);
    if (!u.stepped) clip_and_step(adam, params, t.clip_norm, u.grad_square_sum);
    if (with_graphs) {
      EXPECT_EQ(graphs.replays(), 1);
    }
    loss[with_graphs] = u.loss;
    for (const auto& p : params) after[with_graphs].push_back(p.detach().cpu().clone());
    EXPECT_EQ(adam_state(adam, params[0])->step(), 1);
  }
  EXPECT_NEAR(loss[1], loss[0], 1e-5 * loss[0]);
  // Adam's first step is about +-lr per weight, whose sign may flip where a gradient is near zero and the
  // padded batch sums in another order: the two updates are compared as wholes.
  for (size_t i = 0; i < after[0].size(); ++i) {
    EXPECT_TRUE(torch::equal(before[1][i], before[0][i])) << "parameter " << i;
    const double update = (after[0][i] - before[0][i]).norm().item<double>();
    EXPECT_LE((after[1][i] - after[0][i]).norm().item<double>(), 0.05 * update) << "parameter " << i;
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

  // The GPU-trained checkpoint translates on both devices, alone and in an ensemble with its step-6
  // checkpoint: the same 5-best lists, scores within float32.
  const auto input = dir.file("input.txt");
  write_file(input, "a b c d\ne f g\nh i j k l\nb\n");
  auto translate = [&](const std::string& device, bool ensemble) {
    std::vector<std::string> args{"translate", "-c", dir.file("a/last.pt"), "--device", device, "--beam", "5",
                                  "--n-best", "5", "--format", "json", "--input", input};
    if (ensemble) args.insert(args.end(), {"-c", dir.file("a/step-0000006.pt")});
    return run_s2s(args, dir.path());
  };
  for (const bool ensemble : {false, true}) {
    SCOPED_TRACE(ensemble ? "ensemble" : "one model");
    const auto on_gpu = translate("cuda", ensemble), on_cpu = translate("cpu", ensemble);
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

  // `s2s score` on both devices, alone and as an ensemble: the same log-probabilities within float32 sums.
  const auto targets = dir.file("targets.txt");
  write_file(targets, "xa xb xc xd\nxe xf\nxh xi xj xk xl\n\n");
  for (const bool ensemble : {false, true}) {
    SCOPED_TRACE(ensemble ? "score, ensemble" : "score, one model");
    auto score = [&](const std::string& device) {
      std::vector<std::string> args{"score", "-c", dir.file("a/last.pt"), "--device", device, "--src", input, "--tgt", targets};
      if (ensemble) args.insert(args.end(), {"-c", dir.file("a/step-0000006.pt")});
      return run_s2s(args, dir.path());
    };
    const auto on_gpu = score("cuda"), on_cpu = score("cpu");
    ASSERT_EQ(on_gpu.code(), 0) << on_gpu.describe();
    ASSERT_EQ(on_cpu.code(), 0) << on_cpu.describe();
    const auto g = split_lines(on_gpu.out), p = split_lines(on_cpu.out);
    ASSERT_EQ(g.size(), 4u) << on_gpu.describe();
    ASSERT_EQ(p.size(), 4u) << on_cpu.describe();
    for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(std::stod(g[i]), std::stod(p[i]), 1e-4) << "line " << i;
  }
  // Sampling on the GPU: each line its 3 samples, best first.
  const auto sampled = run_s2s({"translate", "-c", dir.file("a/last.pt"), "--device", "cuda", "--sampling", "--n-best",
                                "3", "--format", "json", "--input", input}, dir.path());
  ASSERT_EQ(sampled.code(), 0) << sampled.describe();
  const auto sampled_lines = split_lines(sampled.out);
  ASSERT_EQ(sampled_lines.size(), 4u) << sampled.describe();
  for (const auto& line : sampled_lines) {
    const auto n = json::parse(line).at("nbest");
    ASSERT_EQ(n.size(), 3u) << line;
    for (size_t k = 1; k < n.size(); ++k) EXPECT_GE(n[k - 1].at("score").get<double>(), n[k].at("score").get<double>());
  }
}

// With training.cuda_graphs and dropout: 12 steps at once, and 6 then 6 resumed (with fresh graphs, so
// steps that replayed in the unbroken run run eagerly after the resume), end with the same weights and the
// same moving average of them (training.ema_decay).
TEST(CudaCli, TrainingWithCudaGraphsResumesExactly) {
  SKIP_WITHOUT_CUDA();
  TempDir dir;
  const Corpus c{dir.file("train.src"), dir.file("train.tgt"), dir.file("valid.src"), dir.file("valid.tgt")};
  write_corpus(c.train_src, c.train_tgt, 40, 1);
  write_corpus(c.valid_src, c.valid_tgt, 8, 2);
  auto config = [&](const std::string& out, int64_t steps) {
    auto j = gpu_config(c, dir.file(out), steps);
    j["training"]["cuda_graphs"] = true;
    j["training"]["cuda_graph_length_step"] = 4;  // so that the random corpus's batches share shapes
    j["training"]["ema_decay"] = 0.9;             // the moving average, updated after each replay
    return j;
  };
  const auto a = run_s2s({"train", "--config", write_config(dir, config("a", 12), "a.json")}, dir.path());
  ASSERT_EQ(a.code(), 0) << a.describe();
  std::smatch m;
  ASSERT_TRUE(std::regex_search(a.err, m, std::regex("CUDA graphs: (\\d+) recorded; (\\d+) steps replayed")))
      << a.describe();
  EXPECT_GE(std::stoi(m[1]), 1) << a.describe();
  EXPECT_GE(std::stoi(m[2]), 1) << a.describe();
  const auto b_path = write_config(dir, config("b", 6), "b.json");
  const auto b1 = run_s2s({"train", "--config", b_path}, dir.path());
  ASSERT_EQ(b1.code(), 0) << b1.describe();
  const auto b2 = run_s2s({"train", "--config", b_path, "--resume", "auto", "--set", "training.max_steps=12"},
                          dir.path());
  ASSERT_EQ(b2.code(), 0) << b2.describe();
  const auto pa = checkpoint_parameters(dir.file("a/last.pt"));
  const auto pb = checkpoint_parameters(dir.file("b/last.pt"));
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i << " differs by " << max_abs(pa[i] - pb[i]);
  const auto ca = read_checkpoint(dir.file("a/last.pt")), cb = read_checkpoint(dir.file("b/last.pt"));
  ASSERT_TRUE(has_average(ca) && has_average(cb));
  const auto aa = restore_average(ca, torch::kCPU)->parameters(), ab = restore_average(cb, torch::kCPU)->parameters();
  for (size_t i = 0; i < aa.size(); ++i)
    EXPECT_TRUE(torch::equal(aa[i], ab[i])) << "average of parameter " << i << " differs by " << max_abs(aa[i] - ab[i]);
}

}  // namespace
}  // namespace s2s
