// Tests of the update computation (src/update.h): a batch split into shards that run on threads side by
// side gives the gradient of the whole batch, and with dropout the same seed gives the same update.
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "config.h"
#include "data.h"
#include "model.h"
#include "random_examples.h"
#include "random.h"
#include "update.h"

namespace s2s {
namespace {

constexpr int64_t kSrcVocab = 23, kTgtVocab = 19;

// Sentences of varied lengths (so shards get different padding), ids above the specials.
std::vector<Example> make_examples(int n, uint32_t seed) {
  return s2s::testing::random_examples(n, seed, kSrcVocab, kTgtVocab, 9);
}

ModelConfig model_config(const std::string& cell, double dropout) {
  ModelConfig m;
  m.cell = cell;
  m.embedding_size = 8;
  m.hidden_size = 12;
  m.bidirectional = true;
  m.attention = "bahdanau";
  m.dropout = dropout;
  return m;
}

struct Result {
  std::vector<torch::Tensor> grads;
  Update update;
};

// The gradients that compute_update leaves, from a fresh model with fixed initial weights.
Result gradients(const ModelConfig& m, const TrainingConfig& t, const std::vector<Example>& examples,
                 const std::vector<std::vector<int64_t>>& batches, int64_t shards, uint64_t seed) {
  torch::manual_seed(7);
  Seq2Seq model(m, kSrcVocab, kTgtVocab);
  model->train();
  const auto params = model->parameters();
  UpdateOptions options;
  options.shards = shards;
  options.seed = seed;
  Result r;
  r.update = compute_update(model, params, examples, batches, t, torch::kCPU, options, nullptr);
  for (const auto& p : params) r.grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return r;
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

TEST(Update, SplitBatchDealsSentencesRoundRobin) {
  const std::vector<int64_t> idx{10, 11, 12, 13, 14};
  const auto two = split_batch(idx, 2);
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0], (std::vector<int64_t>{10, 12, 14}));
  EXPECT_EQ(two[1], (std::vector<int64_t>{11, 13}));
  const auto many = split_batch({4, 5}, 8);  // never an empty shard
  ASSERT_EQ(many.size(), 2u);
  EXPECT_EQ(many[0], (std::vector<int64_t>{4}));
  EXPECT_EQ(many[1], (std::vector<int64_t>{5}));
  EXPECT_EQ(split_batch(idx, 1).front(), idx);
}

// Without dropout the update is deterministic: every shard count gives the whole batch's gradient (the
// mean token loss), up to the order of floating-point sums.
TEST(Update, ShardsGiveTheWholeBatchGradient) {
  for (const std::string cell : {"rnn", "gru"}) {
    const auto m = model_config(cell, 0.0);
    TrainingConfig t;
    t.label_smoothing = 0.1;
    const auto examples = make_examples(13, 5);
    std::vector<int64_t> batch(13);
    for (int64_t i = 0; i < 13; ++i) batch[i] = i;
    const auto whole = gradients(m, t, examples, {batch}, 1, 1);
    double largest = 0;
    for (const auto& g : whole.grads) largest = std::max(largest, max_abs(g));
    ASSERT_GT(largest, 1e-3) << "the gradient is not trivially zero";
    for (int64_t shards : {2, 3, 5}) {
      const auto split = gradients(m, t, examples, {batch}, shards, 1);
      EXPECT_EQ(split.update.tokens, whole.update.tokens);
      EXPECT_NEAR(split.update.loss, whole.update.loss, 1e-5) << cell << " shards " << shards;
      ASSERT_EQ(split.grads.size(), whole.grads.size());
      for (size_t i = 0; i < whole.grads.size(); ++i)
        EXPECT_TRUE(torch::allclose(split.grads[i], whole.grads[i], 1e-4, 1e-6))
            << cell << " shards " << shards << " parameter " << i << ": max difference "
            << max_abs(split.grads[i] - whole.grads[i]);
    }
  }
}

// With shards and one batch, compute_update sums the squared gradients while it adds the shards' parts up
// (the clipping norm's input): that sum equals the one computed afresh from the .grad values it leaves.
// Where later work changes the values (several batches: a division after), it says it does not know.
TEST(Update, SquareSumOfTheShardedGradientIsTheGradientsOwn) {
  auto m = model_config("rnn", 0.0);
  m.hidden_size = 100;  // W_hh: 10,000 numbers, more than two of the sum's blocks of 4,096
  const int threads = torch::get_num_threads();
  torch::set_num_threads(2);  // the blocks shared among threads
  TrainingConfig t;
  const auto examples = make_examples(13, 5);
  std::vector<int64_t> batch(13);
  for (int64_t i = 0; i < 13; ++i) batch[i] = i;
  for (int64_t shards : {2, 3}) {
    const auto r = gradients(m, t, examples, {batch}, shards, 1);
    double expected = 0;
    for (const auto& g : r.grads) expected += g.to(torch::kDouble).pow(2).sum().item<double>();
    ASSERT_GT(expected, 0);
    EXPECT_NEAR(r.update.grad_square_sum, expected, 1e-12 * expected) << "shards " << shards;
  }
  EXPECT_LT(gradients(m, t, examples, {batch}, 1, 1).update.grad_square_sum, 0) << "one shard: not summed";
  const std::vector<int64_t> first(batch.begin(), batch.begin() + 6), second(batch.begin() + 6, batch.end());
  EXPECT_LT(gradients(m, t, examples, {first, second}, 2, 1).update.grad_square_sum, 0) << "two batches";
  torch::set_num_threads(threads);
}

// compute_update replaces whatever .grad held (the trainer no longer zeroes it first): stale gradients
// change nothing, on every path (one batch, shards, accumulation with and without shards), and a
// parameter that the loss does not reach ends with a zero gradient, as after zero_grad() and backward.
TEST(Update, StaleGradientsAreReplaced) {
  const auto m = model_config("rnn", 0.0);
  TrainingConfig t;
  const auto examples = make_examples(10, 9);
  const std::vector<std::vector<int64_t>> one{{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}, two{{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}};
  for (const auto& [batches, shards] : std::vector<std::pair<std::vector<std::vector<int64_t>>, int64_t>>{
           {one, 1}, {one, 2}, {two, 1}, {two, 2}}) {
    const auto clean = gradients(m, t, examples, batches, shards, 1);
    torch::manual_seed(7);
    Seq2Seq model(m, kSrcVocab, kTgtVocab);
    model->train();
    auto params = model->parameters();
    auto unused = torch::ones({3}, torch::requires_grad());
    params.push_back(unused);
    for (auto& p : params) p.mutable_grad() = torch::full_like(p, 1000.0);
    UpdateOptions options;
    options.shards = shards;
    options.seed = 1;
    const auto u = compute_update(model, params, examples, batches, t, torch::kCPU, options, nullptr);
    EXPECT_EQ(u.tokens, clean.update.tokens);
    for (size_t i = 0; i < clean.grads.size(); ++i)
      EXPECT_TRUE(torch::equal(params[i].grad(), clean.grads[i]))
          << batches.size() << " batches, " << shards << " shards, parameter " << i << ": max difference "
          << max_abs(params[i].grad() - clean.grads[i]);
    ASSERT_TRUE(unused.grad().defined());
    EXPECT_TRUE(torch::equal(unused.grad(), torch::zeros({3}))) << batches.size() << " batches, " << shards << " shards";
  }
}

// Two batches accumulated, each split: the same as the two batches as one.
TEST(Update, ShardedAccumulationEqualsTheUnion) {
  const auto m = model_config("rnn", 0.0);
  TrainingConfig t;
  const auto examples = make_examples(10, 9);
  const auto both = gradients(m, t, examples, {{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}}, 1, 1);
  const auto split = gradients(m, t, examples, {{0, 1, 2, 3, 4}, {5, 6, 7, 8, 9}}, 2, 1);
  EXPECT_EQ(split.update.tokens, both.update.tokens);
  EXPECT_NEAR(split.update.loss, both.update.loss, 1e-5);
  for (size_t i = 0; i < both.grads.size(); ++i)
    EXPECT_TRUE(torch::allclose(split.grads[i], both.grads[i], 1e-4, 1e-6)) << "parameter " << i;
}

// With dropout and scheduled sampling, each shard draws from its own generator seeded from the update's
// seed: the same seed repeats the update bit for bit, whichever thread finishes first; another seed
// draws other masks.
TEST(Update, ShardedDropoutIsRepeatableFromTheSeed) {
  const auto m = model_config("gru", 0.3);
  TrainingConfig t;
  t.scheduled_sampling = 0.5;
  const auto examples = make_examples(16, 3);
  std::vector<int64_t> batch(16);
  for (int64_t i = 0; i < 16; ++i) batch[i] = i;
  const auto a = gradients(m, t, examples, {batch}, 2, 42);
  for (int repeat = 0; repeat < 3; ++repeat) {
    const auto b = gradients(m, t, examples, {batch}, 2, 42);
    for (size_t i = 0; i < a.grads.size(); ++i) ASSERT_TRUE(torch::equal(a.grads[i], b.grads[i])) << "parameter " << i;
  }
  const auto c = gradients(m, t, examples, {batch}, 2, 43);
  bool differs = false;
  for (size_t i = 0; i < a.grads.size(); ++i) differs |= !torch::equal(a.grads[i], c.grads[i]);
  EXPECT_TRUE(differs) << "another seed should draw other dropout masks";
}

TEST(Update, ScopedGeneratorDropoutMatchesTorchDropoutInDistribution) {
  const auto x = torch::ones({200, 200});
  ScopedGenerator g(5);
  const auto y = s2s::dropout(x, 0.25, true);
  const double kept = (y != 0).to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(kept, 0.75, 0.01);
  // Kept values are scaled by 1 / (1 - p), as torch::dropout's.
  EXPECT_NEAR(y.masked_select(y != 0).mean().item<double>(), 1.0 / 0.75, 1e-5);
  EXPECT_TRUE(torch::equal(s2s::dropout(x, 0.25, false), x));
}

}  // namespace
}  // namespace s2s
