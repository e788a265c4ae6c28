// Tests of the `s2s` program itself (S2S_BINARY), run as a child process on tiny corpora and models:
// help and errors of the command line, training, translation, evaluation, checkpoint inspection,
// exact resume and interruption by SIGINT.
#include <gtest/gtest.h>

#include <signal.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoint.h"
#include "test_util.h"

namespace s2s {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using s2s::testing::contains;
using s2s::testing::read_file;
using s2s::testing::RunResult;
using s2s::testing::run_s2s;
using s2s::testing::run_s2s_with_input;
using s2s::testing::split_lines;
using s2s::testing::TempDir;
using s2s::testing::write_corpus;
using s2s::testing::write_file;

// ---------------------------------------------------------------------------------------------
// A tiny corpus and config
// ---------------------------------------------------------------------------------------------

struct Corpus {
  std::string train_src, train_tgt, valid_src, valid_tgt;
};

Corpus make_corpus(const TempDir& dir) {
  Corpus c{dir.file("train.src"), dir.file("train.tgt"), dir.file("valid.src"), dir.file("valid.tgt")};
  write_corpus(c.train_src, c.train_tgt, 40, 1);
  write_corpus(c.valid_src, c.valid_tgt, 8, 2);
  return c;
}

// 40 pairs in batches of 8: 5 batches an epoch, so 6 steps end in the middle of the second epoch.
json tiny_config(const Corpus& c, const std::string& output_dir) {
  return json{{"data",
               {{"train_src", c.train_src},
                {"train_tgt", c.train_tgt},
                {"valid_src", c.valid_src},
                {"valid_tgt", c.valid_tgt}}},
              {"model", {{"embedding_size", 8}, {"hidden_size", 16}, {"attention", "bahdanau"}, {"dropout", 0.1}}},
              {"training",
               {{"batch_size", 8},
                {"learning_rate", 0.01},
                {"max_steps", 12},
                {"epochs", 100},
                {"seed", 3},
                {"threads", 1},
                {"device", "cpu"},
                {"log_every", 1},
                {"valid_every", 1000},
                {"checkpoint_every", 6},
                {"keep_checkpoints", 5}}},
              {"output_dir", output_dir}};
}

std::string write_config(const TempDir& dir, const json& config, const std::string& name = "config.json") {
  const auto path = dir.file(name);
  write_file(path, config.dump(2));
  return path;
}

RunResult run_train(const std::string& config_path, const std::string& scratch, std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"train", "--config", config_path, "--set", "training.threads=1"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_s2s(args, scratch);
}

// Every parameter of a checkpoint, by name, on the CPU.
std::vector<std::pair<std::string, torch::Tensor>> checkpoint_parameters(const std::string& path) {
  const auto ckpt = read_checkpoint(path);
  auto model = restore_model(ckpt, torch::kCPU);
  std::vector<std::pair<std::string, torch::Tensor>> out;
  for (const auto& p : model->named_parameters()) out.emplace_back(p.key(), p.value().detach().clone());
  return out;
}

std::vector<std::string> words(const std::string& text) {
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string join(const std::vector<std::string>& tokens) {
  std::string out;
  for (const auto& t : tokens) out += (out.empty() ? "" : " ") + t;
  return out;
}

// ---------------------------------------------------------------------------------------------
// The command line without a model
// ---------------------------------------------------------------------------------------------

TEST(Cli, HelpAndVersion) {
  TempDir dir;
  const auto top = run_s2s({"--help"}, dir.path());
  ASSERT_EQ(top.code(), 0) << top.describe();
  for (const char* word : {"train", "translate", "evaluate", "info", "bleu", "--version"})
    EXPECT_TRUE(contains(top.out, word)) << word << "\n" << top.describe();

  const auto tr = run_s2s({"train", "--help"}, dir.path());
  ASSERT_EQ(tr.code(), 0) << tr.describe();
  for (const char* word : {"--config", "--set", "--resume", "--init-from"})
    EXPECT_TRUE(contains(tr.out, word)) << word << "\n" << tr.describe();

  const auto tl = run_s2s({"translate", "--help"}, dir.path());
  ASSERT_EQ(tl.code(), 0) << tl.describe();
  for (const char* word : {"--checkpoint", "--beam", "--format", "--input", "--n-best"})
    EXPECT_TRUE(contains(tl.out, word)) << word << "\n" << tl.describe();

  const auto version = run_s2s({"--version"}, dir.path());
  ASSERT_EQ(version.code(), 0) << version.describe();
  EXPECT_TRUE(contains(version.out, S2S_VERSION)) << version.describe();
}

TEST(Cli, BadCommandLinesFail) {
  TempDir dir;
  const auto flag = run_s2s({"translate", "--checkpoint", "x.pt", "--no-such-flag"}, dir.path());
  EXPECT_TRUE(flag.finished);
  EXPECT_NE(flag.code(), 0) << flag.describe();
  EXPECT_TRUE(contains(flag.out + flag.err, "--no-such-flag")) << flag.describe();

  // An unknown flag is named even when a required option is missing too (CLI11 alone reports the
  // missing option first, so a mistyped `--chekpoint` read as "--checkpoint is required").
  const auto typo = run_s2s({"translate", "--chekpoint", "x.pt", "hello"}, dir.path());
  EXPECT_NE(typo.code(), 0) << typo.describe();
  EXPECT_TRUE(contains(typo.out + typo.err, "--chekpoint")) << typo.describe();
  EXPECT_FALSE(contains(typo.out + typo.err, "is required")) << typo.describe();
  const auto typo_eq = run_s2s({"evaluate", "--bem=5"}, dir.path());
  EXPECT_NE(typo_eq.code(), 0) << typo_eq.describe();
  EXPECT_TRUE(contains(typo_eq.out + typo_eq.err, "--bem")) << typo_eq.describe();
  const auto top_flag = run_s2s({"--verbose", "train"}, dir.path());
  EXPECT_NE(top_flag.code(), 0) << top_flag.describe();
  EXPECT_TRUE(contains(top_flag.out + top_flag.err, "--verbose")) << top_flag.describe();

  // An unknown command is named, with the commands there are.
  const auto sub = run_s2s({"frobnicate"}, dir.path());
  EXPECT_TRUE(sub.finished);
  EXPECT_NE(sub.code(), 0) << sub.describe();
  EXPECT_TRUE(contains(sub.out + sub.err, "frobnicate")) << sub.describe();
  EXPECT_TRUE(contains(sub.out + sub.err, "translate")) << sub.describe();

  // What only looks like a flag is left alone: a negative number, and anything after `--`.
  const auto after_dashes = run_s2s({"translate", "--length-penalty", "-0", "--", "--not-a-flag"}, dir.path());
  EXPECT_NE(after_dashes.code(), 0) << after_dashes.describe();
  EXPECT_TRUE(contains(after_dashes.out + after_dashes.err, "--checkpoint is required")) << after_dashes.describe();

  const auto none = run_s2s({}, dir.path());
  EXPECT_NE(none.code(), 0) << none.describe();

  const auto no_ckpt = run_s2s({"translate", "hello"}, dir.path());
  EXPECT_TRUE(no_ckpt.finished);
  EXPECT_NE(no_ckpt.code(), 0) << no_ckpt.describe();
  EXPECT_TRUE(contains(no_ckpt.out + no_ckpt.err, "--checkpoint")) << no_ckpt.describe();

  // More hypotheses than the beam keeps is an error, not a silent cut (checked before the model loads).
  const auto n_best = run_s2s({"translate", "-c", dir.file("nope.pt"), "--beam", "2", "--n-best", "3", "hi"}, dir.path());
  EXPECT_NE(n_best.code(), 0) << n_best.describe();
  EXPECT_TRUE(contains(n_best.err, "--n-best 3")) << n_best.describe();
  EXPECT_FALSE(contains(n_best.err, "nope.pt")) << n_best.describe();

  // A number out of its range is named with what is wanted, in a few words.
  for (const auto& [flag, value] : std::vector<std::pair<std::string, std::string>>{
           {"--max-length-ratio", "0"}, {"--threads", "-1"}, {"--temperature", "zero"}}) {
    const auto r = run_s2s({"translate", "-c", dir.file("nope.pt"), flag, value, "hi"}, dir.path());
    EXPECT_NE(r.code(), 0) << r.describe();
    EXPECT_TRUE(contains(r.err, flag)) << r.describe();
    EXPECT_TRUE(contains(r.err, "must be a number")) << r.describe();
    EXPECT_LT(r.err.size(), 200u) << r.describe();
  }

  const auto missing_ckpt = run_s2s({"translate", "-c", dir.file("nope.pt"), "--device", "cpu", "hello"}, dir.path());
  EXPECT_NE(missing_ckpt.code(), 0) << missing_ckpt.describe();
  EXPECT_TRUE(contains(missing_ckpt.err, dir.file("nope.pt"))) << missing_ckpt.describe();
}

TEST(Cli, TrainRejectsUnknownConfigKey) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  auto config = tiny_config(corpus, dir.file("run"));
  config["model"]["hiden_size"] = 16;
  const auto path = write_config(dir, config, "typo.json");
  const auto r = run_train(path, dir.path());
  EXPECT_TRUE(r.finished);
  EXPECT_NE(r.code(), 0) << r.describe();
  EXPECT_TRUE(contains(r.err, "hiden_size")) << r.describe();
  EXPECT_TRUE(contains(r.err, path)) << r.describe();
  EXPECT_FALSE(fs::exists(dir.file("run/last.pt")));

  // The same through --set, type-checked.
  const auto good = write_config(dir, tiny_config(corpus, dir.file("run")), "good.json");
  const auto bad_set = run_train(good, dir.path(), {"--set", "model.hidden_size=big"});
  EXPECT_NE(bad_set.code(), 0) << bad_set.describe();
  EXPECT_TRUE(contains(bad_set.err, "model.hidden_size")) << bad_set.describe();
  // A value that is well-typed but invalid names the --set it came from, not only the file.
  const auto bad_value = run_train(good, dir.path(), {"--set", "training.seed=4", "--set", "model.hidden_size=-3"});
  EXPECT_NE(bad_value.code(), 0) << bad_value.describe();
  EXPECT_TRUE(contains(bad_value.err, "--set model.hidden_size=-3")) << bad_value.describe();
  EXPECT_FALSE(fs::exists(dir.file("run/last.pt")));
}

TEST(Cli, TrainMissingTrainingFileNamesThePath) {
  TempDir dir;
  auto corpus = make_corpus(dir);
  corpus.train_src = dir.file("no-such-train.src");
  const auto path = write_config(dir, tiny_config(corpus, dir.file("run")));
  const auto r = run_train(path, dir.path());
  EXPECT_TRUE(r.finished);
  EXPECT_NE(r.code(), 0) << r.describe();
  EXPECT_TRUE(contains(r.err, corpus.train_src)) << r.describe();
  EXPECT_TRUE(contains(r.err, "data.train_src")) << r.describe();
  EXPECT_FALSE(fs::exists(dir.file("run/last.pt")));
}

TEST(Cli, TrainMissingValidationFileNamesTheKeyAndTheDirectory) {
  TempDir dir;
  auto corpus = make_corpus(dir);
  corpus.valid_tgt = "no-such-dir/valid.tgt";  // relative: read from the working directory
  const auto path = write_config(dir, tiny_config(corpus, dir.file("run")));
  const auto r = run_train(path, dir.path());
  EXPECT_TRUE(r.finished);
  EXPECT_NE(r.code(), 0) << r.describe();
  EXPECT_TRUE(contains(r.err, "data.valid_tgt")) << r.describe();
  EXPECT_TRUE(contains(r.err, "no-such-dir/valid.tgt")) << r.describe();
  EXPECT_TRUE(contains(r.err, "current directory")) << r.describe();
  EXPECT_FALSE(fs::exists(dir.file("run/last.pt")));
}

TEST(Cli, TrainingCorpusEmptyAfterFilteringIsAnErrorBeforeTraining) {
  TempDir dir;
  auto config = tiny_config(make_corpus(dir), dir.file("run"));
  config["data"]["max_len"] = 2;  // every pair has 3 to 8 tokens
  const auto r = run_train(write_config(dir, config), dir.path());
  EXPECT_EQ(r.code(), 1) << r.describe();
  EXPECT_TRUE(contains(r.err, dir.file("train.src") + ": no training pairs left after filtering")) << r.err;
  EXPECT_TRUE(contains(r.err, "40 pairs read, 0 kept; dropped: 0 empty, 40 longer than 2 tokens")) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("run/last.pt")));
}

TEST(Cli, ResumeAutoWithoutCheckpointStartsFresh) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  auto config = tiny_config(corpus, dir.file("fresh"));
  config["training"]["max_steps"] = 3;
  const auto path = write_config(dir, config);
  const auto r = run_train(path, dir.path(), {"--resume", "auto"});
  ASSERT_EQ(r.code(), 0) << r.describe();
  EXPECT_TRUE(contains(r.err, "starting fresh")) << r.describe();
  const auto ckpt = read_checkpoint(dir.file("fresh/last.pt"));
  EXPECT_EQ(ckpt.state.step, 3);
}

// training.best_metric: the validation figures in metrics.jsonl are those of the checkpoint's own
// translations, scored by `s2s bleu` and `s2s chrf`; `s2s info` reports the best score in its metric's
// units (a loss positive); a run resumed with another metric forgets the old best instead of comparing
// a loss with a BLEU score, so its next validation writes best.pt.
TEST(Cli, BestMetricBleuChrfOrLossAndInfoReportsIt) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  auto config = tiny_config(corpus, dir.file("run"));
  config["training"]["max_steps"] = 6;
  config["training"]["valid_every"] = 6;
  config["training"]["best_metric"] = "chrf";
  const auto path = write_config(dir, config);
  const auto r = run_train(path, dir.path());
  ASSERT_EQ(r.code(), 0) << r.describe();
  json valid;
  for (const auto& line : split_lines(read_file(dir.file("run/metrics.jsonl"))))
    if (json::parse(line).at("type") == "valid") valid = json::parse(line);
  ASSERT_TRUE(valid.contains("chrf")) << valid.dump();

  const auto best = dir.file("run/best.pt"), hyp = dir.file("valid.hyp");
  const auto tr = run_s2s({"translate", "-c", best, "--device", "cpu", "--threads", "1", "-i", corpus.valid_src, "-o", hyp},
                          dir.path());
  ASSERT_EQ(tr.code(), 0) << tr.describe();
  const auto bleu = run_s2s({"bleu", "--hyp", hyp, "--ref", corpus.valid_tgt, "--json"}, dir.path());
  const auto chrf = run_s2s({"chrf", "--hyp", hyp, "--ref", corpus.valid_tgt, "--json"}, dir.path());
  ASSERT_EQ(bleu.code(), 0) << bleu.describe();
  ASSERT_EQ(chrf.code(), 0) << chrf.describe();
  const double chrf_score = json::parse(chrf.out).at("score").get<double>();
  EXPECT_NEAR(valid.at("bleu").get<double>(), json::parse(bleu.out).at("score").get<double>(), 1e-9);
  EXPECT_NEAR(valid.at("chrf").get<double>(), chrf_score, 1e-9);
  EXPECT_GT(chrf_score, 0.0);

  auto info = [&](const std::string& checkpoint) {
    const auto i = run_s2s({"info", "-c", checkpoint, "--json"}, dir.path());
    EXPECT_EQ(i.code(), 0) << i.describe();
    return json::parse(i.out);
  };
  auto j = info(best);
  EXPECT_EQ(j.at("best_metric"), "chrf");
  EXPECT_NEAR(j.at("best_valid_score").get<double>(), chrf_score, 1e-9);
  EXPECT_EQ(j.at("best_step"), 6);

  // Resumed with best_metric "loss": the loss of step 9 is the new best, whatever the chrF of step 6 was.
  const auto resumed = run_train(path, dir.path(), {"--resume", "auto", "--set", "training.best_metric=loss",
                                                    "--set", "training.max_steps=9", "--set", "training.valid_every=3"});
  ASSERT_EQ(resumed.code(), 0) << resumed.describe();
  EXPECT_TRUE(contains(resumed.err, "best_metric changed from chrf to loss")) << resumed.describe();
  double loss = 0;
  for (const auto& line : split_lines(read_file(dir.file("run/metrics.jsonl")))) {
    const auto v = json::parse(line);
    if (v.at("type") == "valid" && v.at("step") == 9) loss = v.at("loss").get<double>();
  }
  ASSERT_GT(loss, 0.0);
  j = info(best);
  EXPECT_EQ(j.at("best_metric"), "loss");
  EXPECT_EQ(j.at("best_step"), 9);
  EXPECT_NEAR(j.at("best_valid_score").get<double>(), loss, 1e-9);
  const auto text = run_s2s({"info", "-c", best}, dir.path());
  EXPECT_TRUE(contains(text.out, "best validation loss: ")) << text.describe();
}

// A new run into a folder holding another run's checkpoints would replace its last.pt and best.pt: it is
// refused, with the ways on, and leaves that run as it was; --overwrite starts over there.
TEST(Cli, NewRunIntoAFolderWithCheckpointsIsRefusedUnlessOverwrite) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  auto config = tiny_config(corpus, dir.file("run"));
  config["training"]["max_steps"] = 6;
  const auto path = write_config(dir, config);
  ASSERT_EQ(run_train(path, dir.path()).code(), 0);
  const auto before = read_file(dir.file("run/last.pt"));
  const auto metrics_before = read_file(dir.file("run/metrics.jsonl"));

  const auto again = run_train(path, dir.path(), {"--set", "training.max_steps=3"});
  EXPECT_EQ(again.code(), 1) << again.describe();
  for (const char* what : {"--resume auto", "--overwrite", "output_dir"})
    EXPECT_TRUE(contains(again.err, what)) << what << "\n" << again.describe();
  EXPECT_EQ(read_file(dir.file("run/last.pt")), before);
  EXPECT_EQ(read_file(dir.file("run/metrics.jsonl")), metrics_before);
  EXPECT_TRUE(fs::exists(dir.file("run/step-0000006.pt")));

  const auto over = run_train(path, dir.path(), {"--set", "training.max_steps=3", "--overwrite"});
  ASSERT_EQ(over.code(), 0) << over.describe();
  EXPECT_EQ(read_checkpoint(dir.file("run/last.pt")).state.step, 3);
  EXPECT_FALSE(fs::exists(dir.file("run/step-0000006.pt")));  // the old run's, which --resume auto would pick
  EXPECT_FALSE(contains(read_file(dir.file("run/metrics.jsonl")), "\"step\":6")) << read_file(dir.file("run/metrics.jsonl"));

  const auto both = run_train(path, dir.path(), {"--overwrite", "--resume", "auto"});
  EXPECT_NE(both.code(), 0) << both.describe();
  // --overwrite would delete the checkpoint --init-from starts from: refused, and it is still there
  const auto init_self = run_train(path, dir.path(), {"--overwrite", "--init-from", dir.file("run/last.pt")});
  EXPECT_EQ(init_self.code(), 1) << init_self.describe();
  EXPECT_TRUE(contains(init_self.err, "--init-from")) << init_self.describe();
  EXPECT_EQ(read_checkpoint(dir.file("run/last.pt")).state.step, 3);

  // --resume auto where no checkpoint loads: said so, and the damaged file is left for the user to look at
  auto damaged = config;
  damaged["output_dir"] = dir.file("damaged");
  fs::create_directories(dir.file("damaged"));
  write_file(dir.file("damaged/last.pt"), "not a checkpoint");
  const auto none_loads = run_train(write_config(dir, damaged, "damaged.json"), dir.path(), {"--resume", "auto"});
  EXPECT_EQ(none_loads.code(), 1) << none_loads.describe();
  EXPECT_TRUE(contains(none_loads.err, "none of the checkpoints")) << none_loads.describe();
  EXPECT_EQ(read_file(dir.file("damaged/last.pt")), "not a checkpoint");
}

// ---------------------------------------------------------------------------------------------
// One trained model shared by the translate / info / evaluate / checkpoint tests
// ---------------------------------------------------------------------------------------------

class CliTrained : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    corpus_ = new Corpus(make_corpus(*dir_));
    auto config = tiny_config(*corpus_, dir_->file("run"));
    config["data"]["test_src"] = corpus_->valid_src;  // `s2s evaluate` without --src reads these
    config["data"]["test_tgt"] = corpus_->valid_tgt;
    const auto path = write_config(*dir_, config);
    train_result_ = new RunResult(run_train(path, dir_->path()));
  }
  static void TearDownTestSuite() {
    delete train_result_;
    delete corpus_;
    delete dir_;
    train_result_ = nullptr;
    corpus_ = nullptr;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(train_result_->code(), 0) << train_result_->describe();
    ASSERT_TRUE(fs::exists(checkpoint())) << train_result_->describe();
  }

  static std::string checkpoint() { return dir_->file("run/last.pt"); }
  static const std::string& scratch() { return dir_->path(); }
  static RunResult translate(std::vector<std::string> args, const std::string* input = nullptr) {
    std::vector<std::string> all = {"translate", "-c", checkpoint(), "--device", "cpu", "--threads", "1"};
    all.insert(all.end(), args.begin(), args.end());
    return input ? run_s2s_with_input(all, scratch(), *input) : run_s2s(all, scratch());
  }
  // Output words of the trained model come from the target vocabulary ("x" + word) or are <unk>.
  static void expect_target_words(const std::string& line) {
    for (const auto& w : words(line)) EXPECT_TRUE(w[0] == 'x' || w == "<unk>") << "\"" << w << "\" in: " << line;
  }

  static TempDir* dir_;
  static Corpus* corpus_;
  static RunResult* train_result_;
};

TempDir* CliTrained::dir_ = nullptr;
Corpus* CliTrained::corpus_ = nullptr;
RunResult* CliTrained::train_result_ = nullptr;

TEST_F(CliTrained, TrainingWroteCheckpointsAndLogs) {
  const auto run = dir_->file("run");
  EXPECT_TRUE(fs::exists(run + "/step-0000006.pt"));
  EXPECT_TRUE(fs::exists(run + "/step-0000012.pt"));
  EXPECT_TRUE(fs::exists(run + "/best.pt"));  // validation at max_steps
  EXPECT_TRUE(fs::exists(run + "/config.json"));
  EXPECT_TRUE(contains(read_file(run + "/train.log"), "[train] step 12 "));
  // One metrics line per logged step, and the final validation.
  int train_lines = 0, valid_lines = 0;
  for (const auto& line : split_lines(read_file(run + "/metrics.jsonl"))) {
    const auto j = json::parse(line);
    train_lines += j.at("type") == "train";
    valid_lines += j.at("type") == "valid";
  }
  EXPECT_EQ(train_lines, 12);
  EXPECT_EQ(valid_lines, 1);
  const auto ckpt = read_checkpoint(checkpoint());
  EXPECT_EQ(ckpt.state.step, 12);
  EXPECT_EQ(ckpt.config.model.hidden_size, 16);
  EXPECT_EQ(ckpt.config.training.threads, 1);  // the --set override is what was trained with
}

TEST_F(CliTrained, TranslateArgumentPrintsOneLine) {
  const auto r = translate({"a b c d"});
  ASSERT_EQ(r.code(), 0) << r.describe();
  const auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << r.describe();
  EXPECT_EQ(r.out.back(), '\n');
  expect_target_words(lines[0]);
  // Several arguments: one line each, in order; the same sentence gives the same translation.
  const auto two = translate({"a b c d", "e f g"});
  ASSERT_EQ(two.code(), 0) << two.describe();
  const auto two_lines = split_lines(two.out);
  ASSERT_EQ(two_lines.size(), 2u) << two.describe();
  EXPECT_EQ(two_lines[0], lines[0]);
}

TEST_F(CliTrained, TranslateStdinKeepsLinesAndEmptyLines) {
  const std::string input = "a b c\n\nd e f g h\n";
  const auto r = translate({}, &input);
  ASSERT_EQ(r.code(), 0) << r.describe();
  const auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.describe();
  EXPECT_EQ(lines[1], "");
  for (const auto& l : lines) expect_target_words(l);
  // The same as translating the sentences as arguments.
  const auto args = translate({"a b c", "d e f g h"});
  ASSERT_EQ(args.code(), 0) << args.describe();
  EXPECT_EQ(split_lines(args.out), (std::vector<std::string>{lines[0], lines[2]}));
}

TEST_F(CliTrained, TranslateJsonLines) {
  const std::string input = "a b c\n\nd e zzz\n";
  const auto r = translate({"--format", "json"}, &input);
  ASSERT_EQ(r.code(), 0) << r.describe();
  const auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 3u) << r.describe();
  const std::vector<std::string> sources = {"a b c", "", "d e zzz"};
  for (size_t i = 0; i < lines.size(); ++i) {
    json j;
    ASSERT_NO_THROW(j = json::parse(lines[i])) << lines[i];
    for (const char* key : {"source", "source_tokens", "output", "output_tokens", "score", "attention"})
      ASSERT_TRUE(j.contains(key)) << key << " missing in " << lines[i];
    EXPECT_EQ(j["source"], sources[i]);
    EXPECT_EQ(j["source_tokens"].get<std::vector<std::string>>(), words(sources[i]));
    const auto out_tokens = j["output_tokens"].get<std::vector<std::string>>();
    EXPECT_EQ(j["output"].get<std::string>(), join(out_tokens));  // word tokenizer: tokens joined by spaces
    EXPECT_TRUE(j["score"].is_number());
    const auto& att = j["attention"];
    ASSERT_TRUE(att.is_array());
    if (sources[i].empty()) {
      EXPECT_TRUE(out_tokens.empty());
      EXPECT_TRUE(att.empty());
      continue;
    }
    EXPECT_LE(j["score"].get<double>(), 0.0);  // a log-probability
    // One row per output token, one column per source token + </s>; each row is a distribution.
    EXPECT_EQ(att.size(), out_tokens.size()) << lines[i];
    for (const auto& row : att) {
      ASSERT_EQ(row.size(), words(sources[i]).size() + 1) << lines[i];
      double sum = 0;
      for (const auto& w : row) sum += w.get<double>();
      EXPECT_NEAR(sum, 1.0, 1e-4) << lines[i];
    }
  }
}

TEST_F(CliTrained, InfoJson) {
  const auto r = run_s2s({"info", "--checkpoint", checkpoint(), "--json"}, scratch());
  ASSERT_EQ(r.code(), 0) << r.describe();
  json j;
  ASSERT_NO_THROW(j = json::parse(r.out)) << r.describe();
  ASSERT_TRUE(j.contains("parameter_count")) << r.out;
  const auto count = j["parameter_count"].get<int64_t>();
  EXPECT_GT(count, 0);
  // The count is the sum over the listed parameter shapes.
  int64_t sum = 0;
  for (const auto& p : j.at("parameters")) {
    int64_t n = 1;
    for (const auto& d : p.at("shape")) n *= d.get<int64_t>();
    sum += n;
  }
  EXPECT_EQ(sum, count);
  EXPECT_EQ(j.at("step"), 12);
  EXPECT_EQ(j.at("config").at("model").at("hidden_size"), 16);
  EXPECT_GT(j.at("tgt_vocab_size").get<int64_t>(), 4);
}

TEST_F(CliTrained, EvaluateJson) {
  const auto r = run_s2s({"evaluate", "-c", checkpoint(), "--src", corpus_->valid_src, "--ref", corpus_->valid_tgt,
                          "--json", "--device", "cpu", "--threads", "1"},
                         scratch());
  ASSERT_EQ(r.code(), 0) << r.describe();
  json j;
  ASSERT_NO_THROW(j = json::parse(r.out)) << r.describe();
  for (const char* key : {"bleu", "chrf", "buckets"}) ASSERT_TRUE(j.contains(key)) << key << " missing: " << r.out;
  EXPECT_GE(j["bleu"].get<double>(), 0.0);
  EXPECT_LE(j["bleu"].get<double>(), 100.0);
  EXPECT_GE(j["chrf"].get<double>(), 0.0);
  EXPECT_LE(j["chrf"].get<double>(), 100.0);
  ASSERT_TRUE(j["buckets"].is_array());
  EXPECT_EQ(j["buckets"].size(), 5u);  // default bounds 10, 20, 30, 40 and an open bucket
  int64_t sentences = 0;
  for (const auto& b : j["buckets"]) sentences += b.at("sentences").get<int64_t>();
  EXPECT_EQ(sentences, 8);  // every validation sentence (3-8 tokens) in exactly one bucket
  EXPECT_EQ(j["buckets"][0].at("sentences"), 8);
  EXPECT_EQ(j.at("sentences"), 8);
}

// Without --ref, --src is one tab-separated file; without either, the checkpoint's config names the test
// set (data.test_src, data.test_tgt). The same sentences give the same scores each way.
TEST_F(CliTrained, EvaluateReadsATabSeparatedFileOrTheConfigsTestSet) {
  auto evaluate = [](std::vector<std::string> args) {
    std::vector<std::string> all = {"evaluate", "-c", checkpoint(), "--json", "--device", "cpu", "--threads", "1"};
    all.insert(all.end(), args.begin(), args.end());
    return run_s2s(all, scratch());
  };
  const auto files = evaluate({"--src", corpus_->valid_src, "--ref", corpus_->valid_tgt});
  ASSERT_EQ(files.code(), 0) << files.describe();
  const auto expected = json::parse(files.out);

  const auto src = split_lines(read_file(corpus_->valid_src)), tgt = split_lines(read_file(corpus_->valid_tgt));
  std::string tsv_text;
  for (size_t i = 0; i < src.size(); ++i) tsv_text += src[i] + "\t" + tgt[i] + "\n";
  const auto tsv_path = dir_->file("valid.tsv");
  write_file(tsv_path, tsv_text);
  const auto tsv = evaluate({"--src", tsv_path});
  const auto from_config = evaluate({});
  for (const auto* r : {&tsv, &from_config}) {
    ASSERT_EQ(r->code(), 0) << r->describe();
    const auto j = json::parse(r->out);
    EXPECT_EQ(j.at("sentences"), expected.at("sentences"));
    EXPECT_EQ(j.at("bleu"), expected.at("bleu"));
    EXPECT_EQ(j.at("chrf"), expected.at("chrf"));
    EXPECT_EQ(j.at("ppl"), expected.at("ppl"));
  }
  EXPECT_EQ(json::parse(from_config.out).at("src"), corpus_->valid_src);

  const auto ref_only = evaluate({"--ref", corpus_->valid_tgt});
  EXPECT_NE(ref_only.code(), 0) << ref_only.describe();
  EXPECT_TRUE(contains(ref_only.err, "--src")) << ref_only.describe();
}

// `s2s average`: every parameter the mean of the checkpoints' (computed here from the files), the newest
// one's training position, no optimiser state; checkpoints of another model are refused by name.
TEST_F(CliTrained, AverageIsTheMeanOfTheCheckpointsWeights) {
  const auto a = dir_->file("run/step-0000006.pt"), b = dir_->file("run/step-0000012.pt");
  ASSERT_TRUE(fs::exists(a) && fs::exists(b)) << train_result_->describe();
  const auto out = dir_->file("averaged.pt");
  const auto r = run_s2s({"average", "-o", out, a, b}, scratch());
  ASSERT_EQ(r.code(), 0) << r.describe();
  const auto ca = read_checkpoint(a), cb = read_checkpoint(b), cavg = read_checkpoint(out);
  auto ma = restore_model(ca, torch::kCPU), mb = restore_model(cb, torch::kCPU), mavg = restore_model(cavg, torch::kCPU);
  const auto pa = ma->named_parameters(), pb = mb->named_parameters(), pavg = mavg->named_parameters();
  ASSERT_EQ(pavg.size(), pa.size());
  double moved = 0;
  for (const auto& p : pavg) {
    const auto expected = (pa[p.key()].to(torch::kDouble) + pb[p.key()].to(torch::kDouble)) / 2;
    EXPECT_LE((p.value().to(torch::kDouble) - expected).abs().max().item<double>(), 1e-7) << p.key();
    moved = std::max(moved, (pa[p.key()] - pb[p.key()]).abs().max().item<double>());
  }
  EXPECT_GT(moved, 1e-4);  // the two checkpoints differ, so the mean is not either of them
  EXPECT_EQ(cavg.state.step, 12);
  EXPECT_LT(fs::file_size(out), fs::file_size(b));  // no optimiser state
  EXPECT_EQ(translate({"a b c"}).code(), 0);

  const auto same = run_s2s({"average", "-o", a, a, b}, scratch());
  EXPECT_NE(same.code(), 0) << same.describe();
  EXPECT_TRUE(contains(same.err, a)) << same.describe();
  const auto one = run_s2s({"average", "-o", dir_->file("one.pt"), a}, scratch());
  EXPECT_NE(one.code(), 0) << one.describe();

  auto other_config = tiny_config(*corpus_, dir_->file("other"));
  other_config["model"]["hidden_size"] = 12;
  other_config["training"]["max_steps"] = 1;
  ASSERT_EQ(run_train(write_config(*dir_, other_config, "other.json"), scratch()).code(), 0);
  const auto other = dir_->file("other/last.pt");
  const auto mixed = run_s2s({"average", "-o", dir_->file("mixed.pt"), a, other}, scratch());
  EXPECT_NE(mixed.code(), 0) << mixed.describe();
  EXPECT_TRUE(contains(mixed.err, other)) << mixed.describe();
  EXPECT_TRUE(contains(mixed.err, "hidden_size")) << mixed.describe();
  EXPECT_FALSE(fs::exists(dir_->file("mixed.pt")));
}

// `s2s release`: the weights without the optimiser state translate the same, in a smaller file; resuming
// from it is an error that names it and says what to do instead; it never overwrites its input.
TEST_F(CliTrained, ReleaseDropsTheOptimiserStateAndTranslatesTheSame) {
  const auto released = dir_->file("released.pt");
  const auto r = run_s2s({"release", "-c", checkpoint(), "-o", released}, scratch());
  ASSERT_EQ(r.code(), 0) << r.describe();
  ASSERT_TRUE(fs::exists(released));
  // Adam keeps two moments per weight: the release is about a third of the size
  EXPECT_LT(fs::file_size(released) * 2, fs::file_size(checkpoint()));
  const auto a = translate({"a b c d", "e f g h i"});
  const auto b = run_s2s({"translate", "-c", released, "--device", "cpu", "--threads", "1", "a b c d", "e f g h i"},
                         scratch());
  ASSERT_EQ(a.code(), 0) << a.describe();
  ASSERT_EQ(b.code(), 0) << b.describe();
  EXPECT_EQ(a.out, b.out);
  const auto original = checkpoint_parameters(checkpoint()), copy = checkpoint_parameters(released);
  ASSERT_EQ(original.size(), copy.size());
  for (size_t i = 0; i < original.size(); ++i) EXPECT_TRUE(torch::equal(original[i].second, copy[i].second));
  EXPECT_EQ(read_checkpoint(released).state.step, read_checkpoint(checkpoint()).state.step);

  const auto config = write_config(*dir_, tiny_config(*corpus_, dir_->file("resumed")), "resume-released.json");
  const auto resumed = run_train(config, scratch(), {"--resume", released});
  EXPECT_NE(resumed.code(), 0) << resumed.describe();
  EXPECT_TRUE(contains(resumed.err, released)) << resumed.describe();
  EXPECT_TRUE(contains(resumed.err, "--init-from")) << resumed.describe();

  const auto before = read_file(checkpoint());
  const auto in_place = run_s2s({"release", "-c", checkpoint(), "-o", checkpoint()}, scratch());
  EXPECT_NE(in_place.code(), 0) << in_place.describe();
  EXPECT_EQ(read_file(checkpoint()), before) << "the checkpoint was changed";
}

TEST_F(CliTrained, TruncatedCheckpointIsAnErrorNamingThePath) {
  const auto bytes = read_file(checkpoint());
  ASSERT_GT(bytes.size(), 1000u);
  const auto truncated = dir_->file("truncated.pt");
  write_file(truncated, bytes.substr(0, bytes.size() / 2));
  const auto r = run_s2s({"translate", "-c", truncated, "--device", "cpu", "a b c"}, scratch());
  EXPECT_TRUE(r.finished);
  EXPECT_NE(r.code(), 0) << r.describe();
  EXPECT_TRUE(contains(r.err, truncated)) << r.describe();
  EXPECT_TRUE(r.out.empty()) << r.describe();

  const auto tiny = dir_->file("tiny.pt");
  write_file(tiny, bytes.substr(0, 100));
  const auto info = run_s2s({"info", "-c", tiny}, scratch());
  EXPECT_NE(info.code(), 0) << info.describe();
  EXPECT_TRUE(contains(info.err, tiny)) << info.describe();

  // A text file is not a checkpoint either.
  const auto text = dir_->file("text.pt");
  write_file(text, "hello\n");
  const auto t = run_s2s({"translate", "-c", text, "--device", "cpu", "a b c"}, scratch());
  EXPECT_NE(t.code(), 0) << t.describe();
  EXPECT_TRUE(contains(t.err, text)) << t.describe();
}

// ---------------------------------------------------------------------------------------------
// s2s bench, one part on a tiny config
// ---------------------------------------------------------------------------------------------

TEST(Cli, BenchTrainPartTakesConfigOverridesAndReportsTheStepTime) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  const auto config = write_config(dir, tiny_config(corpus, dir.file("run")));
  // 40 pairs in batches of 8: 5 batches, 1 warm-up step and 2 intervals of 2 steps
  const std::vector<std::string> base = {"bench", "--part", "train", "--config", config, "--variant", "gru+qkv",
                                         "--batch-size", "8", "--warmup-steps", "1", "--interval-steps", "2",
                                         "--intervals", "2", "--threads", "1"};
  auto args = base;
  for (std::string a : {"--set", "model.hidden_size=24", "--set", "model.embedding_size=6"}) args.push_back(a);
  const auto r = run_s2s(args, dir.path());
  ASSERT_EQ(r.code(), 0) << r.describe();
  const auto j = json::parse(r.out);
  EXPECT_EQ(j.at("variant"), "gru+qkv");
  EXPECT_EQ(j.at("hidden"), 24);
  EXPECT_EQ(j.at("embedding"), 6);
  EXPECT_EQ(j.at("batch"), 8);
  EXPECT_EQ(j.at("device"), "cpu");
  ASSERT_EQ(j.at("tgt_tokens_per_sec_intervals").size(), 2u);
  EXPECT_GT(j.at("ms_per_step").get<double>(), 0.0);
  EXPECT_GT(j.at("tgt_tokens_per_sec").get<double>(), 0.0);
  // the step time and the token rate describe the same intervals: tokens per step = rate x time
  const double tokens_per_step = j.at("tgt_tokens_per_sec").get<double>() * j.at("ms_per_step").get<double>() / 1000;
  // 8 target sentences of 3-8 words plus </s> a step: 32-72 tokens, give or take what the medians of two
  // intervals (each an average of two steps) leave between the two figures
  EXPECT_GT(tokens_per_step, 32 * 0.8);
  EXPECT_LT(tokens_per_step, 72 * 1.2);
  // the step's two parts, each timed on its own
  EXPECT_GT(j.at("update_ms").get<double>(), 0.0);
  EXPECT_GT(j.at("optimizer_ms").get<double>(), 0.0);
  EXPECT_EQ(j.at("optimizer_in_graph"), false);  // only with CUDA graphs
  EXPECT_EQ(j.at("fused_adam"), false);

  // A key that does not exist, and a device this machine lacks, are errors that say what is wrong.
  auto bad_key = base;
  for (std::string a : {"--set", "model.hidden_sise=24"}) bad_key.push_back(a);
  const auto k = run_s2s(bad_key, dir.path());
  EXPECT_NE(k.code(), 0) << k.describe();
  EXPECT_TRUE(contains(k.err, "hidden_sise")) << k.describe();
  if (!torch::cuda::is_available()) {
    auto cuda = base;
    for (std::string a : {"--device", "cuda"}) cuda.push_back(a);
    const auto c = run_s2s(cuda, dir.path());
    EXPECT_NE(c.code(), 0) << c.describe();
    EXPECT_TRUE(contains(c.err, "CUDA is not available")) << c.describe();
  }
}

// --count-ops counts one step's operations; the switches for a GPU's route change what is counted the
// way they should: the fused attention step by LibTorch's operations adds operations to the CPU kernels'
// step, and autograd through the expressions adds more.
TEST(Cli, BenchCountsAStepsOperationsOnEachRoute) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  const auto config = write_config(dir, tiny_config(corpus, dir.file("run")));
  auto count = [&](const std::vector<std::string>& route) {
    std::vector<std::string> args = {"bench", "--part", "train", "--config", config, "--variant", "rnn+bahdanau",
                                     "--batch-size", "8", "--warmup-steps", "1", "--interval-steps", "1",
                                     "--intervals", "1", "--threads", "1", "--count-ops"};
    args.insert(args.end(), route.begin(), route.end());
    const auto r = run_s2s(args, dir.path());
    EXPECT_EQ(r.code(), 0) << r.describe();
    const auto j = json::parse(r.out);
    // every step's loss, in order (a graphs step's is read one step late)
    EXPECT_EQ(j.at("losses").size(), 2u);
    EXPECT_EQ(j.at("losses").front(), j.at("first_loss"));
    EXPECT_EQ(j.at("losses").back(), j.at("last_loss"));
    const auto& ops = j.at("ops_per_step");
    EXPECT_EQ(ops.at("batch").at("sentences"), 8);
    int64_t sum = 0;
    for (const auto& [name, n] : ops.at("by_name").items()) sum += n.get<int64_t>();
    EXPECT_EQ(sum, ops.at("total").get<int64_t>());
    return ops;
  };
  const auto kernels = count({});
  const auto gpu_route = count({"--cpu-kernels", "off"});
  const auto expressions = count({"--cpu-kernels", "off", "--attention-step", "expressions"});
  EXPECT_GT(kernels.at("total").get<int64_t>(), 0);
  EXPECT_GT(gpu_route.at("total").get<int64_t>(), kernels.at("total").get<int64_t>());
  EXPECT_GT(expressions.at("total").get<int64_t>(), gpu_route.at("total").get<int64_t>());
  // the route's own operations: a softmax per decoder step, not there when the kernels run the step
  EXPECT_GT(gpu_route.at("by_name").value("aten::_softmax", 0), 0);
  EXPECT_EQ(kernels.at("by_name").value("aten::_softmax", 0), 0);
}

// --kernel-times reads the GPU's kernel records: on the CPU it says what it needs, before training anything.
TEST(Cli, BenchKernelTimesNeedAGpu) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  const auto config = write_config(dir, tiny_config(corpus, dir.file("run")));
  const auto r = run_s2s({"bench", "--part", "train", "--config", config, "--variant", "rnn+bahdanau", "--batch-size",
                          "8", "--warmup-steps", "1", "--interval-steps", "1", "--intervals", "1", "--kernel-times"},
                         dir.path());
  EXPECT_NE(r.code(), 0) << r.describe();
  EXPECT_TRUE(contains(r.err, "--kernel-times: needs --device cuda")) << r.describe();
  EXPECT_FALSE(contains(r.err, "tgt tok/s")) << r.describe();
}

// ---------------------------------------------------------------------------------------------
// Exact resume and interruption
// ---------------------------------------------------------------------------------------------

// Run A: 2N steps; run B: N steps, then resumed for N more; their parameters must be bit-identical.
void check_resume_is_exact(const std::vector<std::string>& extra, const std::string& expect_in_log = "") {
  constexpr int kN = 6;
  TempDir dir;
  const auto corpus = make_corpus(dir);

  // Run A: 2N steps in one go (checkpoint at N and 2N).
  auto config_a = tiny_config(corpus, dir.file("a"));
  config_a["training"]["max_steps"] = 2 * kN;
  config_a["training"]["checkpoint_every"] = kN;
  const auto a = run_train(write_config(dir, config_a, "a.json"), dir.path(), extra);
  ASSERT_EQ(a.code(), 0) << a.describe();
  if (!expect_in_log.empty()) {
    EXPECT_TRUE(contains(a.err, expect_in_log)) << a.describe();
  }

  // Run B: N steps, then resumed up to 2N.
  auto config_b = tiny_config(corpus, dir.file("b"));
  config_b["training"]["max_steps"] = kN;
  config_b["training"]["checkpoint_every"] = kN;
  const auto b_path = write_config(dir, config_b, "b.json");
  const auto b1 = run_train(b_path, dir.path(), extra);
  ASSERT_EQ(b1.code(), 0) << b1.describe();
  const auto mid = read_checkpoint(dir.file("b/last.pt"));
  ASSERT_EQ(mid.state.step, kN);
  ASSERT_EQ(mid.state.epoch, 1);           // the middle of the second epoch
  ASSERT_EQ(mid.state.batch_in_epoch, 1);
  auto resume_args = extra;
  for (std::string arg : {"--resume", "auto", "--set"}) resume_args.push_back(arg);
  resume_args.push_back("training.max_steps=" + std::to_string(2 * kN));
  const auto b2 = run_train(b_path, dir.path(), resume_args);
  ASSERT_EQ(b2.code(), 0) << b2.describe();
  EXPECT_TRUE(contains(b2.err, "resumed from")) << b2.describe();

  const auto final_a = checkpoint_parameters(dir.file("a/last.pt"));
  const auto final_b = checkpoint_parameters(dir.file("b/last.pt"));
  ASSERT_EQ(final_a.size(), final_b.size());
  ASSERT_FALSE(final_a.empty());
  for (size_t i = 0; i < final_a.size(); ++i) {
    EXPECT_EQ(final_a[i].first, final_b[i].first);
    EXPECT_TRUE(torch::equal(final_a[i].second, final_b[i].second))
        << final_a[i].first << " differs; max abs difference "
        << (final_a[i].second - final_b[i].second).abs().max().item<double>();
  }
  EXPECT_EQ(read_checkpoint(dir.file("a/last.pt")).state.step, 2 * kN);
  EXPECT_EQ(read_checkpoint(dir.file("b/last.pt")).state.step, 2 * kN);
  // With training.ema_decay, the moving averages agree too.
  const auto ck_a = read_checkpoint(dir.file("a/last.pt")), ck_b = read_checkpoint(dir.file("b/last.pt"));
  ASSERT_EQ(has_average(ck_a), has_average(ck_b));
  if (has_average(ck_a)) {
    const auto avg_a = restore_average(ck_a, torch::kCPU)->parameters(), avg_b = restore_average(ck_b, torch::kCPU)->parameters();
    for (size_t i = 0; i < avg_a.size(); ++i)
      EXPECT_TRUE(torch::equal(avg_a[i], avg_b[i])) << "average of " << final_a[i].first << " differs";
  }

  // The comparison means something: the second half of training changed the parameters.
  const auto half_a = checkpoint_parameters(dir.file("a/step-0000006.pt"));
  bool changed = false;
  for (size_t i = 0; i < half_a.size(); ++i) changed |= !torch::equal(half_a[i].second, final_a[i].second);
  EXPECT_TRUE(changed);
  // And run B's step-N checkpoint equals run A's.
  const auto half_b = checkpoint_parameters(dir.file("b/step-0000006.pt"));
  for (size_t i = 0; i < half_a.size(); ++i)
    EXPECT_TRUE(torch::equal(half_a[i].second, half_b[i].second)) << half_a[i].first;
}

TEST(Cli, ResumeIsExact) { check_resume_is_exact({}); }

// Two threads that each take half of every batch (training.cpu_parallel "batch"), with dropout: the
// shards' random streams come from (seed, step), so a resumed run still continues exactly.
TEST(Cli, ResumeIsExactWithTheBatchSplitAcrossThreads) {
  check_resume_is_exact({"--set", "training.threads=2", "--set", "training.cpu_parallel=batch"},
                        "each batch is split across 2 threads");
}

TEST(Cli, ResumeIsExactWithAMovingAverageOfTheWeights) {
  check_resume_is_exact({"--set", "training.ema_decay=0.9"}, "moving average of the weights");
}

// training.ema_decay: every checkpoint holds the moving average beside the trained weights, and between
// consecutive steps' checkpoints avg_n = d_n avg_{n-1} + (1 - d_n) w_n with d_n = min(decay, (1+n)/(10+n));
// validation measures the average (its logged loss is what `s2s evaluate` of the checkpoint, which
// translates with the average, gives); `info` says so, and `release` writes the average as the weights.
TEST(Cli, MovingAverageOfTheWeights) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  auto config = tiny_config(corpus, dir.file("run"));
  config["training"]["ema_decay"] = 0.8;
  config["training"]["max_steps"] = 8;
  config["training"]["checkpoint_every"] = 1;
  config["training"]["keep_checkpoints"] = 20;
  config["training"]["valid_every"] = 4;
  const auto run = run_train(write_config(dir, config), dir.path());
  ASSERT_EQ(run.code(), 0) << run.describe();
  auto step_file = [&](int n) { return dir.file("run/step-000000" + std::to_string(n) + ".pt"); };
  auto previous = restore_average(read_checkpoint(step_file(1)), torch::kCPU);
  ASSERT_TRUE(previous) << "no average in the checkpoint";
  double largest_gap = 0;  // between the average and the trained weights
  for (int n = 2; n <= 8; ++n) {
    SCOPED_TRACE("step " + std::to_string(n));
    const auto ckpt = read_checkpoint(step_file(n));
    const auto average = restore_average(ckpt, torch::kCPU);
    ASSERT_TRUE(average);
    const auto trained = restore_model(ckpt, torch::kCPU)->parameters();
    const auto avg = average->parameters(), before = previous->parameters();
    const double d = std::min(0.8, (1.0 + n) / (10.0 + n));
    for (size_t i = 0; i < avg.size(); ++i) {
      const auto expected = d * before[i].to(torch::kFloat64) + (1 - d) * trained[i].to(torch::kFloat64);
      EXPECT_LT((avg[i].to(torch::kFloat64) - expected).abs().max().item<double>(), 1e-6) << "parameter " << i;
      largest_gap = std::max(largest_gap, (avg[i] - trained[i]).abs().max().item<double>());
    }
    previous = average;
  }
  EXPECT_GT(largest_gap, 1e-3) << "the average is the trained weights: the test would not see which one is used";

  // The validation loss at step 8 is the average's, as `s2s evaluate` (which translates with it) measures it.
  double logged_loss = -1;
  for (const auto& line : split_lines(read_file(dir.file("run/metrics.jsonl")))) {
    const auto j = json::parse(line);
    if (j.at("type") == "valid" && j.at("step") == 8) logged_loss = j.at("loss").get<double>();
  }
  ASSERT_GT(logged_loss, 0) << read_file(dir.file("run/metrics.jsonl"));
  const auto eval = run_s2s({"evaluate", "-c", step_file(8), "--src", corpus.valid_src, "--ref", corpus.valid_tgt,
                             "--json", "--device", "cpu", "--threads", "1"}, dir.path());
  ASSERT_EQ(eval.code(), 0) << eval.describe();
  EXPECT_NEAR(std::log(json::parse(eval.out).at("ppl").get<double>()), logged_loss, 1e-4);

  const auto info = run_s2s({"info", "-c", step_file(8), "--json"}, dir.path());
  ASSERT_EQ(info.code(), 0) << info.describe();
  EXPECT_EQ(json::parse(info.out).at("translation_weights"), "average");
  const auto released = dir.file("released.pt");
  const auto rel = run_s2s({"release", "-c", step_file(8), "-o", released}, dir.path());
  ASSERT_EQ(rel.code(), 0) << rel.describe();
  const auto release_ckpt = read_checkpoint(released);
  EXPECT_FALSE(has_average(release_ckpt));
  const auto released_weights = restore_model(release_ckpt, torch::kCPU)->parameters();
  const auto avg8 = restore_average(read_checkpoint(step_file(8)), torch::kCPU)->parameters();
  for (size_t i = 0; i < avg8.size(); ++i) EXPECT_TRUE(torch::equal(released_weights[i], avg8[i])) << "parameter " << i;
}

TEST(Cli, SigintStopsWithACheckpoint) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  auto config = tiny_config(corpus, dir.file("long"));
  config["model"]["embedding_size"] = 32;
  config["model"]["hidden_size"] = 64;
  config["training"]["max_steps"] = 1000000;
  config["training"]["checkpoint_every"] = 1000000;
  config["training"]["valid_every"] = 1000000;
  const auto path = write_config(dir, config);
  const auto out = dir.file("sigint.out"), err = dir.file("sigint.err");
  const pid_t pid = s2s::testing::spawn_s2s({"train", "--config", path, "--set", "training.threads=1"}, "", out, err);

  // Wait until training has made steps (metrics.jsonl is flushed after every logged step).
  const auto metrics = dir.file("long/metrics.jsonl");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool stepping = false;
  while (std::chrono::steady_clock::now() < deadline) {
    if (contains(read_file(metrics), "\"train\"")) {
      stepping = true;
      break;
    }
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) FAIL() << "training ended early:\n" << read_file(err);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  if (!stepping) {
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    FAIL() << "no training step within 60 s:\n" << read_file(err);
  }
  // train.log is written as training goes (the step's log line comes before its metrics line), so
  // that `tail -f` follows it and a killed run keeps its log.
  EXPECT_TRUE(contains(read_file(dir.file("long/train.log")), "[train] step 1 ")) << read_file(dir.file("long/train.log"));
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_TRUE(s2s::testing::wait_for(pid, 20, &status)) << "no exit within 20 s of SIGINT:\n" << read_file(err);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(seconds, 10.0);
  ASSERT_TRUE(WIFEXITED(status)) << "ended by a signal instead of exiting:\n" << read_file(err);
  EXPECT_NE(WEXITSTATUS(status), 0);
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGINT);  // as trainer.h documents
  const auto stderr_text = read_file(err);
  EXPECT_TRUE(contains(stderr_text, "interrupted")) << stderr_text;

  // The checkpoint written on the way out loads, with the step it stopped at.
  const auto last = dir.file("long/last.pt");
  ASSERT_TRUE(fs::exists(last)) << stderr_text;
  CheckpointContents ckpt;
  ASSERT_NO_THROW(ckpt = read_checkpoint(last));
  EXPECT_GE(ckpt.state.step, 1);
  EXPECT_LT(ckpt.state.step, 1000000);
  EXPECT_NO_THROW(restore_model(ckpt, torch::kCPU));
  // No temporary files left behind.
  for (const auto& e : fs::directory_iterator(dir.file("long")))
    EXPECT_FALSE(contains(e.path().filename().string(), ".tmp")) << e.path();
}

// kill -9 at many moments while checkpoints are being written every step: every .pt file in the folder
// stays loadable, and `--resume auto` carries on from the newest.
TEST(CliSignals, KillDuringCheckpointWritesLeavesEveryCheckpointLoadable) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  auto config = tiny_config(corpus, dir.file("run"));
  config["model"]["embedding_size"] = 128;  // checkpoints of a few MB, so writes take a while
  config["model"]["hidden_size"] = 256;
  config["training"]["max_steps"] = 1000000;
  config["training"]["epochs"] = 1000000;
  config["training"]["checkpoint_every"] = 1;
  config["training"]["keep_checkpoints"] = 2;
  config["training"]["valid_every"] = 1000000;
  config["training"]["log_every"] = 1;
  const auto path = write_config(dir, config);
  int interrupted_writes = 0;
  bool temporaries_left = false;  // by the last round
  for (int round = 0; round < 6; ++round) {
    temporaries_left = false;
    const auto err = dir.file("kill" + std::to_string(round) + ".err");
    const pid_t pid = s2s::testing::spawn_s2s(
        {"train", "--config", path, "--resume", "auto", "--set", "training.threads=1"}, "", dir.file("kill.out"), err);
    // Wait for this run's first logged step, then let it write for a varying while before killing it.
    const auto metrics = dir.file("run/metrics.jsonl");
    const auto lines_before = split_lines(read_file(metrics)).size();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while ((split_lines(read_file(metrics)).size() <= lines_before || !fs::exists(dir.file("run/last.pt"))) &&
           std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(13 + 29 * round));
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
    int status = 0;
    ::waitpid(pid, &status, 0);
    int checkpoints = 0;
    for (const auto& e : fs::directory_iterator(dir.file("run"))) {
      const auto name = e.path().filename().string();
      if (contains(name, ".tmp")) {
        ++interrupted_writes;
        temporaries_left = true;
      }
      if (name.size() < 3 || name.compare(name.size() - 3, 3, ".pt") != 0) continue;
      ++checkpoints;
      EXPECT_NO_THROW(restore_model(read_checkpoint(e.path().string()), torch::kCPU)) << name << " after round " << round;
    }
    EXPECT_GT(checkpoints, 0) << read_file(err);
  }
  RecordProperty("interrupted_writes", interrupted_writes);  // how often a kill landed inside a write
  const auto before = read_checkpoint(dir.file("run/last.pt")).state.step;
  const auto r = run_train(path, dir.path(), {"--resume", "auto", "--set", "training.max_steps=" + std::to_string(before + 2)});
  ASSERT_EQ(r.code(), 0) << r.describe();
  EXPECT_EQ(contains(r.err, "removing"), temporaries_left) << r.err;  // stale temporaries cleaned up
  for (const auto& e : fs::directory_iterator(dir.file("run")))
    EXPECT_FALSE(contains(e.path().filename().string(), ".tmp")) << e.path();
  EXPECT_EQ(read_checkpoint(dir.file("run/last.pt")).state.step, before + 2);
}

// Hostile input: a very long line is translated with the output capped, an invalid UTF-8 line is reported
// with its line number (exit 1) while the other lines are still translated, unseen characters are <unk>.
TEST_F(CliTrained, AnyInputIsSafe) {
  std::string long_line;
  for (int i = 0; i < 5000; ++i) long_line += (i % 2 ? "a " : "b ");
  const std::string input = "a b c\n" + long_line + "\n\xff\xfe bad\n日本語 ünïcødé\nd e f\n";
  const auto r = translate({"--max-length", "40"}, &input);
  EXPECT_EQ(r.code(), 1) << r.describe();  // the invalid line makes the run fail, after translating the rest
  EXPECT_TRUE(contains(r.err, "line 3")) << r.err;
  EXPECT_TRUE(contains(r.err, "UTF-8")) << r.err;
  const auto lines = split_lines(r.out);
  ASSERT_EQ(lines.size(), 5u) << r.describe();
  EXPECT_LE(words(lines[1]).size(), 40u);  // capped by --max-length
  EXPECT_EQ(lines[2], "");                 // the invalid line
  const auto alone = translate({"a b c", "d e f"});
  ASSERT_EQ(alone.code(), 0) << alone.describe();
  EXPECT_EQ(split_lines(alone.out), (std::vector<std::string>{lines[0], lines[4]}));
}

// A folder that cannot be made is an error naming the option or key that asked for it.
TEST_F(CliTrained, FoldersThatCannotBeMadeAreNamed) {
  const auto file = dir_->file("a-regular-file");
  write_file(file, "x\n");
  const auto svg = translate({"--attention-svg", file + "/att", "a b c"});
  EXPECT_EQ(svg.code(), 1) << svg.describe();
  EXPECT_TRUE(contains(svg.err, "--attention-svg " + file + "/att: cannot create the folder")) << svg.describe();

  const auto path = write_config(*dir_, tiny_config(*corpus_, file + "/run"), "under-a-file.json");
  const auto train = run_train(path, scratch());
  EXPECT_EQ(train.code(), 1) << train.describe();
  EXPECT_TRUE(contains(train.err, "output_dir " + file + "/run: cannot create the folder")) << train.describe();
}

// --unk-replace puts the source word with the highest attention weight where the model wrote <unk>.
TEST_F(CliTrained, UnkReplaceUsesTheSourceWordWithMostAttention) {
  const std::string input = "a zzz1 b zzz2 c\n";
  const auto plain = translate({"--format", "json"}, &input);
  const auto replaced = translate({"--format", "json", "--unk-replace"}, &input);
  ASSERT_EQ(plain.code(), 0) << plain.describe();
  ASSERT_EQ(replaced.code(), 0) << replaced.describe();
  const auto p = json::parse(split_lines(plain.out).at(0));
  const auto q = json::parse(split_lines(replaced.out).at(0));
  const auto& src = p.at("source_tokens");
  ASSERT_EQ(p.at("output_tokens").size(), q.at("output_tokens").size());
  for (size_t j = 0; j < p.at("output_tokens").size(); ++j) {
    if (p["output_tokens"][j] != "<unk>") {
      EXPECT_EQ(q["output_tokens"][j], p["output_tokens"][j]);
      continue;
    }
    const auto& row = p.at("attention").at(j);
    size_t best = 0;
    for (size_t i = 1; i < src.size(); ++i)
      if (row[i].get<double>() > row[best].get<double>()) best = i;
    EXPECT_EQ(q["output_tokens"][j], src[best]);
  }
}

// `-c A -c B`: an ensemble. Two copies of one checkpoint translate and score as that checkpoint alone, on
// one thread or with batches side by side; two different checkpoints of one vocabulary translate and are
// both named in evaluate's JSON; a checkpoint of another vocabulary is refused, by name. One -c takes one
// value: the sentences after it stay sentences.
TEST_F(CliTrained, EnsembleOfCheckpointsTranslatesAndScores) {
  const auto a = dir_->file("run/step-0000006.pt"), b = dir_->file("run/step-0000012.pt");
  ASSERT_TRUE(fs::exists(a) && fs::exists(b)) << train_result_->describe();
  const std::string input = "a b c d\ne f g\n\nh i j k l m\n";
  const auto alone = translate({}, &input);
  ASSERT_EQ(alone.code(), 0) << alone.describe();
  ASSERT_EQ(split_lines(alone.out).size(), 4u) << alone.describe();
  for (const char* threads : {"1", "2"}) {
    const auto twice = run_s2s_with_input({"translate", "-c", checkpoint(), "-c", checkpoint(), "--device", "cpu",
                                           "--threads", threads, "--batch-size", "2"},
                                          scratch(), input);
    ASSERT_EQ(twice.code(), 0) << twice.describe();
    EXPECT_EQ(twice.out, alone.out) << "threads " << threads;
  }
  const auto pair = run_s2s({"translate", "-c", a, "-c", b, "--device", "cpu", "--threads", "1", "a b c", "d e"}, scratch());
  ASSERT_EQ(pair.code(), 0) << pair.describe();
  const auto lines = split_lines(pair.out);
  ASSERT_EQ(lines.size(), 2u) << pair.describe();
  for (const auto& line : lines) expect_target_words(line);

  const auto single = run_s2s({"evaluate", "-c", checkpoint(), "--device", "cpu", "--threads", "1", "--json"}, scratch());
  const auto doubled = run_s2s({"evaluate", "-c", checkpoint(), "-c", checkpoint(), "--device", "cpu", "--threads", "1",
                                "--json"}, scratch());
  const auto mixed = run_s2s({"evaluate", "-c", a, "-c", b, "--device", "cpu", "--threads", "1", "--json"}, scratch());
  for (const auto* r : {&single, &doubled, &mixed}) ASSERT_EQ(r->code(), 0) << r->describe();
  const auto js = json::parse(single.out), jd = json::parse(doubled.out), jm = json::parse(mixed.out);
  EXPECT_EQ(jd.at("bleu"), js.at("bleu"));
  EXPECT_NEAR(jd.at("ppl").get<double>(), js.at("ppl").get<double>(), 1e-4 * js.at("ppl").get<double>());
  EXPECT_EQ(jm.at("models"), json::array({a, b}));
  EXPECT_EQ(jm.at("model"), a + " + " + b);
  EXPECT_EQ(js.at("models"), json::array({checkpoint()}));
  EXPECT_EQ(js.at("model"), checkpoint());

  auto other_config = tiny_config(*corpus_, dir_->file("smaller-vocab"));
  other_config["data"]["max_size"] = 6;
  other_config["training"]["max_steps"] = 1;
  ASSERT_EQ(run_train(write_config(*dir_, other_config, "smaller-vocab.json"), scratch()).code(), 0);
  const auto other = dir_->file("smaller-vocab/last.pt");
  const auto refused = run_s2s({"translate", "-c", a, "-c", other, "--device", "cpu", "a b c"}, scratch());
  EXPECT_TRUE(refused.finished);
  EXPECT_NE(refused.code(), 0) << refused.describe();
  EXPECT_TRUE(contains(refused.err, other)) << refused.describe();
  EXPECT_TRUE(contains(refused.err, "vocabularies")) << refused.describe();
  EXPECT_TRUE(refused.out.empty()) << refused.describe();
}

// Alignments: `translate --alignment` links each output token to the source token its attention row
// weighs most (checked here against the JSON's own attention rows); `s2s align`, which teacher-forces a
// given target, gives the same links for the model's own translations (the search and the teacher-forced
// pass are two routes to the same weights); with --gold it scores them (AER by hand here).
TEST_F(CliTrained, AlignmentsFromTheAttention) {
  const std::vector<std::string> sources{"a b c d", "e f g", "h i j k l m", "b"};
  std::string input;
  for (const auto& s : sources) input += s + "\n";
  // Four hypotheses per sentence, of several lengths (this barely trained model's best ones are short).
  const std::vector<std::string> search{"--beam", "4", "--n-best", "4", "--alignment"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.begin(), search.begin(), search.end());
    return args;
  };
  const auto json_run = translate(with({"--format", "json"}), &input);
  ASSERT_EQ(json_run.code(), 0) << json_run.describe();
  const auto lines = split_lines(json_run.out);
  ASSERT_EQ(lines.size(), sources.size());
  std::string pair_sources, own_translations, expected_links;
  std::vector<std::string> expected_text;
  std::vector<json> searched_attention;  // per hypothesis: one row per output token, source </s> column last
  int64_t links = 0;
  for (size_t k = 0; k < lines.size(); ++k) {
    const auto j = json::parse(lines[k]);
    const auto m = j.at("source_tokens").size();
    for (const auto& h : j.at("nbest")) {
      const auto& rows = h.at("attention");
      std::string expected;
      for (size_t t = 0; t < h.at("output_tokens").size(); ++t) {
        size_t best = 0;
        for (size_t i = 1; i < m; ++i)
          if (rows[t][i].get<double>() > rows[t][best].get<double>()) best = i;
        expected += (t ? " " : "") + std::to_string(best) + "-" + std::to_string(t);
        ++links;
      }
      EXPECT_EQ(h.at("alignment"), expected) << lines[k];
      pair_sources += sources[k] + "\n";
      own_translations += h.at("output").get<std::string>() + "\n";
      expected_links += expected + "\n";
      expected_text.push_back(h.at("output").get<std::string>() + " ||| " + expected);
      searched_attention.push_back(rows);
    }
  }
  ASSERT_GT(links, 12);
  const auto text_run = translate(with({}), &input);
  ASSERT_EQ(text_run.code(), 0) << text_run.describe();
  const auto text_lines = split_lines(text_run.out), link_lines = split_lines(expected_links);
  ASSERT_EQ(text_lines.size(), expected_text.size());
  for (size_t k = 0; k < text_lines.size(); ++k) {
    const auto tab = text_lines[k].find('\t');  // n-best lines: score<TAB>text ||| links
    ASSERT_NE(tab, std::string::npos) << text_lines[k];
    EXPECT_EQ(text_lines[k].substr(tab + 1), expected_text[k]);
  }

  const auto src = dir_->file("align.src"), tgt = dir_->file("align.tgt"), gold = dir_->file("align.gold");
  write_file(src, pair_sources);
  write_file(tgt, own_translations);
  auto align = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"align", "-c", checkpoint(), "--src", src, "--tgt", tgt, "--device", "cpu", "--threads", "1"};
    args.insert(args.end(), extra.begin(), extra.end());
    return run_s2s(args, scratch());
  };
  const auto forced = align({});
  ASSERT_EQ(forced.code(), 0) << forced.describe();
  EXPECT_EQ(forced.out, expected_links);
  // The weights themselves, not only their argmax: teacher-forced rows equal the search's, row by row.
  const auto forced_json = align({"--format", "json"});
  ASSERT_EQ(forced_json.code(), 0) << forced_json.describe();
  const auto forced_lines = split_lines(forced_json.out);
  ASSERT_EQ(forced_lines.size(), searched_attention.size());
  double worst = 0;
  int64_t compared = 0;
  for (size_t k = 0; k < forced_lines.size(); ++k) {
    const auto j = json::parse(forced_lines[k]);
    const auto& rows = j.at("attention");
    ASSERT_EQ(rows.size(), searched_attention[k].size()) << forced_lines[k];
    EXPECT_EQ(j.at("alignment"), link_lines[k]);
    for (size_t t = 0; t < rows.size(); ++t) {
      ASSERT_EQ(rows[t].size(), j.at("source_tokens").size());
      for (size_t i = 0; i < rows[t].size(); ++i, ++compared)
        worst = std::max(worst, std::abs(rows[t][i].get<double>() - searched_attention[k][t][i].get<double>()));
    }
  }
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(compared, 40);

  write_file(gold, expected_links);
  const auto perfect = align({"--gold", gold, "--json"});
  ASSERT_EQ(perfect.code(), 0) << perfect.describe();
  EXPECT_DOUBLE_EQ(json::parse(perfect.out).at("aer").get<double>(), 0.0);
  // A gold standard with one sure link per sentence that the model's differs from, and one possible link
  // it makes: per sentence A = the model's n links, S = {wrong}, P = {wrong, first}.
  std::string shifted;
  int64_t predicted = 0, sure = 0, in_p = 0;
  for (const auto& l : link_lines) {
    const auto items = words(l);
    predicted += static_cast<int64_t>(items.size());
    if (items.empty()) {
      shifted += "\n";
      continue;
    }
    const auto dash = items[0].find('-');
    const auto i = std::stoll(items[0].substr(0, dash));
    shifted += std::to_string(i + 100) + "-" + items[0].substr(dash + 1) + " " + items[0].substr(0, dash) + "?" +
               items[0].substr(dash + 1) + "\n";
    ++sure;
    ++in_p;
  }
  write_file(gold, shifted);
  const auto scored = align({"--gold", gold, "--json"});
  ASSERT_EQ(scored.code(), 0) << scored.describe();
  const auto s = json::parse(scored.out);
  EXPECT_NEAR(s.at("aer").get<double>(), 1.0 - static_cast<double>(in_p) / static_cast<double>(predicted + sure), 1e-12);
  EXPECT_NEAR(s.at("precision").get<double>(), static_cast<double>(in_p) / static_cast<double>(predicted), 1e-12);
  EXPECT_EQ(s.at("recall").get<double>(), 0.0);

  // Bad gold files are named, with the line.
  write_file(gold, "0-0\n");
  const auto short_gold = align({"--gold", gold});
  EXPECT_NE(short_gold.code(), 0) << short_gold.describe();
  EXPECT_TRUE(contains(short_gold.err, gold)) << short_gold.describe();
  std::string malformed;
  for (size_t k = 0; k < link_lines.size(); ++k) malformed += k == 2 ? "0:0\n" : "0-0\n";
  write_file(gold, malformed);
  const auto bad_gold = align({"--gold", gold});
  EXPECT_NE(bad_gold.code(), 0) << bad_gold.describe();
  EXPECT_TRUE(contains(bad_gold.err, gold + ":3")) << bad_gold.describe();

  // A model without attention has no alignment to give.
  auto plain = tiny_config(*corpus_, dir_->file("no-attention"));
  plain["model"]["attention"] = "none";
  plain["training"]["max_steps"] = 1;
  ASSERT_EQ(run_train(write_config(*dir_, plain, "no-attention.json"), scratch()).code(), 0);
  const auto none = run_s2s({"translate", "-c", dir_->file("no-attention/last.pt"), "--alignment", "a b"}, scratch());
  EXPECT_NE(none.code(), 0) << none.describe();
  EXPECT_TRUE(contains(none.err, "no attention")) << none.describe();
  const auto none_align = run_s2s({"align", "-c", dir_->file("no-attention/last.pt"), "--src", src, "--tgt", tgt}, scratch());
  EXPECT_NE(none_align.code(), 0) << none_align.describe();
  EXPECT_TRUE(contains(none_align.err, "no attention")) << none_align.describe();
}

// A checkpoint written by a newer format version is refused with a message that says so.
// `s2s score`: the log-probability of given translations. For the search's own 4-best lists (length
// penalty 0, so a hypothesis's score is its summed log-probability) it gives each hypothesis's search
// score, so n-best lists can be reranked by it; its total is `evaluate`'s reference perplexity; --normalize
// is the mean per token; an ensemble of a model with itself scores as the model; files that do not line
// up are an error naming them.
TEST_F(CliTrained, ScoreGivesTheLogProbabilityOfEachTranslation) {
  const auto sources = split_lines(read_file(corpus_->valid_src));
  const auto nbest = translate({"--format", "json", "--beam", "4", "--n-best", "4", "--length-penalty", "0", "-i",
                                corpus_->valid_src});
  ASSERT_EQ(nbest.code(), 0) << nbest.describe();
  std::string src_lines, hyp_lines;
  std::vector<json> hyps;
  for (const auto& line : split_lines(nbest.out)) {
    const auto j = json::parse(line);
    ASSERT_EQ(j.at("nbest").size(), 4u) << line;
    for (const auto& h : j.at("nbest")) {
      src_lines += j.at("source").get<std::string>() + "\n";
      hyp_lines += h.at("output").get<std::string>() + "\n";
      hyps.push_back(h);
      hyps.back()["source_tokens"] = j.at("source_tokens");
    }
  }
  ASSERT_EQ(hyps.size(), 4 * sources.size());
  const auto src = dir_->file("score.src"), hyp = dir_->file("score.hyp");
  write_file(src, src_lines);
  write_file(hyp, hyp_lines);
  const std::vector<std::string> common = {"--device", "cpu", "--threads", "1"};
  auto score = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "score");
    args.insert(args.end(), common.begin(), common.end());
    return run_s2s(args, scratch());
  };
  const auto text = score({"-c", checkpoint(), "--src", src, "--tgt", hyp});
  const auto detail = score({"-c", checkpoint(), "--src", src, "--tgt", hyp, "--format", "json", "--batch-size", "5"});
  ASSERT_EQ(text.code(), 0) << text.describe();
  ASSERT_EQ(detail.code(), 0) << detail.describe();
  const auto scores = split_lines(text.out), details = split_lines(detail.out);
  ASSERT_EQ(scores.size(), hyps.size()) << text.describe();
  ASSERT_EQ(details.size(), hyps.size()) << detail.describe();
  int64_t ended = 0;
  for (size_t k = 0; k < hyps.size(); ++k) {
    SCOPED_TRACE("hypothesis " + std::to_string(k) + ": " + hyps[k].dump());
    const auto d = json::parse(details[k]);
    const auto tokens = hyps[k].at("output_tokens").get<std::vector<std::string>>();
    auto expected_tokens = tokens;
    expected_tokens.push_back("</s>");
    EXPECT_EQ(d.at("target_tokens").get<std::vector<std::string>>(), expected_tokens);
    const auto lp = d.at("token_log_probs").get<std::vector<double>>();
    ASSERT_EQ(lp.size(), tokens.size() + 1);
    double sum = 0;
    for (const double v : lp) sum += v;
    EXPECT_NEAR(std::stod(scores[k]), sum, 1e-5);
    EXPECT_NEAR(d.at("score").get<double>(), sum, 1e-9);
    EXPECT_EQ(d.at("tokens").get<int64_t>(), static_cast<int64_t>(lp.size()));
    // The search stops a hypothesis without </s> at 2 x (source tokens + </s>) + 10 output tokens.
    const auto limit = 2 * (hyps[k].at("source_tokens").size() + 1) + 10;
    const bool eos = tokens.size() < limit;
    ended += eos;
    EXPECT_NEAR(eos ? sum : sum - lp.back(), hyps[k].at("score").get<double>(), 1e-4);
  }
  EXPECT_GT(ended, 0);

  // The sum over a test set is evaluate's reference perplexity; --normalize divides by the tokens.
  const auto refs = score({"-c", checkpoint(), "--src", corpus_->valid_src, "--tgt", corpus_->valid_tgt, "--format", "json"});
  const auto mean = score({"-c", checkpoint(), "--src", corpus_->valid_src, "--tgt", corpus_->valid_tgt, "--normalize"});
  const auto doubled = score({"-c", checkpoint(), "-c", checkpoint(), "--src", corpus_->valid_src, "--tgt",
                              corpus_->valid_tgt, "-o", dir_->file("score-doubled.txt")});
  const auto eval = run_s2s({"evaluate", "-c", checkpoint(), "--src", corpus_->valid_src, "--ref", corpus_->valid_tgt,
                             "--json", "--device", "cpu", "--threads", "1"}, scratch());
  for (const auto* r : {&refs, &mean, &doubled, &eval}) ASSERT_EQ(r->code(), 0) << r->describe();
  const auto ref_lines = split_lines(refs.out), mean_lines = split_lines(mean.out);
  const auto targets = split_lines(read_file(corpus_->valid_tgt));
  const auto doubled_lines = split_lines(read_file(dir_->file("score-doubled.txt")));
  ASSERT_EQ(ref_lines.size(), sources.size());
  ASSERT_EQ(mean_lines.size(), sources.size());
  ASSERT_EQ(doubled_lines.size(), sources.size());
  EXPECT_TRUE(doubled.out.empty()) << doubled.describe();
  double total = 0;
  int64_t tokens = 0;
  for (size_t k = 0; k < ref_lines.size(); ++k) {
    const auto j = json::parse(ref_lines[k]);
    const double s = j.at("score").get<double>();
    const auto n = j.at("tokens").get<int64_t>();
    EXPECT_EQ(n, static_cast<int64_t>(words(targets[k]).size()) + 1);  // the words and </s>
    EXPECT_LT(s, 0.0);
    EXPECT_NEAR(std::stod(mean_lines[k]), s / static_cast<double>(n), 1e-5);
    EXPECT_NEAR(std::stod(doubled_lines[k]), s, 1e-4);
    total += s;
    tokens += n;
  }
  EXPECT_NEAR(std::exp(-total / static_cast<double>(tokens)), json::parse(eval.out).at("ppl").get<double>(), 1e-4);

  const auto short_tgt = dir_->file("score-short.tgt");
  write_file(short_tgt, "xa xb\n");
  const auto bad = score({"-c", checkpoint(), "--src", corpus_->valid_src, "--tgt", short_tgt});
  EXPECT_TRUE(bad.finished);
  EXPECT_NE(bad.code(), 0) << bad.describe();
  EXPECT_TRUE(contains(bad.err, short_tgt)) << bad.describe();
  EXPECT_TRUE(bad.out.empty()) << bad.describe();
}

// Sampling: the samples of a line are fixed by --seed and the line's number, whatever the batch size, the
// threads or whether the lines come as arguments, from a file or stdin; another seed draws others; the
// search's options that sampling does not take are refused.
TEST_F(CliTrained, TranslateSamplingIsReproducible) {
  const std::string input = "a b c d\ne f g\n\nh i j k l m\nb c\na a b\n";
  const auto in_file = dir_->file("sampling.src");
  write_file(in_file, input);
  const auto first = translate({"--sampling", "--n-best", "3", "--format", "json"}, &input);
  ASSERT_EQ(first.code(), 0) << first.describe();
  const auto lines = split_lines(first.out);
  ASSERT_EQ(lines.size(), 6u) << first.describe();
  for (const auto& line : lines) {
    const auto j = json::parse(line);
    if (j.at("source") == "") continue;
    ASSERT_EQ(j.at("nbest").size(), 3u) << line;
    for (const auto& h : j.at("nbest")) expect_target_words(h.at("output").get<std::string>());
  }
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--threads", "2", "--batch-size", "2", "-i", in_file},
           {"--threads", "1", "--batch-size", "1", "-i", in_file}}) {
    std::vector<std::string> all = {"translate", "-c", checkpoint(), "--device", "cpu", "--sampling", "--n-best", "3",
                                    "--format", "json"};
    all.insert(all.end(), args.begin(), args.end());
    const auto again = run_s2s(all, scratch());
    ASSERT_EQ(again.code(), 0) << again.describe();
    EXPECT_EQ(again.out, first.out) << again.describe();
  }
  const auto other_seed = translate({"--sampling", "--n-best", "3", "--format", "json", "--seed", "9"}, &input);
  ASSERT_EQ(other_seed.code(), 0) << other_seed.describe();
  EXPECT_NE(other_seed.out, first.out);
  // The first line's samples as arguments: the same line number, the same samples.
  const auto argument = translate({"--sampling", "--n-best", "3", "--format", "json", "a b c d"});
  ASSERT_EQ(argument.code(), 0) << argument.describe();
  EXPECT_EQ(split_lines(argument.out).at(0), lines[0]);

  for (const auto& bad : std::vector<std::vector<std::string>>{{"--sampling", "--beam", "4", "a b"},
                                                               {"--top-k", "5", "a b"},
                                                               {"--sampling", "--temperature", "0", "a b"}}) {
    const auto r = translate(bad);
    EXPECT_TRUE(r.finished);
    EXPECT_NE(r.code(), 0) << r.describe();
    EXPECT_TRUE(r.out.empty()) << r.describe();
    EXPECT_FALSE(r.err.empty()) << r.describe();
  }
}

TEST_F(CliTrained, FutureCheckpointVersionIsRefused) {
  torch::serialize::OutputArchive a;
  a.write("format", c10::IValue(std::string("s2s-checkpoint")));
  a.write("format_version", c10::IValue(int64_t{99}));
  const auto path = dir_->file("future.pt");
  a.save_to(path);
  const auto r = run_s2s({"translate", "-c", path, "a b"}, scratch());
  EXPECT_NE(r.code(), 0) << r.describe();
  EXPECT_TRUE(contains(r.err, path)) << r.err;
  EXPECT_TRUE(contains(r.err, "newer")) << r.err;
}

// ---------------------------------------------------------------------------------------------
// Training options: the best-checkpoint metric, fine-tuning, a diverging run
// ---------------------------------------------------------------------------------------------

TEST(Cli, BestMetricLossKeepsTheCheckpointWithTheLowestValidationLoss) {
  TempDir dir;
  auto config = tiny_config(make_corpus(dir), dir.file("run"));
  config["training"]["best_metric"] = "loss";
  config["training"]["valid_every"] = 2;
  config["training"]["learning_rate"] = 0.05;  // a bumpy validation loss, so the best is not simply the last
  const auto r = run_train(write_config(dir, config), dir.path());
  ASSERT_EQ(r.code(), 0) << r.describe();
  int64_t best_step = -1;
  double best_loss = std::numeric_limits<double>::infinity();
  int validations = 0;
  for (const auto& line : split_lines(read_file(dir.file("run/metrics.jsonl")))) {
    const auto j = json::parse(line);
    if (j["type"] != "valid") continue;
    ++validations;
    if (j["loss"].get<double>() < best_loss) {
      best_loss = j["loss"].get<double>();
      best_step = j["step"].get<int64_t>();
    }
  }
  ASSERT_EQ(validations, 6);
  const auto best = read_checkpoint(dir.file("run/best.pt"));
  EXPECT_EQ(best.state.step, best_step);
  EXPECT_EQ(best.state.best_step, best_step);
  EXPECT_NEAR(-best.state.best_score, best_loss, 1e-9);
}

TEST(Cli, InitFromStartsAFreshRunFromTheCheckpointsWeights) {
  TempDir dir;
  const auto corpus = make_corpus(dir);
  const auto first = run_train(write_config(dir, tiny_config(corpus, dir.file("a")), "a.json"), dir.path());
  ASSERT_EQ(first.code(), 0) << first.describe();
  // A new run from a's weights with a learning rate too small to move them: its parameters are a's,
  // its step count starts at 0 and its optimiser is new.
  auto config_b = tiny_config(corpus, dir.file("b"));
  config_b["training"]["max_steps"] = 2;
  config_b["training"]["learning_rate"] = 1e-12;
  config_b["training"]["seed"] = 99;  // a fresh initialisation would differ
  const auto b = run_train(write_config(dir, config_b, "b.json"), dir.path(), {"--init-from", dir.file("a/last.pt")});
  ASSERT_EQ(b.code(), 0) << b.describe();
  const auto ckpt = read_checkpoint(dir.file("b/last.pt"));
  EXPECT_EQ(ckpt.state.step, 2);
  const auto pa = checkpoint_parameters(dir.file("a/last.pt")), pb = checkpoint_parameters(dir.file("b/last.pt"));
  ASSERT_EQ(pa.size(), pb.size());
  for (size_t i = 0; i < pa.size(); ++i)
    EXPECT_TRUE(torch::allclose(pa[i].second, pb[i].second, 0, 1e-6)) << pa[i].first;
  // Fresh optimiser: b's Adam state counts 2 steps, not a's 14.
  auto model = restore_model(ckpt, torch::kCPU);
  torch::optim::Adam adam(model->parameters(), torch::optim::AdamOptions(1e-3));
  restore_optimizer(ckpt, adam);
  const auto& states = adam.state();
  ASSERT_FALSE(states.empty());
  for (const auto& [key, st] : states)
    EXPECT_EQ(static_cast<const torch::optim::AdamParamState&>(*st).step(), 2);
  // A model of another shape cannot start from it.
  auto config_c = tiny_config(corpus, dir.file("c"));
  config_c["model"]["hidden_size"] = 32;
  const auto c = run_train(write_config(dir, config_c, "c.json"), dir.path(), {"--init-from", dir.file("a/last.pt")});
  EXPECT_EQ(c.code(), 1) << c.describe();
  EXPECT_TRUE(contains(c.err, "model section differs")) << c.err;
}

TEST(Cli, DivergingLossStopsTheRunAndKeepsTheLastGoodCheckpoint) {
  TempDir dir;
  auto config = tiny_config(make_corpus(dir), dir.file("run"));
  config["training"]["optimizer"] = "sgd";
  config["training"]["learning_rate"] = 1e38;  // the first update sends the weights to infinity
  config["training"]["clip_norm"] = 0;
  config["training"]["checkpoint_every"] = 1;
  const auto r = run_train(write_config(dir, config), dir.path());
  EXPECT_EQ(r.code(), 1) << r.describe();
  EXPECT_TRUE(contains(r.err, "the loss became inf at step 2") || contains(r.err, "the loss became nan at step 2"))
      << r.err;
  const auto last = read_checkpoint(dir.file("run/last.pt"));
  EXPECT_EQ(last.state.step, 1);
  for (const auto& [name, p] : checkpoint_parameters(dir.file("run/last.pt")))
    EXPECT_TRUE(torch::isfinite(p).all().item<bool>()) << name;
}

}  // namespace
}  // namespace s2s
