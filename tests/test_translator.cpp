// Pieces of `s2s translate` that need no model, and the Translator's batches side by side.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "tokenizer.h"
#include "translator.h"
#include "worker_threads.h"

TEST(Translator, UnkReplaceTakesTheSourceWordWithTheHighestWeight) {
  const std::vector<std::string> source = {"Zürich", "is", "big"};
  std::vector<std::string> output = {"<unk>", "ist", "<unk>", "<unk>"};
  // Rows: one per output token; columns: the three source tokens and </s>.
  const std::vector<std::vector<float>> attention = {
      {0.7f, 0.1f, 0.1f, 0.1f},   // -> Zürich
      {0.1f, 0.8f, 0.05f, 0.05f},
      {0.1f, 0.1f, 0.2f, 0.6f},   // </s> has the most weight, but is not a word: -> big
      {0.0f, 0.0f, 0.0f, 1.0f}};  // only </s>: the first source word among equals
  s2s::replace_unknowns(output, attention, source);
  EXPECT_EQ(output, (std::vector<std::string>{"Zürich", "ist", "big", "Zürich"}));
}

TEST(Translator, UnkReplaceWithoutAttentionChangesNothing) {
  std::vector<std::string> output = {"<unk>", "a"};
  s2s::replace_unknowns(output, {}, {"x"});
  EXPECT_EQ(output, (std::vector<std::string>{"<unk>", "a"}));
}

namespace {

// An untrained model (weights large enough that its outputs vary) with word vocabularies of 40 words.
s2s::LoadedModel random_model(const std::string& cell, const std::string& attention) {
  s2s::LoadedModel m;
  std::map<std::string, int64_t> src, tgt;
  for (int i = 0; i < 40; ++i) {
    src["s" + std::to_string(i)] = 100 - i;
    tgt["t" + std::to_string(i)] = 100 - i;
  }
  m.codec.src_tokenizer = std::make_shared<s2s::WordTokenizer>();
  m.codec.tgt_tokenizer = std::make_shared<s2s::WordTokenizer>();
  m.codec.src_vocab = s2s::Vocabulary::build(src, 1, 0);
  m.codec.tgt_vocab = s2s::Vocabulary::build(tgt, 1, 0);
  m.config.model.cell = cell;
  m.config.model.attention = attention;
  m.config.model.embedding_size = 32;
  m.config.model.hidden_size = 64;
  m.config.model.bidirectional = true;
  m.config.model.init_range = 0.3;
  torch::manual_seed(11);
  m.model = s2s::Seq2Seq(m.config.model, m.codec.src_vocab.size(), m.codec.tgt_vocab.size());
  return m;
}

std::vector<std::string> random_lines(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::string> lines;
  for (int i = 0; i < n; ++i) {
    std::string line;
    const int words = 1 + static_cast<int>(rng() % 12);
    for (int w = 0; w < words; ++w) line += (w ? " s" : "s") + std::to_string(rng() % 44);  // some unknown
    lines.push_back(i % 9 == 4 ? "" : line);  // and a few empty lines
  }
  return lines;
}

}  // namespace

// On the CPU with 2 threads, translate() runs its batches side by side on the worker threads (one
// intra-op thread each) instead of one after the other (two intra-op threads): the same translations,
// scores and attention weights, greedy and beam, for every cell and attention; and each line's words as
// when it is translated alone (so every result reached its own line).
TEST(Translator, BatchesSideBySideGiveTheSameTranslations) {
  const int before = torch::get_num_threads();
  torch::set_num_threads(2);
  const auto lines = random_lines(45, 5);
  for (const auto& [cell, attention] : std::vector<std::pair<std::string, std::string>>{
           {"rnn", "bahdanau"}, {"gru", "qkv"}, {"lstm", "none"}}) {
    for (int64_t beam : {1, 3}) {
      s2s::TranslatorOptions options;
      options.batch_size = 4;  // 10 batches of the 40 non-empty lines
      options.search.beam_size = beam;
      options.search.n_best = beam;
      options.batches_in_parallel = false;
      s2s::Translator one_by_one(random_model(cell, attention), torch::kCPU, options);
      options.batches_in_parallel = true;
      s2s::Translator side_by_side(random_model(cell, attention), torch::kCPU, options);
      EXPECT_EQ(one_by_one.batches_at_once(), 1);
      ASSERT_GE(side_by_side.batches_at_once(), 2);
      ASSERT_GE(s2s::worker_thread_count(), 2);
      const auto a = one_by_one.translate(lines), b = side_by_side.translate(lines);
      ASSERT_EQ(a.size(), lines.size());
      ASSERT_EQ(b.size(), lines.size());
      const std::string what = cell + "+" + attention + " beam " + std::to_string(beam);
      int64_t tokens = 0;
      for (size_t i = 0; i < lines.size(); ++i) {
        ASSERT_EQ(a[i].outputs.size(), b[i].outputs.size()) << what << ", line " << i;
        EXPECT_EQ(a[i].outputs.size(), lines[i].empty() ? 0u : static_cast<size_t>(beam)) << what << ", line " << i;
        for (size_t k = 0; k < a[i].outputs.size(); ++k) {
          EXPECT_EQ(a[i].outputs[k].tokens, b[i].outputs[k].tokens) << what << ", line " << i;
          EXPECT_EQ(a[i].outputs[k].score, b[i].outputs[k].score) << what << ", line " << i;
          EXPECT_EQ(a[i].outputs[k].attention, b[i].outputs[k].attention) << what << ", line " << i;
          tokens += static_cast<int64_t>(a[i].outputs[k].tokens.size());
        }
        // Alone, in a batch of its own: the same words (the last bits of the numbers depend on the batch).
        const auto alone = one_by_one.translate({lines[i]}).at(0);
        ASSERT_EQ(alone.outputs.size(), b[i].outputs.size()) << what << ", line " << i;
        for (size_t k = 0; k < alone.outputs.size(); ++k) {
          EXPECT_EQ(alone.outputs[k].tokens, b[i].outputs[k].tokens) << what << ", line " << i << " alone";
          EXPECT_NEAR(alone.outputs[k].score, b[i].outputs[k].score, 1e-4 * std::abs(alone.outputs[k].score))
              << what << ", line " << i << " alone";
        }
      }
      EXPECT_GT(tokens, 0) << what << ": nothing was translated";
    }
  }
  torch::set_num_threads(before);
}
