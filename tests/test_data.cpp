// Tests of the data path: vocabularies, the word tokenizer, UTF-8 lowercasing, reading and checking
// corpora, filtering, batching (bucketing, token budgets, determinism) and batch tensors.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.h"
#include "data.h"
#include "error.h"
#include "test_util.h"
#include "tokenizer.h"
#include "utf8.h"
#include "vocabulary.h"

namespace s2s {
namespace {

using s2s::testing::contains;
using s2s::testing::error_of;
using s2s::testing::TempDir;
using s2s::testing::write_file;


std::vector<std::string> tokens_of(const Vocabulary& v) {
  std::vector<std::string> out;
  for (int64_t i = 0; i < v.size(); ++i) out.push_back(v.token(i));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Vocabulary
// ---------------------------------------------------------------------------------------------

TEST(DataVocabulary, SpecialsAtFixedIds) {
  const Vocabulary v;
  ASSERT_EQ(v.size(), 4);
  EXPECT_EQ(v.token(Vocabulary::kPad), "<pad>");
  EXPECT_EQ(v.token(Vocabulary::kUnk), "<unk>");
  EXPECT_EQ(v.token(Vocabulary::kBos), "<s>");
  EXPECT_EQ(v.token(Vocabulary::kEos), "</s>");
  EXPECT_EQ(Vocabulary::kPad, 0);
  EXPECT_EQ(Vocabulary::kUnk, 1);
  EXPECT_EQ(Vocabulary::kBos, 2);
  EXPECT_EQ(Vocabulary::kEos, 3);
  // Built vocabularies keep them in place, even when a corpus contains the same strings.
  const auto b = Vocabulary::build({{"x", 9}, {"</s>", 100}, {"<pad>", 50}}, 1, 0);
  EXPECT_EQ(b.id("<pad>"), Vocabulary::kPad);
  EXPECT_EQ(b.id("</s>"), Vocabulary::kEos);
  EXPECT_EQ(b.token(4), "x");
  EXPECT_EQ(b.size(), 5);
}

TEST(DataVocabulary, BuildOrdersByFrequencyThenAlphabetically) {
  const std::map<std::string, int64_t> counts = {{"pear", 3}, {"apple", 3}, {"zebra", 7}, {"kiwi", 1},
                                                 {"banana", 3}, {"fig", 2}};
  const auto v = Vocabulary::build(counts, 1, 0);
  EXPECT_EQ(tokens_of(v), (std::vector<std::string>{"<pad>", "<unk>", "<s>", "</s>", "zebra", "apple", "banana",
                                                   "pear", "fig", "kiwi"}));
  EXPECT_EQ(v.id("zebra"), 4);
  EXPECT_EQ(v.id("kiwi"), 9);
}

TEST(DataVocabulary, MinFreqAndMaxSize) {
  const std::map<std::string, int64_t> counts = {{"a", 5}, {"b", 4}, {"c", 3}, {"d", 2}, {"e", 1}};
  EXPECT_EQ(Vocabulary::build(counts, 3, 0).size(), 4 + 3);  // a b c
  EXPECT_EQ(Vocabulary::build(counts, 1, 2).size(), 4 + 2);  // a b
  const auto both = Vocabulary::build(counts, 2, 10);        // a b c d
  EXPECT_EQ(tokens_of(both), (std::vector<std::string>{"<pad>", "<unk>", "<s>", "</s>", "a", "b", "c", "d"}));
  EXPECT_EQ(both.id("e"), Vocabulary::kUnk);
  EXPECT_EQ(Vocabulary::build(counts, 100, 0).size(), 4);  // nothing survives: specials only
}

TEST(DataVocabulary, UnknownEncodeDecode) {
  const auto v = Vocabulary::build({{"hello", 2}, {"world", 1}}, 1, 0);
  EXPECT_EQ(v.id("nope"), Vocabulary::kUnk);
  EXPECT_EQ(v.encode({"hello", "nope", "world"}),
            (std::vector<int64_t>{v.id("hello"), Vocabulary::kUnk, v.id("world")}));
  // decode skips <pad> and <s>, keeps <unk> and stops at </s>.
  EXPECT_EQ(v.decode({Vocabulary::kBos, v.id("hello"), Vocabulary::kUnk, Vocabulary::kPad, Vocabulary::kEos,
                      v.id("world")}),
            (std::vector<std::string>{"hello", "<unk>"}));
  EXPECT_THROW(v.token(v.size()), Error);
  EXPECT_THROW(v.token(-1), Error);
}

TEST(DataVocabulary, JsonRoundTrip) {
  const auto v = Vocabulary::build({{"b", 2}, {"a", 2}, {"ü", 5}, {"c", 1}}, 1, 0);
  const auto j = v.to_json();
  const auto back = Vocabulary::from_json(nlohmann::json::parse(j.dump()));
  EXPECT_EQ(tokens_of(back), tokens_of(v));
  for (const auto& t : tokens_of(v)) EXPECT_EQ(back.id(t), v.id(t)) << t;
  EXPECT_EQ(back.id("ü"), 4);
  // A list whose specials are out of place is rejected.
  EXPECT_THROW(Vocabulary::from_json(nlohmann::json{"<unk>", "<pad>", "<s>", "</s>", "x"}), Error);
  EXPECT_THROW(Vocabulary::from_json(nlohmann::json{{"a", 1}}), Error);
}

// ---------------------------------------------------------------------------------------------
// Word tokenizer and UTF-8
// ---------------------------------------------------------------------------------------------

TEST(DataTokenizer, WhitespaceRoundTrip) {
  const WordTokenizer t;
  const std::string text = "Hello, world! (a test) don't stop.";
  const auto tokens = t.tokenize(text);
  EXPECT_EQ(tokens, (std::vector<std::string>{"Hello,", "world!", "(a", "test)", "don't", "stop."}));
  EXPECT_EQ(t.detokenize(tokens), text);
  // Runs of whitespace, tabs, leading and trailing blanks are separators only.
  EXPECT_EQ(t.tokenize("  a \t b\r\n"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(t.tokenize("   ").empty());
  EXPECT_EQ(t.detokenize({}), "");
}

TEST(DataTokenizer, SplitPunctuationRoundTrip) {
  WordTokenizerOptions o;
  o.split_punctuation = true;
  const WordTokenizer t(o);
  const std::string text = "Hello, world! The dog (a big one) barked: 42% [really].";
  const auto tokens = t.tokenize(text);
  EXPECT_EQ(tokens, (std::vector<std::string>{"Hello", ",", "world", "!", "The", "dog", "(", "a", "big", "one", ")",
                                              "barked", ":", "42", "%", "[", "really", "]", "."}));
  EXPECT_EQ(t.detokenize(tokens), text);
  // Multi-byte characters are never split as punctuation.
  EXPECT_EQ(t.tokenize("Grüße, «Welt»!"), (std::vector<std::string>{"Grüße", ",", "«Welt»", "!"}));
  EXPECT_EQ(t.detokenize(t.tokenize("Grüße, «Welt»!")), "Grüße, «Welt»!");
}

TEST(DataTokenizer, LowercaseIncludingNonAscii) {
  WordTokenizerOptions o;
  o.lowercase = true;
  const WordTokenizer t(o);
  EXPECT_EQ(t.tokenize("ÄÖÜ Straße ABC"), (std::vector<std::string>{"äöü", "straße", "abc"}));
  EXPECT_EQ(utf8::lowercase("ÄÖÜ"), "äöü");
  EXPECT_EQ(utf8::lowercase("ÀÉÎÕØÞ"), "àéîõøþ");
  EXPECT_EQ(utf8::lowercase("ŁÓDŹ ŽŐ Ÿ"), "łódź žő ÿ");
  EXPECT_EQ(utf8::lowercase("ΑΘΗΝΑ"), "αθηνα");
  EXPECT_EQ(utf8::lowercase("МОСКВА ЁЖ"), "москва ёж");
  EXPECT_EQ(utf8::lowercase("×ß€ 中文 already lower"), "×ß€ 中文 already lower");  // unchanged
  // The tokenizer's JSON rebuilds the same behaviour.
  const auto back = tokenizer_from_json(t.to_json());
  EXPECT_EQ(back->tokenize("ÄB."), (std::vector<std::string>{"äb."}));
  o.split_punctuation = true;
  const auto split = tokenizer_from_json(WordTokenizer(o).to_json());
  EXPECT_EQ(split->tokenize("ÄB."), (std::vector<std::string>{"äb", "."}));
  EXPECT_THROW(tokenizer_from_json(nlohmann::json{{"type", "bpe"}}), Error);
}

TEST(DataUtf8, FindInvalid) {
  EXPECT_FALSE(utf8::find_invalid("plain ascii").has_value());
  EXPECT_FALSE(utf8::find_invalid("äöü 中文 😀").has_value());
  EXPECT_EQ(utf8::find_invalid("ab\xff"), std::optional<size_t>(2));
  EXPECT_EQ(utf8::find_invalid("a\xc3"), std::optional<size_t>(1));         // truncated sequence
  EXPECT_EQ(utf8::find_invalid("\xc0\xaf"), std::optional<size_t>(0));     // overlong
  EXPECT_EQ(utf8::find_invalid("x\xed\xa0\x80"), std::optional<size_t>(1));  // surrogate
  EXPECT_EQ(utf8::find_invalid("\xf4\x90\x80\x80"), std::optional<size_t>(0));  // > U+10FFFF
}

// The codec on a small corpus: encoding in-vocabulary text and decoding it gives the text back.
TEST(DataCodec, DecodeOfEncodeIsIdentity) {
  ParallelText text;
  text.src = {"der Hund bellt .", "die Katze schläft", "ein großer Hund ."};
  text.tgt = {"The dog (a big one) barked, loudly!", "The cat sleeps.", "A big dog: 100% [sure]?"};
  DataConfig d;
  d.split_punctuation = true;
  const auto codec = TextCodec::build(d, text);
  for (const auto& line : text.tgt) {
    const auto ids = codec.encode_tgt(line);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), Vocabulary::kUnk), 0) << line;
    EXPECT_EQ(codec.decode_tgt(ids), line);
    auto with_eos = ids;
    with_eos.push_back(Vocabulary::kEos);
    with_eos.push_back(ids.front());  // anything after </s> is ignored
    EXPECT_EQ(codec.decode_tgt(with_eos), line);
  }
  // Source ids end with </s>; target ids carry no specials.
  const auto src = codec.encode_src("der Hund bellt .");
  ASSERT_EQ(src.size(), 5u);
  EXPECT_EQ(src.back(), Vocabulary::kEos);
  EXPECT_EQ(codec.src_vocab.id("Hund"), src[1]);
  EXPECT_EQ(codec.encode_src("Elefant").front(), Vocabulary::kUnk);
  // Separate vocabularies by default; the JSON round trip keeps everything.
  EXPECT_EQ(codec.src_vocab.id("dog"), Vocabulary::kUnk);
  const auto back = TextCodec::from_json(nlohmann::json::parse(codec.to_json().dump()));
  EXPECT_EQ(back.encode_tgt(text.tgt[0]), codec.encode_tgt(text.tgt[0]));
  EXPECT_EQ(back.decode_tgt(codec.encode_tgt(text.tgt[2])), text.tgt[2]);
  EXPECT_EQ(tokens_of(back.src_vocab), tokens_of(codec.src_vocab));

  d.shared_vocab = true;
  const auto shared = TextCodec::build(d, text);
  EXPECT_EQ(tokens_of(shared.src_vocab), tokens_of(shared.tgt_vocab));
  EXPECT_NE(shared.src_vocab.id("dog"), Vocabulary::kUnk);
  EXPECT_NE(shared.tgt_vocab.id("Hund"), Vocabulary::kUnk);
}

// ---------------------------------------------------------------------------------------------
// Reading files
// ---------------------------------------------------------------------------------------------

TEST(DataRead, CrlfAndLastLineWithoutNewline) {
  TempDir dir;
  const auto path = dir.file("crlf.txt");
  write_file(path, "a b\r\n\r\nc d e\r\nlast");
  EXPECT_EQ(read_lines(path), (std::vector<std::string>{"a b", "", "c d e", "last"}));
  write_file(path, "");
  EXPECT_TRUE(read_lines(path).empty());
}

TEST(DataRead, MissingFileNamesThePath) {
  TempDir dir;
  const auto path = dir.file("does-not-exist.src");
  const auto msg = error_of([&] { read_lines(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
}

TEST(DataRead, InvalidUtf8NamesFileLineAndByte) {
  TempDir dir;
  const auto path = dir.file("bad.txt");
  write_file(path, "fine\nok \xff here\nalso fine\n");
  const auto msg = error_of([&] { read_lines(path); });
  EXPECT_TRUE(contains(msg, path + ":2")) << msg;
  EXPECT_TRUE(contains(msg, "byte 4")) << msg;  // 1-based byte offset within the line
}

TEST(DataRead, ParallelLineCountMismatchNamesBothFilesAndCounts) {
  TempDir dir;
  const auto src = dir.file("x.src"), tgt = dir.file("x.tgt");
  write_file(src, "a\nb\nc\n");
  write_file(tgt, "A\nB\n");
  const auto msg = error_of([&] { read_parallel(src, tgt); });
  EXPECT_TRUE(contains(msg, src)) << msg;
  EXPECT_TRUE(contains(msg, tgt)) << msg;
  EXPECT_TRUE(contains(msg, src + " has 3")) << msg;
  EXPECT_TRUE(contains(msg, tgt + " has 2")) << msg;
  write_file(tgt, "A\nB\nC\n");
  const auto ok = read_parallel(src, tgt);
  EXPECT_EQ(ok.src, (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(ok.tgt, (std::vector<std::string>{"A", "B", "C"}));
}

// ---------------------------------------------------------------------------------------------
// Filtering
// ---------------------------------------------------------------------------------------------

TEST(DataFilter, EncodeCorpusCounts) {
  ParallelText text;
  text.src = {"a b c", "", "a b", "a b c d e f g", "a", "a b c d", "a b"};
  text.tgt = {"x y z", "x", "", "x y", "x y z w", "x y", "x y z w"};
  //  0 kept
  //  1 empty source
  //  2 empty target
  //  3 too long (7 source tokens > max_len 5)
  //  4 ratio 4 > 2
  //  5 ratio exactly 2: kept
  //  6 ratio 2: kept
  DataConfig d;
  d.max_len = 5;
  d.max_length_ratio = 2.0;
  const auto codec = TextCodec::build(d, text);
  FilterStats s;
  const auto kept = encode_corpus(text, codec, d, true, &s);
  EXPECT_EQ(s.read, 7);
  EXPECT_EQ(s.kept, 3);
  EXPECT_EQ(s.empty, 2);
  EXPECT_EQ(s.too_long, 1);
  EXPECT_EQ(s.bad_ratio, 1);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept[0].src, codec.encode_src(text.src[0]));
  EXPECT_EQ(kept[0].tgt, codec.encode_tgt(text.tgt[0]));
  EXPECT_EQ(kept[1].src, codec.encode_src(text.src[5]));
  EXPECT_EQ(kept[2].src, codec.encode_src(text.src[6]));

  // max_length_ratio 0 switches the ratio filter off; a longer max_len keeps the long pair.
  d.max_length_ratio = 0;
  d.max_len = 100;
  encode_corpus(text, codec, d, true, &s);
  EXPECT_EQ(s.kept, 5);
  EXPECT_EQ(s.bad_ratio, 0);
  EXPECT_EQ(s.too_long, 0);
  // Without filtering everything is kept in order (validation and test sets).
  const auto all = encode_corpus(text, codec, d, false, &s);
  EXPECT_EQ(all.size(), 7u);
  EXPECT_EQ(s.kept, 7);
  EXPECT_EQ(all[1].src, std::vector<int64_t>{Vocabulary::kEos});
}

// ---------------------------------------------------------------------------------------------
// Batching
// ---------------------------------------------------------------------------------------------

// Examples with source lengths 1..max_len drawn at random and target lengths within 2 of them, as in
// a real parallel corpus (ids irrelevant), in random order.
std::vector<Example> random_examples(size_t n, int max_len, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<Example> out(n);
  for (auto& e : out) {
    const auto ls = 1 + static_cast<int>(rng() % max_len);
    const auto lt = std::max(1, ls + static_cast<int>(rng() % 5) - 2);
    e.src.assign(ls, 7);
    e.src.push_back(Vocabulary::kEos);
    e.tgt.assign(lt, 8);
  }
  return out;
}

double padding_fraction(const std::vector<Example>& examples, const std::vector<std::vector<int64_t>>& batches) {
  int64_t padded = 0, real = 0;
  for (const auto& b : batches) {
    const auto batch = make_batch(examples, b);
    padded += batch.padded_tokens;
    real += batch.real_tokens;
  }
  return 1.0 - static_cast<double>(real) / static_cast<double>(padded);
}

void expect_each_once(const std::vector<std::vector<int64_t>>& batches, size_t n) {
  std::vector<int> seen(n, 0);
  for (const auto& b : batches) {
    EXPECT_FALSE(b.empty());
    for (auto i : b) {
      ASSERT_GE(i, 0);
      ASSERT_LT(static_cast<size_t>(i), n);
      ++seen[i];
    }
  }
  for (size_t i = 0; i < n; ++i) EXPECT_EQ(seen[i], 1) << "example " << i;
}

TEST(DataBatching, EveryExampleOncePerEpoch) {
  const auto examples = random_examples(1003, 40, 7);
  BatchingOptions o;
  o.batch_size = 16;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const auto batches = epoch_batches(examples, o, epoch);
    expect_each_once(batches, examples.size());
    EXPECT_EQ(batches.size(), (examples.size() + 15) / 16);  // sentences: full batches but one
    for (const auto& b : batches) EXPECT_LE(b.size(), 16u);
  }
  o.batch_type = "tokens";
  o.batch_size = 300;
  expect_each_once(epoch_batches(examples, o, 0), examples.size());
  expect_each_once(ordered_batches(examples, 16, true), examples.size());
  expect_each_once(ordered_batches(examples, 16, false), examples.size());
}

TEST(DataBatching, DeterministicFromSeedAndEpoch) {
  const auto examples = random_examples(500, 30, 11);
  BatchingOptions o;
  o.batch_size = 8;
  o.seed = 5;
  const auto a = epoch_batches(examples, o, 2);
  EXPECT_EQ(epoch_batches(examples, o, 2), a);  // same seed and epoch: the same batches
  EXPECT_NE(epoch_batches(examples, o, 3), a);  // another epoch: another order
  auto other = o;
  other.seed = 6;
  EXPECT_NE(epoch_batches(examples, other, 2), a);  // another seed: another order
  // Not merely the same batches shuffled: the first batch's members differ between epochs.
  const auto b = epoch_batches(examples, o, 3);
  std::set<std::vector<int64_t>> sa, sb;
  for (auto v : a) {
    std::sort(v.begin(), v.end());
    sa.insert(v);
  }
  for (auto v : b) {
    std::sort(v.begin(), v.end());
    sb.insert(v);
  }
  EXPECT_NE(sa, sb);
}

TEST(DataBatching, BucketingReducesPadding) {
  const auto examples = random_examples(1000, 50, 3);
  BatchingOptions o;
  o.batch_size = 20;
  const double bucketed = padding_fraction(examples, epoch_batches(examples, o, 0));
  const double plain = padding_fraction(examples, ordered_batches(examples, 20, false));
  EXPECT_GT(plain, 0.3);  // random lengths 1..50: lots of padding without bucketing
  EXPECT_LT(bucketed, plain / 3) << "bucketed " << bucketed << ", unbucketed " << plain;
  // Sorted batches (validation) are bucketed too.
  EXPECT_LT(padding_fraction(examples, ordered_batches(examples, 20, true)), plain);
}

TEST(DataBatching, TokenBudgetRespected) {
  const auto examples = random_examples(1000, 50, 9);
  BatchingOptions o;
  o.batch_type = "tokens";
  o.batch_size = 200;
  const auto batches = epoch_batches(examples, o, 1);
  double fill = 0;
  for (const auto& b : batches) {
    const auto batch = make_batch(examples, b);
    // Padded cells of each side (the longest sentence times the batch size) stay within the budget;
    // a single sentence longer than the budget would be a batch of its own.
    if (b.size() > 1) {
      EXPECT_LE(batch.src.numel(), o.batch_size);
      EXPECT_LE(batch.tgt_out.numel(), o.batch_size);
    }
    fill += static_cast<double>(std::max(batch.src.numel(), batch.tgt_out.numel())) / o.batch_size;
  }
  // And batches are filled, not cut after one sentence each.
  EXPECT_GT(fill / batches.size(), 0.7);
  EXPECT_LT(batches.size(), examples.size() / 3);
  // A bigger budget gives fewer batches.
  o.batch_size = 800;
  EXPECT_LT(epoch_batches(examples, o, 1).size() * 3, batches.size());
}

TEST(DataBatching, MakeBatchShapesAndPadding) {
  std::vector<Example> ex(3);
  ex[0].src = {5, 6, 3};
  ex[0].tgt = {7, 8};
  ex[1].src = {9, 3};
  ex[1].tgt = {10, 11, 12};
  ex[2].src = {4, 4, 4, 4, 3};
  ex[2].tgt = {13};
  const auto b = make_batch(ex, {1, 0});  // batch order as given
  ASSERT_EQ(b.src.sizes(), (std::vector<int64_t>{2, 3}));
  ASSERT_EQ(b.tgt_in.sizes(), (std::vector<int64_t>{2, 4}));
  ASSERT_EQ(b.tgt_out.sizes(), (std::vector<int64_t>{2, 4}));
  EXPECT_EQ(b.src.scalar_type(), torch::kInt64);
  EXPECT_TRUE(torch::equal(b.src, torch::tensor({9, 3, 0, 5, 6, 3}, torch::kInt64).view({2, 3})));
  EXPECT_TRUE(torch::equal(b.src_lengths, torch::tensor({2, 3}, torch::kInt64)));
  EXPECT_TRUE(torch::equal(b.tgt_in, torch::tensor({2, 10, 11, 12, 2, 7, 8, 0}, torch::kInt64).view({2, 4})));
  EXPECT_TRUE(torch::equal(b.tgt_out, torch::tensor({10, 11, 12, 3, 7, 8, 3, 0}, torch::kInt64).view({2, 4})));
  // tgt_in starts with <s>; every tgt_out row has </s> right after the last real token.
  EXPECT_TRUE(torch::all(b.tgt_in.select(1, 0) == Vocabulary::kBos).item<bool>());
  EXPECT_EQ(b.tgt_tokens, 4 + 3);
  EXPECT_EQ(b.real_tokens, (2 + 4) + (3 + 3));
  EXPECT_EQ(b.padded_tokens, 2 * (3 + 4));
  EXPECT_EQ(b.indices, (std::vector<int64_t>{1, 0}));

  const auto c = make_batch(ex, {2});
  EXPECT_TRUE(torch::equal(c.tgt_in, torch::tensor({2, 13}, torch::kInt64).view({1, 2})));
  EXPECT_TRUE(torch::equal(c.tgt_out, torch::tensor({13, 3}, torch::kInt64).view({1, 2})));
  EXPECT_EQ(c.padded_tokens, c.real_tokens);

  const auto s = make_source_batch({{5, 3}, {6, 7, 8, 3}});
  EXPECT_TRUE(torch::equal(s.src, torch::tensor({5, 3, 0, 0, 6, 7, 8, 3}, torch::kInt64).view({2, 4})));
  EXPECT_TRUE(torch::equal(s.src_lengths, torch::tensor({2, 4}, torch::kInt64)));
  EXPECT_FALSE(s.tgt_in.defined());
}

TEST(DataFiles, TabSeparatedCorpus) {
  TempDir dir;
  const auto path = dir.file("pairs.tsv");
  write_file(path, "Go.\tVa !\tCC-BY 2.0 (France) Attribution\r\nHi.\tSalut !\n\t\n");
  const auto t = read_parallel(path, "");
  EXPECT_EQ(t.src, (std::vector<std::string>{"Go.", "Hi.", ""}));
  EXPECT_EQ(t.tgt, (std::vector<std::string>{"Va !", "Salut !", ""}));  // extra columns and CR dropped

  write_file(path, "Go.\tVa !\nno tab here\n");
  const auto msg = error_of([&] { read_parallel(path, ""); });
  EXPECT_TRUE(contains(msg, path + ":2")) << msg;
  EXPECT_TRUE(contains(msg, "tab")) << msg;
}

}  // namespace
}  // namespace s2s
