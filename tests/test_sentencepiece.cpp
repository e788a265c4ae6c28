// The SentencePiece tokenizer: training (unigram, bpe), round trips, unknown characters, the model
// inside to_json(), the helper process failing in every way we can provoke, the config keys, and
// `s2s train` + `s2s translate` with nothing but the checkpoint left.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "checkpoint.h"
#include "config.h"
#include "data.h"
#include "spm_process.h"
#include "test_util.h"
#include "tokenizer.h"
#include "utf8.h"

namespace s2s {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using s2s::testing::contains;
using s2s::testing::error_of;
using s2s::testing::run_s2s;
using s2s::testing::run_s2s_with_input;
using s2s::testing::split_lines;
using s2s::testing::TempDir;
using s2s::testing::write_file;

const std::string kMeta = "\xE2\x96\x81";  // U+2581, SentencePiece's whitespace mark

// Sentences of 3-8 words drawn from `vocabulary` with a fixed linear congruential generator.
std::vector<std::string> make_sentences(const std::vector<std::string>& vocabulary, int count, uint32_t seed) {
  uint32_t state = seed;
  auto next = [&] {
    state = state * 1664525u + 1013904223u;
    return state >> 8;
  };
  std::vector<std::string> lines;
  for (int i = 0; i < count; ++i) {
    const int n = 3 + static_cast<int>(next() % 6);
    std::string line;
    for (int k = 0; k < n; ++k) line += (k ? " " : "") + vocabulary[next() % vocabulary.size()];
    lines.push_back(line);
  }
  return lines;
}

const std::vector<std::string> kGerman = {"der", "hund", "läuft", "über", "die", "straße", "schnell", "eine",
                                          "frau", "spielt", "mit", "einem", "ball", "im", "park", "kinder"};
const std::vector<std::string> kEnglish = {"THE", "DOG", "RUNS", "ACROSS", "STREET", "QUICKLY", "A",
                                           "WOMAN", "PLAYS", "WITH", "BALL", "IN", "PARK", "CHILDREN"};

std::string join_pieces(const std::vector<std::string>& pieces) {
  std::string out;
  for (const auto& p : pieces) out += p;
  return out;
}

std::string replace_all(std::string s, const std::string& from, const std::string& to) {
  for (size_t at = 0; (at = s.find(from, at)) != std::string::npos; at += to.size()) s.replace(at, from.size(), to);
  return s;
}

// Sets an environment variable for the lifetime of the object.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old, had_ = true;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_) ::setenv(name_, old_.c_str(), 1);
    else ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

class SentencePiece : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!S2S_HAVE_SPM_HELPER) GTEST_SKIP() << "s2s-spm was not built (no libsentencepiece-dev)";
  }
};

// ---------------------------------------------------------------------------------------------
// Training and round trips
// ---------------------------------------------------------------------------------------------

class SentencePieceTypes : public SentencePiece, public ::testing::WithParamInterface<const char*> {};

TEST_P(SentencePieceTypes, TrainsSubwordsAndRoundTrips) {
  const auto lines = make_sentences(kGerman, 300, 1);
  SentencePieceTrainOptions o;
  o.model_type = GetParam();
  o.vocab_size = 40;  // 4 specials, about 24 characters and the whitespace mark: room for a few merges only
  const auto tok = SentencePieceTokenizer::train(lines, o, "test lines");
  const auto pieces = tok->pieces();

  // The vocabulary: Vocabulary's four specials, then the pieces; never more than vocab_size.
  ASSERT_GT(pieces.size(), 20u);
  EXPECT_LE(static_cast<int64_t>(pieces.size()) + 4, o.vocab_size);
  for (const auto& special : Vocabulary::specials())
    EXPECT_EQ(std::count(pieces.begin(), pieces.end(), special), 0) << special;
  // character_coverage 1.0: every character of the text is a piece of its own.
  for (const char* c : {"ä", "ü", "ß", "k"}) EXPECT_EQ(std::count(pieces.begin(), pieces.end(), c), 1) << c;

  nlohmann::json tokens = Vocabulary::specials();
  for (const auto& p : pieces) tokens.push_back(p);
  const auto vocab = Vocabulary::from_json(tokens);

  size_t words = 0, chars = 0, token_count = 0;
  const auto all = tok->tokenize_all(lines);
  ASSERT_EQ(all.size(), lines.size());
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& t = all[i];
    // Batched and single-line tokenisation agree.
    if (i < 5) {
      EXPECT_EQ(tok->tokenize(lines[i]), t);
    }
    // Pieces are pieces of the text: concatenated, with the whitespace mark as a space, they give the
    // line with a leading space (SentencePiece's dummy prefix).
    EXPECT_EQ(replace_all(join_pieces(t), kMeta, " "), " " + lines[i]);
    const auto ids = vocab.encode(t);
    EXPECT_EQ(std::count(ids.begin(), ids.end(), Vocabulary::kUnk), 0) << lines[i];
    EXPECT_EQ(tok->detokenize(vocab.decode(ids)), lines[i]);
    words += split_lines(replace_all(lines[i], " ", "\n")).size();
    chars += lines[i].size();
    token_count += t.size();
  }
  // Subwords: 40 pieces cannot hold the 16 words whole, so some are split; and characters are merged
  // into longer pieces (one piece per character and space would give about `chars` tokens).
  EXPECT_GT(token_count, words);
  EXPECT_LT(token_count * 10, chars * 9);
}

INSTANTIATE_TEST_SUITE_P(ModelTypes, SentencePieceTypes, ::testing::Values("unigram", "bpe"));

TEST_F(SentencePiece, UnigramAndBpeGiveDifferentModels) {
  const auto lines = make_sentences(kGerman, 300, 2);
  SentencePieceTrainOptions u, b;
  u.model_type = "unigram";
  b.model_type = "bpe";
  u.vocab_size = b.vocab_size = 60;
  const auto unigram = SentencePieceTokenizer::train(lines, u, "test lines");
  const auto bpe = SentencePieceTokenizer::train(lines, b, "test lines");
  EXPECT_NE(unigram->model(), bpe->model());
  EXPECT_NE(unigram->pieces(), bpe->pieces());
}

TEST_F(SentencePiece, UnknownCharactersBecomeUnkWithoutCrashing) {
  const auto lines = make_sentences(kGerman, 200, 3);
  SentencePieceTrainOptions o;
  o.vocab_size = 50;
  const auto tok = SentencePieceTokenizer::train(lines, o, "test lines");
  nlohmann::json tokens = Vocabulary::specials();
  for (const auto& p : tok->pieces()) tokens.push_back(p);
  const auto vocab = Vocabulary::from_json(tokens);

  const std::string text = "der hund 漢字 € QXZ";
  const auto t = tok->tokenize(text);
  const auto ids = vocab.encode(t);
  EXPECT_GE(std::count(ids.begin(), ids.end(), Vocabulary::kUnk), 3) << text;
  const auto back = tok->detokenize(vocab.decode(ids));
  EXPECT_EQ(back.rfind("der hund ", 0), 0u) << back;  // the known words survive
  EXPECT_FALSE(contains(back, "漢")) << back;

  // Tokens that are no piece of the model (unk replacement copies source tokens) come out as text.
  EXPECT_EQ(tok->detokenize({kMeta + "der", kMeta + "Zebra"}), "der Zebra");
  EXPECT_EQ(tok->detokenize({}), "");
  EXPECT_TRUE(tok->tokenize("").empty());
}

TEST_F(SentencePiece, LowercaseAppliesToTrainingAndEncoding) {
  const auto lines = make_sentences(kEnglish, 200, 4);
  SentencePieceTrainOptions o;
  o.vocab_size = 50;
  o.lowercase = true;
  const auto tok = SentencePieceTokenizer::train(lines, o, "test lines");
  for (const auto& p : tok->pieces()) EXPECT_EQ(p, utf8::lowercase(p));
  EXPECT_EQ(tok->tokenize("THE DOG"), tok->tokenize("the dog"));
  EXPECT_EQ(tok->detokenize(tok->tokenize("THE DOG")), "the dog");
}

TEST_F(SentencePiece, JsonRoundTripGivesIdenticalEncodings) {
  const auto lines = make_sentences(kGerman, 200, 5);
  SentencePieceTrainOptions o;
  o.model_type = "bpe";
  o.vocab_size = 50;
  o.lowercase = true;
  const auto tok = SentencePieceTokenizer::train(lines, o, "test lines");
  const json j = tok->to_json();
  EXPECT_EQ(j.at("type"), "sentencepiece");
  EXPECT_EQ(j.at("lowercase"), true);

  // Through a JSON text, as in a checkpoint; a new helper process reads the model.
  const auto copy = tokenizer_from_json(json::parse(j.dump()));
  const auto* spm = dynamic_cast<const SentencePieceTokenizer*>(copy.get());
  ASSERT_NE(spm, nullptr);
  EXPECT_EQ(spm->model(), tok->model());
  EXPECT_EQ(spm->pieces(), tok->pieces());
  std::vector<std::string> probe = lines;
  probe.push_back("DER Hund läuft € weg");
  EXPECT_EQ(copy->tokenize_all(probe), tok->tokenize_all(probe));
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(copy->detokenize(tok->tokenize(lines[i])), lines[i]);

  // A damaged model string is an error naming the checkpoint's tokenizer.
  json broken = j;
  broken["model"] = "not*base64";
  EXPECT_TRUE(contains(error_of([&] { tokenizer_from_json(broken); }), "base64"));
  broken["model"] = "aGVsbG8gd29ybGQh";  // "hello world!": base64, but no model
  const auto bad = tokenizer_from_json(broken);
  const auto message = error_of([&] { bad->tokenize("der hund"); });
  EXPECT_TRUE(contains(message, "not a SentencePiece model")) << message;
  EXPECT_TRUE(contains(message, "checkpoint")) << message;
}

// ---------------------------------------------------------------------------------------------
// TextCodec::build: joint and per-side models, existing .model files, errors naming the keys
// ---------------------------------------------------------------------------------------------

DataConfig spm_data_config(int64_t vocab_size) {
  DataConfig d;
  d.tokenizer = "sentencepiece";
  d.vocab_size = vocab_size;
  d.train_src = "train.de";
  d.train_tgt = "train.en";
  return d;
}

TEST_F(SentencePiece, JointAndPerSideModels) {
  ParallelText text{make_sentences(kGerman, 200, 6), make_sentences(kEnglish, 200, 7)};
  auto d = spm_data_config(60);

  d.shared_vocab = false;
  const auto per_side = TextCodec::build(d, text);
  EXPECT_NE(per_side.src_tokenizer, per_side.tgt_tokenizer);
  // The German model has no capital letters, the English one no umlauts.
  EXPECT_EQ(per_side.src_vocab.id("Q"), Vocabulary::kUnk);
  EXPECT_NE(per_side.tgt_vocab.id("Q"), Vocabulary::kUnk);
  EXPECT_EQ(per_side.tgt_vocab.id("ü"), Vocabulary::kUnk);
  EXPECT_NE(per_side.src_vocab.id("ü"), Vocabulary::kUnk);
  EXPECT_LE(per_side.src_vocab.size(), 60);
  EXPECT_LE(per_side.tgt_vocab.size(), 60);

  d.shared_vocab = true;
  const auto joint = TextCodec::build(d, text);
  EXPECT_EQ(joint.src_tokenizer, joint.tgt_tokenizer);
  EXPECT_EQ(joint.src_vocab.to_json(), joint.tgt_vocab.to_json());
  EXPECT_NE(joint.src_vocab.id("Q"), Vocabulary::kUnk);
  EXPECT_NE(joint.src_vocab.id("ü"), Vocabulary::kUnk);
  const auto joint_copy = TextCodec::from_json(joint.to_json());
  EXPECT_EQ(joint_copy.src_tokenizer, joint_copy.tgt_tokenizer);  // one tokenizer again after the round trip

  // The codec, through JSON, encodes and decodes as before.
  const auto copy = TextCodec::from_json(json::parse(per_side.to_json().dump()));
  EXPECT_NE(copy.src_tokenizer, copy.tgt_tokenizer);
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(copy.encode_src(text.src[i]), per_side.encode_src(text.src[i]));
    EXPECT_EQ(copy.decode_tgt(per_side.encode_tgt(text.tgt[i])), text.tgt[i]);
  }
  // encode_corpus batches through the helper and gives what line-by-line encoding gives.
  FilterStats stats;
  const auto examples = encode_corpus(text, per_side, d, /*filter=*/true, &stats);
  ASSERT_EQ(examples.size(), text.src.size());
  for (size_t i = 0; i < 10; ++i) {
    EXPECT_EQ(examples[i].src, per_side.encode_src(text.src[i]));
    EXPECT_EQ(examples[i].tgt, per_side.encode_tgt(text.tgt[i]));
  }
}

TEST_F(SentencePiece, ExistingModelFilesAndBadOnes) {
  TempDir dir;
  ParallelText text{make_sentences(kGerman, 200, 8), make_sentences(kEnglish, 200, 9)};
  SentencePieceTrainOptions o;
  o.vocab_size = 50;
  const auto src_model = SentencePieceTokenizer::train(text.src, o, "src");
  const auto tgt_model = SentencePieceTokenizer::train(text.tgt, o, "tgt");
  write_file(dir.file("de.model"), src_model->model());
  write_file(dir.file("en.model"), tgt_model->model());

  auto d = spm_data_config(8000);  // ignored: the models are loaded
  d.spm_model = dir.file("de.model");
  d.spm_model_tgt = dir.file("en.model");
  const auto codec = TextCodec::build(d, text);
  EXPECT_EQ(static_cast<const SentencePieceTokenizer&>(*codec.src_tokenizer).model(), src_model->model());
  EXPECT_EQ(static_cast<const SentencePieceTokenizer&>(*codec.tgt_tokenizer).model(), tgt_model->model());
  EXPECT_EQ(codec.src_vocab.size(), static_cast<int64_t>(src_model->pieces().size()) + 4);
  EXPECT_EQ(codec.tgt_tokenizer->tokenize(text.tgt[0]), tgt_model->tokenize(text.tgt[0]));

  // One model for both sides.
  d.spm_model_tgt.clear();
  const auto one = TextCodec::build(d, text);
  EXPECT_EQ(one.src_tokenizer, one.tgt_tokenizer);

  d.spm_model = dir.file("missing.model");
  auto message = error_of([&] { TextCodec::build(d, text); });
  EXPECT_TRUE(contains(message, "data.spm_model")) << message;
  EXPECT_TRUE(contains(message, dir.file("missing.model"))) << message;

  write_file(dir.file("text.model"), "this is not a model\n");
  d.spm_model = dir.file("text.model");
  message = error_of([&] { TextCodec::build(d, text); });
  EXPECT_TRUE(contains(message, "data.spm_model: " + dir.file("text.model"))) << message;
  EXPECT_TRUE(contains(message, "not a SentencePiece model")) << message;

  d.spm_model = dir.file("de.model");
  d.spm_model_tgt = dir.file("text.model");
  message = error_of([&] { TextCodec::build(d, text); });
  EXPECT_TRUE(contains(message, "data.spm_model_tgt: " + dir.file("text.model"))) << message;
}

TEST_F(SentencePiece, ConfigKeysAreChecked) {
  json j = {{"data", {{"tokenizer", "sentencepiece"}, {"spm_model_type", "wordpiece"}}}};
  auto message = error_of([&] { config_from_json(j, "c.json"); });
  EXPECT_TRUE(contains(message, "c.json: data.spm_model_type")) << message;

  j = {{"data", {{"tokenizer", "sentencepiece"}, {"spm_model_tgt", "en.model"}}}};
  message = error_of([&] { config_from_json(j, "c.json"); });
  EXPECT_TRUE(contains(message, "c.json: data.spm_model_tgt")) << message;

  j = {{"data", {{"tokenizer", "word"}, {"spm_model", "x.model"}}}};
  message = error_of([&] { config_from_json(j, "c.json"); });
  EXPECT_TRUE(contains(message, "c.json: data.spm_model")) << message;

  j = {{"data", {{"tokenizer", "sentencepiece"}, {"shared_vocab", true}, {"spm_model", "a"}, {"spm_model_tgt", "b"}}}};
  message = error_of([&] { config_from_json(j, "c.json"); });
  EXPECT_TRUE(contains(message, "c.json: data.shared_vocab")) << message;

  j = {{"data", {{"tokenizer", "sentencepiece"}, {"spm_model_type", "bpe"}, {"spm_model", "a.model"}}}};
  const auto c = config_from_json(j, "c.json");
  EXPECT_EQ(c.data.spm_model_type, "bpe");
  EXPECT_EQ(c.data.spm_model, "a.model");
  EXPECT_EQ(config_to_json(c)["data"]["spm_model"], "a.model");
}

TEST_F(SentencePiece, NoTrainingTextIsAnError) {
  SentencePieceTrainOptions o;
  const auto message = error_of([&] { SentencePieceTokenizer::train({"", ""}, o, "empty.txt"); });
  EXPECT_TRUE(contains(message, "empty.txt")) << message;
}

// ---------------------------------------------------------------------------------------------
// The helper process: missing, dying, answering garbage
// ---------------------------------------------------------------------------------------------

// A tokenizer whose helper is started only when it is used (after S2S_SPM_HELPER is set).
std::unique_ptr<Tokenizer> unstarted_tokenizer() {
  return tokenizer_from_json({{"type", "sentencepiece"}, {"model", "aGVsbG8="}});
}

TEST_F(SentencePiece, HelperFoundNextToTheProgram) {
  EXPECT_EQ(fs::path(spm_helper_path()).filename(), "s2s-spm");
  EXPECT_TRUE(fs::exists(spm_helper_path())) << spm_helper_path();
  ScopedEnv env("S2S_SPM_HELPER", "/somewhere/else/s2s-spm");
  EXPECT_EQ(spm_helper_path(), "/somewhere/else/s2s-spm");
}

TEST_F(SentencePiece, MissingHelperIsAClearError) {
  TempDir dir;
  const auto path = dir.file("no-such-helper");
  ScopedEnv env("S2S_SPM_HELPER", path);
  const auto tok = unstarted_tokenizer();
  const auto message = error_of([&] { tok->tokenize("der hund"); });
  EXPECT_TRUE(contains(message, path)) << message;
  EXPECT_TRUE(contains(message, "S2S_SPM_HELPER")) << message;
  EXPECT_TRUE(contains(error_of([&] { SentencePieceTokenizer::train({"der hund"}, {}, "x"); }), path));
}

// Runs `script` as the helper; the tokenizer must fail with an error containing `expected`, quickly.
void expect_helper_failure(const std::string& script, const std::string& expected) {
  TempDir dir;
  const auto path = dir.file("fake-helper.sh");
  write_file(path, "#!/bin/sh\n" + script + "\n");
  fs::permissions(path, fs::perms::owner_all);
  ScopedEnv env("S2S_SPM_HELPER", path);
  const auto start = std::chrono::steady_clock::now();
  const auto tok = unstarted_tokenizer();
  const auto message = error_of([&] { tok->tokenize("der hund"); });
  EXPECT_TRUE(contains(message, expected)) << message;
  EXPECT_TRUE(contains(message, path)) << message;
  // Once broken, it stays the same error at once (no second helper, no hang, no crash).
  EXPECT_EQ(error_of([&] { tok->tokenize("der hund"); }), message);
  EXPECT_EQ(error_of([&] { tok->detokenize({"der"}); }), message);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 10.0);
}

TEST_F(SentencePiece, HelperThatExitsIsAnError) { expect_helper_failure("exit 3", "exited with status 3"); }

TEST_F(SentencePiece, HelperThatAnswersGarbageIsAnError) {
  expect_helper_failure("read line; echo 'hello there'; sleep 30", "unreadable answer");
}

TEST_F(SentencePiece, HelperThatIsKilledIsAnError) {
  expect_helper_failure("kill -9 $$", "killed by signal 9");
}

TEST_F(SentencePiece, HelperThatCutsAnAnswerShortIsAnError) {
  // Reads the whole first request (21 bytes: "S2SPM 2", "load" and the 5-byte model of
  // unstarted_tokenizer()), then answers 2 of 5 promised bytes.
  expect_helper_failure("head -c 21 >/dev/null; printf 'S2SPM 2\\n2\\nok5\\nab'; exit 0",
                        "ended in the middle of a message");
}

// ---------------------------------------------------------------------------------------------
// s2s train + s2s translate with only the checkpoint left
// ---------------------------------------------------------------------------------------------

TEST_F(SentencePiece, TrainThenTranslateFromTheCheckpointAlone) {
  TempDir dir;
  const auto src = make_sentences(kGerman, 60, 10), tgt = make_sentences(kEnglish, 60, 11);
  std::string tsv;
  for (size_t i = 0; i < src.size(); ++i) tsv += src[i] + "\t" + tgt[i] + "\n";
  write_file(dir.file("train.tsv"), tsv);
  write_file(dir.file("valid.tsv"), tsv.substr(0, tsv.find('\n', 200) + 1));
  const json config = {{"data",
                        {{"train_src", dir.file("train.tsv")},
                         {"valid_src", dir.file("valid.tsv")},
                         {"tokenizer", "sentencepiece"},
                         {"spm_model_type", "bpe"},
                         {"vocab_size", 60}}},
                       {"model", {{"embedding_size", 8}, {"hidden_size", 16}}},
                       {"training",
                        {{"batch_size", 8},
                         {"max_steps", 4},
                         {"threads", 1},
                         {"device", "cpu"},
                         {"log_every", 1},
                         {"valid_every", 1000},
                         {"checkpoint_every", 1000}}},
                       {"output_dir", dir.file("run")}};
  write_file(dir.file("config.json"), config.dump(2));
  const auto train = run_s2s({"train", "--config", dir.file("config.json")}, dir.path());
  ASSERT_EQ(train.code(), 0) << train.describe();
  EXPECT_TRUE(contains(train.err, "[data] sentencepiece: one bpe model per side")) << train.describe();

  const auto ckpt = read_checkpoint(dir.file("run/last.pt"));
  EXPECT_EQ(ckpt.codec.src_tokenizer->to_json().at("type"), "sentencepiece");
  EXPECT_LE(ckpt.codec.src_vocab.size(), 60);
  EXPECT_GT(ckpt.codec.src_vocab.size(), 30);

  // Nothing but the checkpoint: the corpus and config are gone.
  fs::remove(dir.file("train.tsv"));
  fs::remove(dir.file("valid.tsv"));
  fs::remove(dir.file("config.json"));
  const std::string input = src[0] + "\n" + src[1] + "\nder hund 漢字 € läuft\n";
  const auto tr = run_s2s_with_input(
      {"translate", "-c", dir.file("run/last.pt"), "--device", "cpu", "--threads", "1"}, dir.path(), input);
  ASSERT_EQ(tr.code(), 0) << tr.describe();
  const auto out = split_lines(tr.out);
  ASSERT_EQ(out.size(), 3u) << tr.describe();
  for (const auto& line : out) EXPECT_FALSE(contains(line, kMeta)) << line;  // detokenised text

  // The checkpoint's model is what training made: the source side tokenises the same as when trained.
  const auto fresh = TextCodec::from_json(ckpt.codec.to_json());
  const auto ids = fresh.encode_src(src[0]);
  EXPECT_EQ(ids, ckpt.codec.encode_src(src[0]));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), Vocabulary::kUnk), 0);
}

TEST_F(SentencePiece, TrainWithABadModelFileFailsNamingTheKey) {
  TempDir dir;
  write_file(dir.file("train.tsv"), "der hund\tTHE DOG\n");
  write_file(dir.file("bad.model"), "garbage");
  write_file(dir.file("config.json"), "{}");
  const auto r = run_s2s({"train", "--config", dir.file("config.json"), "--set", "data.train_src=" + dir.file("train.tsv"), "--set",
                          "data.tokenizer=sentencepiece", "--set", "data.spm_model=" + dir.file("bad.model"), "--set",
                          "output_dir=" + dir.file("run"), "--set", "training.device=cpu"},
                         dir.path());
  EXPECT_TRUE(r.finished);
  EXPECT_NE(r.code(), 0) << r.describe();
  EXPECT_TRUE(contains(r.err, "data.spm_model: " + dir.file("bad.model"))) << r.describe();
}

}  // namespace
}  // namespace s2s
