// Tests of the typed configuration: defaults, strict reading (unknown keys, wrong types, impossible
// values, each named with the key and the file), --set overrides and the JSON round trip.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.h"
#include "error.h"
#include "test_util.h"

namespace s2s {
namespace {

using nlohmann::json;
using s2s::testing::contains;
using s2s::testing::error_of;
using s2s::testing::TempDir;
using s2s::testing::write_file;


// Writes `j` as a config file and loads it.
Config load_json(const TempDir& dir, const json& j, const std::vector<std::string>& overrides = {},
                 const std::string& name = "config.json") {
  const auto path = dir.file(name);
  write_file(path, j.dump(2));
  return load_config(path, overrides);
}

TEST(Config, DefaultsFromEmptyObject) {
  const Config c = config_from_json(json::object(), "empty");
  const Config d;
  EXPECT_EQ(config_to_json(c), config_to_json(d));
  // A few defaults spelled out, so that a reader that zeroes fields is caught.
  EXPECT_EQ(c.model.hidden_size, 256);
  EXPECT_EQ(c.model.attention, "bahdanau");
  EXPECT_EQ(c.training.batch_size, 64);
  EXPECT_EQ(c.training.batch_type, "sentences");
  EXPECT_DOUBLE_EQ(c.training.learning_rate, 1e-3);
  EXPECT_TRUE(c.model.orthogonal_recurrent);
  EXPECT_EQ(c.output_dir, "runs/default");

  // The same through a file, and with empty sections.
  TempDir dir;
  EXPECT_EQ(config_to_json(load_json(dir, json::object())), config_to_json(d));
  EXPECT_EQ(config_to_json(load_json(dir, json{{"data", json::object()}, {"model", json::object()},
                                               {"training", json::object()}})),
            config_to_json(d));
}

TEST(Config, ReadsEveryTypeFromAFile) {
  TempDir dir;
  const Config c = load_json(dir, json{{"data", {{"train_src", "a.src"}, {"lowercase", true}, {"max_length_ratio", 2.5}}},
                                       {"model", {{"hidden_size", 32}, {"attention", "qkv"}, {"dropout", 0.25}}},
                                       {"training", {{"learning_rate", 1}, {"batch_type", "tokens"}}},
                                       {"output_dir", "somewhere"}});
  EXPECT_EQ(c.data.train_src, "a.src");
  EXPECT_TRUE(c.data.lowercase);
  EXPECT_DOUBLE_EQ(c.data.max_length_ratio, 2.5);
  EXPECT_EQ(c.model.hidden_size, 32);
  EXPECT_EQ(c.model.attention, "qkv");
  EXPECT_DOUBLE_EQ(c.model.dropout, 0.25);
  EXPECT_DOUBLE_EQ(c.training.learning_rate, 1.0);  // an integer is a valid number
  EXPECT_EQ(c.training.batch_type, "tokens");
  EXPECT_EQ(c.output_dir, "somewhere");
  // Untouched keys keep their defaults.
  EXPECT_EQ(c.model.embedding_size, 128);
  EXPECT_EQ(c.training.epochs, 10);
}

TEST(Config, UnknownKeyNamesKeyAndFile) {
  TempDir dir;
  const std::vector<std::pair<json, std::string>> cases = {
      {json{{"modle", json::object()}}, "modle"},
      {json{{"data", {{"train_source", "x"}}}}, "train_source"},
      {json{{"model", {{"hiden_size", 16}}}}, "hiden_size"},
      {json{{"training", {{"learning_rat", 0.1}}}}, "learning_rat"},
  };
  for (const auto& [j, key] : cases) {
    const auto path = dir.file("unknown.json");
    write_file(path, j.dump());
    const auto msg = error_of([&] { load_config(path); });
    EXPECT_TRUE(contains(msg, key)) << msg;
    EXPECT_TRUE(contains(msg, path)) << msg;
    // And from an in-memory object, the origin names it.
    const auto msg2 = error_of([&] { config_from_json(j, "my-origin.json"); });
    EXPECT_TRUE(contains(msg2, key)) << msg2;
    EXPECT_TRUE(contains(msg2, "my-origin.json")) << msg2;
  }
}

TEST(Config, WrongTypeNamesKeyAndFile) {
  TempDir dir;
  const std::vector<std::pair<json, std::string>> cases = {
      {json{{"model", {{"hidden_size", "256"}}}}, "model.hidden_size"},     // string for an int
      {json{{"model", {{"hidden_size", 2.5}}}}, "model.hidden_size"},       // float for an int
      {json{{"model", {{"bidirectional", 1}}}}, "model.bidirectional"},     // int for a bool
      {json{{"model", {{"attention", 3}}}}, "model.attention"},             // int for a string
      {json{{"training", {{"learning_rate", "fast"}}}}, "training.learning_rate"},  // string for a double
      {json{{"training", {{"learning_rate", true}}}}, "training.learning_rate"},    // bool for a double
      {json{{"data", {{"train_src", json::array()}}}}, "data.train_src"},   // array for a string
      {json{{"data", {{"lowercase", "yes"}}}}, "data.lowercase"},           // string for a bool
      {json{{"output_dir", 5}}, "output_dir"},
      {json{{"training", 5}}, "training"},                                  // a section that is not an object
  };
  for (const auto& [j, key] : cases) {
    const auto path = dir.file("types.json");
    write_file(path, j.dump());
    const auto msg = error_of([&] { load_config(path); });
    EXPECT_TRUE(contains(msg, key)) << j.dump() << " -> " << msg;
    EXPECT_TRUE(contains(msg, path)) << j.dump() << " -> " << msg;
  }
  // The top level must be an object.
  const auto msg = error_of([] { config_from_json(json::array(), "list.json"); });
  EXPECT_TRUE(contains(msg, "list.json")) << msg;
}

TEST(Config, ImpossibleValuesNameTheKey) {
  const std::vector<std::pair<json, std::string>> cases = {
      {json{{"model", {{"hidden_size", -4}}}}, "model.hidden_size"},
      {json{{"model", {{"hidden_size", 0}}}}, "model.hidden_size"},
      {json{{"model", {{"embedding_size", 0}}}}, "model.embedding_size"},
      {json{{"model", {{"attention", "foo"}}}}, "model.attention"},
      {json{{"model", {{"cell", "transformer"}}}}, "model.cell"},
      {json{{"model", {{"dropout", 1.5}}}}, "model.dropout"},
      {json{{"model", {{"dropout", -0.1}}}}, "model.dropout"},
      {json{{"training", {{"batch_type", "x"}}}}, "training.batch_type"},
      {json{{"training", {{"batch_size", 0}}}}, "training.batch_size"},
      {json{{"training", {{"optimizer", "rmsprop"}}}}, "training.optimizer"},
      {json{{"training", {{"learning_rate", 0}}}}, "training.learning_rate"},
      {json{{"training", {{"device", "tpu"}}}}, "training.device"},
      {json{{"training", {{"label_smoothing", 1.0}}}}, "training.label_smoothing"},
      {json{{"training", {{"ema_decay", 1.0}}}}, "training.ema_decay"},
      {json{{"training", {{"ema_decay", -0.5}}}}, "training.ema_decay"},
      {json{{"training", {{"cpu_parallel", "threads"}}}}, "training.cpu_parallel"},
      {json{{"data", {{"tokenizer", "chars"}}}}, "data.tokenizer"},
      {json{{"data", {{"min_freq", 0}}}}, "data.min_freq"},
      {json{{"output_dir", ""}}, "output_dir"},
  };
  for (const auto& [j, key] : cases) {
    const auto msg = error_of([&] { config_from_json(j, "impossible.json"); });
    EXPECT_TRUE(contains(msg, key)) << j.dump() << " -> " << msg;
    EXPECT_TRUE(contains(msg, "impossible.json")) << j.dump() << " -> " << msg;
  }
  // The bad value itself is quoted for names, so the user sees what was read.
  EXPECT_TRUE(contains(error_of([] { config_from_json(json{{"model", {{"attention", "foo"}}}}, "o"); }), "foo"));
  // Boundary values that are allowed.
  EXPECT_NO_THROW(config_from_json(json{{"model", {{"dropout", 0.0}, {"hidden_size", 1}, {"attention", "none"}}}}, "ok"));
  EXPECT_NO_THROW(config_from_json(json{{"training", {{"device", "cuda:1"}, {"batch_type", "tokens"}}}}, "ok"));
}

TEST(Config, SetOverridesApplyAndAreTypeChecked) {
  TempDir dir;
  const json base{{"model", {{"hidden_size", 32}}}, {"training", {{"learning_rate", 0.01}}}};
  const Config c = load_json(dir, base,
                             {"training.learning_rate=0.0005", "model.hidden_size=64", "model.bidirectional=true",
                              "model.attention=qkv", "output_dir=/tmp/some.where/run", "data.train_src=train.de",
                              "training.max_steps=7", "model.dropout=0"});
  EXPECT_DOUBLE_EQ(c.training.learning_rate, 0.0005);
  EXPECT_EQ(c.model.hidden_size, 64);  // overrides the file's value
  EXPECT_TRUE(c.model.bidirectional);
  EXPECT_EQ(c.model.attention, "qkv");  // a bare word is a string
  EXPECT_EQ(c.output_dir, "/tmp/some.where/run");  // top level, even with dots in the value
  EXPECT_EQ(c.data.train_src, "train.de");
  EXPECT_EQ(c.training.max_steps, 7);
  EXPECT_DOUBLE_EQ(c.model.dropout, 0.0);
  // A quoted JSON string works too.
  EXPECT_EQ(load_json(dir, base, {"model.cell=\"gru\""}).model.cell, "gru");
  // The last of two overrides of one key wins.
  EXPECT_EQ(load_json(dir, base, {"model.hidden_size=8", "model.hidden_size=9"}).model.hidden_size, 9);

  // Type-checked like the file: the message names the key and the file.
  const auto path = dir.file("config.json");
  for (const auto& [assignment, key] : std::vector<std::pair<std::string, std::string>>{
           {"model.hidden_size=abc", "model.hidden_size"},
           {"model.hidden_size=1.5", "model.hidden_size"},
           {"model.bidirectional=yes", "model.bidirectional"},
           {"training.learning_rate=fast", "training.learning_rate"},
           {"model.attention=foo", "model.attention"},        // right type, impossible value
           {"model.dropout=1.5", "model.dropout"},
           {"model.hiden_size=3", "hiden_size"},              // unknown key
           {"colour=blue", "colour"}}) {                      // unknown top-level key
    const auto msg = error_of([&] { load_config(path, {assignment}); });
    EXPECT_TRUE(contains(msg, key)) << assignment << " -> " << msg;
    EXPECT_TRUE(contains(msg, path)) << assignment << " -> " << msg;
  }
  // Not KEY=VALUE at all.
  const auto msg = error_of([&] { load_config(path, {"model.hidden_size"}); });
  EXPECT_TRUE(contains(msg, "model.hidden_size")) << msg;
}

TEST(Config, JsonRoundTrip) {
  Config c;
  c.data.train_src = "train.src";
  c.data.lowercase = true;
  c.data.max_length_ratio = 3.5;
  c.data.max_size = 1234;
  c.model.cell = "lstm";
  c.model.hidden_size = 48;
  c.model.bidirectional = true;
  c.model.attention = "qkv";
  c.model.dropout = 0.3;
  c.model.init_range = 0.05;
  c.training.batch_type = "tokens";
  c.training.learning_rate = 0.00025;
  c.training.seed = 42;
  c.training.device = "cpu";
  c.training.lr_schedule = "plateau";
  c.training.lr_decay = 0.25;
  c.training.cuda_graphs = true;
  c.training.cuda_graph_length_step = 3;
  c.training.tf32 = true;
  c.training.ema_decay = 0.995;
  c.output_dir = "runs/x";
  const json j = config_to_json(c);
  // Every section lists every key (a writer that forgets one would lose settings on resume).
  EXPECT_EQ(j.at("model").size(), 14u);
  EXPECT_EQ(j.at("data").size(), 18u);
  EXPECT_EQ(j.at("training").size(), 32u);
  const Config back = config_from_json(j, "round-trip");
  EXPECT_EQ(config_to_json(back), j);
  EXPECT_EQ(back.model.cell, "lstm");
  EXPECT_TRUE(back.training.cuda_graphs);
  EXPECT_EQ(back.training.ema_decay, 0.995);
  EXPECT_EQ(back.training.cuda_graph_length_step, 3);
  EXPECT_TRUE(back.training.tf32);
  EXPECT_EQ(back.model.hidden_size, 48);
  EXPECT_DOUBLE_EQ(back.model.dropout, 0.3);
  EXPECT_DOUBLE_EQ(back.training.learning_rate, 0.00025);
  EXPECT_EQ(back.training.seed, 42);
  EXPECT_EQ(back.training.lr_schedule, "plateau");
  EXPECT_DOUBLE_EQ(back.training.lr_decay, 0.25);
  EXPECT_EQ(back.output_dir, "runs/x");

  // Through text and a file, as checkpoints and run folders store it.
  TempDir dir;
  const auto path = dir.file("saved.json");
  write_file(path, j.dump(2));
  EXPECT_EQ(config_to_json(load_config(path)), j);
}

TEST(Config, InvalidJsonNamesTheFile) {
  TempDir dir;
  const auto path = dir.file("broken.json");
  write_file(path, "{\"model\": {\"hidden_size\": 16,}");
  const auto msg = error_of([&] { load_config(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "JSON")) << msg;

  write_file(path, "");
  const auto empty = error_of([&] { load_config(path); });
  EXPECT_TRUE(contains(empty, path)) << empty;

  // Valid JSON that is not an object, with and without --set overrides.
  write_file(path, "[1, 2]");
  const auto list = error_of([&] { load_config(path); });
  EXPECT_TRUE(contains(list, path)) << list;
  const auto list_set = error_of([&] { load_config(path, {"model.hidden_size=3"}); });
  EXPECT_TRUE(contains(list_set, path)) << list_set;

  const auto missing = dir.file("missing.json");
  const auto msg2 = error_of([&] { load_config(missing); });
  EXPECT_TRUE(contains(msg2, missing)) << msg2;
}

TEST(Config, ReferenceListsEveryKey) {
  const auto ref = config_reference();
  for (const char* key : {"data.train_src", "model.hidden_size", "model.attention", "training.batch_type",
                          "training.learning_rate", "output_dir"})
    EXPECT_TRUE(contains(ref, key)) << key;
}

// The README's configuration table is `s2s config --markdown`: every row of it, word for word.
TEST(Config, ReadmeTableIsTheReference) {
  std::ifstream in(std::string(S2S_SOURCE_DIR) + "/README.md");
  ASSERT_TRUE(in) << "README.md not found";
  const std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::istringstream rows(config_reference(/*markdown=*/true));
  int checked = 0;
  for (std::string row; std::getline(rows, row);) {
    if (row.rfind("| `", 0) != 0) continue;
    EXPECT_TRUE(contains(readme, row)) << "README.md lacks or differs in: " << row;
    ++checked;
  }
  EXPECT_GT(checked, 50);
}

}  // namespace
}  // namespace s2s
