// The parts of the CUDA-graph training step (cuda_graph_update.h) that run without a GPU:
//   - pad_batch's shape and counts;
//   - the step a graph records, on a batch padded to a larger shape, gives the loss and gradients that
//     compute_update gives on the batch as it is (the padding changes nothing that is computed);
//   - training.cuda_graphs on a CPU device is ignored with a warning, and in a build without CUDA it is
//     refused with an error that names the key.
// The recording and replaying themselves are tested in test_cuda.cpp, on a GPU.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config.h"
#include "cuda_graph_update.h"
#include "data.h"
#include "model.h"
#include "random_examples.h"
#include "test_util.h"
#include "update.h"
#include "vocabulary.h"

namespace s2s {
namespace {

constexpr int64_t kSrcVocab = 41, kTgtVocab = 37;

std::vector<int64_t> all_of(const std::vector<Example>& examples) {
  std::vector<int64_t> v(examples.size());
  for (size_t i = 0; i < v.size(); ++i) v[i] = static_cast<int64_t>(i);
  return v;
}

TEST(PadBatch, KeepsTheSentencesAndAddsEmptyOnes) {
  const auto examples = s2s::testing::random_examples(5, 7, kSrcVocab, kTgtVocab, 6);
  const auto batch = make_batch(examples, all_of(examples));
  const auto n = batch.src.size(0), S = batch.src.size(1), T = batch.tgt_in.size(1);
  const auto p = pad_batch(batch, n + 3, S + 2, T + 4);
  ASSERT_EQ(p.src.sizes(), torch::IntArrayRef({n + 3, S + 2}));
  ASSERT_EQ(p.tgt_in.sizes(), torch::IntArrayRef({n + 3, T + 4}));
  ASSERT_EQ(p.tgt_out.sizes(), torch::IntArrayRef({n + 3, T + 4}));
  EXPECT_TRUE(torch::equal(p.src.narrow(0, 0, n).narrow(1, 0, S), batch.src));
  EXPECT_TRUE(torch::equal(p.tgt_in.narrow(0, 0, n).narrow(1, 0, T), batch.tgt_in));
  EXPECT_TRUE(torch::equal(p.tgt_out.narrow(0, 0, n).narrow(1, 0, T), batch.tgt_out));
  EXPECT_TRUE(torch::equal(p.src_lengths.narrow(0, 0, n), batch.src_lengths));
  // new columns are padding; new rows are empty sentences: </s> alone, and no target token
  EXPECT_TRUE(p.src.narrow(0, 0, n).narrow(1, S, 2).eq(Vocabulary::kPad).all().item<bool>());
  EXPECT_TRUE(p.tgt_out.narrow(1, T, 4).eq(Vocabulary::kPad).all().item<bool>());
  for (int64_t r = n; r < n + 3; ++r) {
    EXPECT_EQ(p.src_lengths[r].item<int64_t>(), 1);
    EXPECT_EQ(p.src[r][0].item<int64_t>(), Vocabulary::kEos);
    EXPECT_TRUE(p.tgt_out[r].eq(Vocabulary::kPad).all().item<bool>());
  }
  EXPECT_EQ(p.tgt_tokens, batch.tgt_tokens);
  EXPECT_EQ(p.real_tokens, batch.real_tokens);
  EXPECT_EQ(p.padded_tokens, (n + 3) * (S + 2 + T + 4));
  // the same shape is allowed; a smaller one is not
  EXPECT_TRUE(torch::equal(pad_batch(batch, n, S, T).src, batch.src));
  EXPECT_THROW(pad_batch(batch, n, S - 1, T), c10::Error);
}

// The loss and gradients of compute_update on the batch as it is, against graph_step_body on the batch
// padded by 6 sentences, 5 source and 7 target positions.
void expect_padding_changes_nothing(const ModelConfig& m, const std::string& what) {
  const auto examples = s2s::testing::random_examples(13, 5, kSrcVocab, kTgtVocab, 9);
  const auto indices = all_of(examples);
  TrainingConfig t;
  t.label_smoothing = 0.1;
  torch::manual_seed(3);
  Seq2Seq model(m, kSrcVocab, kTgtVocab);
  model->train();
  const auto params = model->parameters();

  UpdateOptions options;  // one shard: the plain step, backward of the mean token loss
  const auto u = compute_update(model, params, examples, {indices}, t, torch::kCPU, options, nullptr);
  std::vector<torch::Tensor> expected;
  for (const auto& p : params) expected.push_back(p.grad().clone());

  const auto batch = make_batch(examples, indices);
  const auto padded = pad_batch(batch, batch.src.size(0) + 6, batch.src.size(1) + 5, batch.tgt_in.size(1) + 7);
  std::vector<torch::Tensor> grads;
  for (const auto& p : params) grads.push_back(torch::full_like(p.detach(), 7.0));  // overwritten
  auto loss = torch::zeros({});
  graph_step_body(model, params, padded, t, grads, loss);

  EXPECT_NEAR(loss.item<double>(), u.loss, 1e-5 * u.loss) << what;
  double largest = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const double scale = std::max(expected[i].abs().max().item<double>(), 1e-6);
    largest = std::max(largest, scale);
    EXPECT_LE((grads[i] - expected[i]).abs().max().item<double>(), 2e-5 * scale) << what << " parameter " << i;
  }
  EXPECT_GT(largest, 1e-3) << what << ": the gradient is not trivially zero";
}

ModelConfig small_model(const std::string& cell, const std::string& attention, bool bidirectional) {
  ModelConfig m;
  m.cell = cell;
  m.attention = attention;
  m.bidirectional = bidirectional;
  m.embedding_size = 12;
  m.hidden_size = 16;
  m.dropout = 0;
  return m;
}

TEST(GraphStepBody, OnAPaddedBatchGivesTheLossAndGradientsOfTheBatchAsItIs) {
  for (const std::string cell : {"rnn", "gru", "lstm"})
    for (const std::string attention : {"bahdanau", "qkv", "none"})
      for (const bool bidirectional : {false, true})
        expect_padding_changes_nothing(small_model(cell, attention, bidirectional),
                                       cell + "+" + attention + (bidirectional ? " bidirectional" : ""));
}

TEST(GraphStepBody, OnAPaddedBatchChangesNothingForDeepOutputTiedEmbeddingsAndStackedLayers) {
  auto deep = small_model("rnn", "bahdanau", true);
  deep.output = "deep";
  expect_padding_changes_nothing(deep, "deep output");
  auto tied = small_model("gru", "qkv", false);
  tied.output = "deep";
  tied.tied_embeddings = true;
  expect_padding_changes_nothing(tied, "deep output, tied embeddings");
  auto stacked = small_model("lstm", "bahdanau", true);
  stacked.encoder_layers = 2;
  expect_padding_changes_nothing(stacked, "two encoder layers");
  auto scaled = small_model("rnn", "qkv", true);
  scaled.qkv_scaled = true;
  scaled.attention_size = 24;
  expect_padding_changes_nothing(scaled, "scaled qkv, attention size 24");
}

TEST(CudaGraphUpdate, IsOffOnTheCpuAndRefusedWithoutCuda) {
  TrainingConfig t;
  EXPECT_EQ(make_graph_update(t, torch::kCPU, true), nullptr);  // off by default
  t.cuda_graphs = true;
  EXPECT_EQ(make_graph_update(t, torch::kCPU, true), nullptr);  // a CPU run goes on without graphs
  if (CudaGraphUpdate::available()) GTEST_SKIP() << "this build has CUDA graphs";
  const auto message = s2s::testing::error_of([&] { make_graph_update(t, torch::Device(torch::kCUDA), true); });
  EXPECT_NE(message.find("training.cuda_graphs"), std::string::npos) << message;
  EXPECT_NE(message.find("without CUDA"), std::string::npos) << message;
}

TEST(CudaGraphUpdate, ShapesRoundUpToTheLengthStepAndToEightSentences) {
  const auto examples = s2s::testing::random_examples(13, 5, kSrcVocab, kTgtVocab, 9);
  const auto batch = make_batch(examples, all_of(examples));
  CudaGraphUpdate graphs(4);
  const auto shape = graphs.shape_of(batch);
  ASSERT_EQ(shape.size(), 3u);
  EXPECT_EQ(shape[0], 16);
  for (int k = 1; k <= 2; ++k) {
    const auto len = k == 1 ? batch.src.size(1) : batch.tgt_in.size(1);
    EXPECT_EQ(shape[k] % 4, 0);
    EXPECT_GE(shape[k], len);
    EXPECT_LT(shape[k], len + 4);
  }
}

TEST(CudaGraphUpdateCli, TrainingOnTheCpuWithCudaGraphsWarnsAndTrains) {
  s2s::testing::TempDir dir;
  s2s::testing::write_corpus(dir.file("train.src"), dir.file("train.tgt"), 20, 1);
  const nlohmann::json config{
      {"data", {{"train_src", dir.file("train.src")}, {"train_tgt", dir.file("train.tgt")}}},
      {"model", {{"embedding_size", 8}, {"hidden_size", 8}}},
      {"training",
       {{"batch_size", 8}, {"max_steps", 3}, {"device", "cpu"}, {"cuda_graphs", true}, {"log_every", 1}}},
      {"output_dir", dir.file("run")}};
  s2s::testing::write_file(dir.file("c.json"), config.dump());
  const auto r = s2s::testing::run_s2s({"train", "--config", dir.file("c.json")}, dir.path());
  ASSERT_EQ(r.code(), 0) << r.describe();
  EXPECT_TRUE(s2s::testing::contains(r.err, "training.cuda_graphs is for a GPU")) << r.describe();
  EXPECT_TRUE(s2s::testing::contains(r.err, "step 3")) << r.describe();

  const auto bad = s2s::testing::run_s2s(
      {"train", "--config", dir.file("c.json"), "--set", "training.cuda_graph_length_step=0"}, dir.path());
  EXPECT_NE(bad.code(), 0);
  EXPECT_TRUE(s2s::testing::contains(bad.err, "training.cuda_graph_length_step")) << bad.describe();
}

}  // namespace
}  // namespace s2s
