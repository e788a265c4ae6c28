#include "config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "error.h"

namespace s2s {
namespace {

using nlohmann::json;

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "an unsupported value";
  }
}

// Reads the keys a section's visit() names from a JSON object; remembers which it saw.
class JsonReader {
 public:
  JsonReader(const json& obj, std::string section, std::string origin)
      : obj_(obj), section_(std::move(section)), origin_(std::move(origin)) {}

  void operator()(const char* key, std::string& field, const char*) {
    if (const json* v = find(key)) {
      if (!v->is_string()) fail(key, "expected a string, got " + std::string(type_name(*v)));
      field = v->get<std::string>();
    }
  }
  void operator()(const char* key, bool& field, const char*) {
    if (const json* v = find(key)) {
      if (!v->is_boolean()) fail(key, "expected true or false, got " + std::string(type_name(*v)));
      field = v->get<bool>();
    }
  }
  void operator()(const char* key, int64_t& field, const char*) {
    if (const json* v = find(key)) {
      if (!v->is_number_integer()) fail(key, "expected an integer, got " + std::string(type_name(*v)));
      field = v->get<int64_t>();
    }
  }
  void operator()(const char* key, double& field, const char*) {
    if (const json* v = find(key)) {
      if (!v->is_number()) fail(key, "expected a number, got " + std::string(type_name(*v)));
      field = v->get<double>();
    }
  }

  // Every key in the object must have been named by visit().
  void reject_unknown() const {
    for (auto it = obj_.begin(); it != obj_.end(); ++it)
      if (!seen_.count(it.key())) fail(it.key(), "unknown key (`s2s config` lists the valid keys)");
  }

 private:
  const json* find(const char* key) {
    seen_.insert(key);
    auto it = obj_.find(key);
    return it == obj_.end() ? nullptr : &*it;
  }
  [[noreturn]] void fail(const std::string& key, const std::string& what) const {
    throw Error(origin_ + ": " + section_ + "." + key + ": " + what);
  }

  const json& obj_;
  std::string section_, origin_;
  std::set<std::string> seen_;
};

class JsonWriter {
 public:
  explicit JsonWriter(json& obj) : obj_(obj) {}
  template <class T>
  void operator()(const char* key, const T& field, const char*) { obj_[key] = field; }

 private:
  json& obj_;
};

class ReferenceWriter {
 public:
  ReferenceWriter(std::ostringstream& out, std::string section, bool markdown)
      : out_(out), section_(std::move(section)), markdown_(markdown) {}
  template <class T>
  void operator()(const char* key, const T& field, const char* doc) {
    if (markdown_)
      out_ << "| `" << section_ << "." << key << "` | `" << json(field).dump() << "` | " << doc << " |\n";
    else
      out_ << "  " << section_ << "." << key << " = " << json(field).dump() << "\n      " << doc << "\n";
  }

 private:
  std::ostringstream& out_;
  std::string section_;
  bool markdown_;
};

template <class Section>
void read_section(const json& root, const char* name, Section& section, const std::string& origin) {
  auto it = root.find(name);
  if (it == root.end()) return;
  if (!it->is_object()) throw Error(origin + ": " + name + ": expected an object, got " + type_name(*it));
  JsonReader reader(*it, name, origin);
  section.visit(reader);
  reader.reject_unknown();
}

// "training.learning_rate=0.0005" -> root["training"]["learning_rate"] = 0.0005
void apply_override(json& root, const std::string& assignment) {
  const auto eq = assignment.find('=');
  const auto dot = assignment.find('.');
  if (eq == std::string::npos || eq == 0)
    throw Error("--set " + assignment + ": expected KEY=VALUE, for example training.learning_rate=0.0005");
  const std::string key = assignment.substr(0, eq);
  const std::string text = assignment.substr(eq + 1);
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) value = text;  // bare words are strings: model.attention=qkv
  if (dot == std::string::npos || dot > eq) {
    root[key] = value;  // a top-level key such as output_dir
    return;
  }
  const std::string section = key.substr(0, dot);
  if (!root.contains(section)) root[section] = json::object();
  if (!root[section].is_object()) throw Error("--set " + assignment + ": " + section + " is not a section");
  root[section][key.substr(dot + 1)] = value;
}

void check(bool ok, const std::string& origin, const std::string& key, const std::string& what) {
  if (!ok) throw Error(origin + ": " + key + ": " + what);
}

void check_one_of(const std::string& value, const std::vector<std::string>& allowed, const std::string& origin,
                  const std::string& key) {
  if (std::find(allowed.begin(), allowed.end(), value) != allowed.end()) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "\"" : ", \"") + a + "\"";
  throw Error(origin + ": " + key + ": \"" + value + "\" is not one of " + list);
}

}  // namespace

Config config_from_json(const json& root, const std::string& origin) {
  if (!root.is_object()) throw Error(origin + ": the config must be a JSON object");
  Config c;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const auto& k = it.key();
    if (k != "data" && k != "model" && k != "training" && k != "output_dir")
      throw Error(origin + ": " + k + ": unknown key (top-level keys are data, model, training, output_dir)");
  }
  read_section(root, "data", c.data, origin);
  read_section(root, "model", c.model, origin);
  read_section(root, "training", c.training, origin);
  if (auto it = root.find("output_dir"); it != root.end()) {
    if (!it->is_string()) throw Error(origin + ": output_dir: expected a string, got " + type_name(*it));
    c.output_dir = it->get<std::string>();
  }
  validate_config(c, origin);
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path);
  if (!in) throw Error(path + ": cannot open the config file");
  json root;
  try {
    root = json::parse(in);
  } catch (const json::parse_error& e) {
    throw Error(path + ": not valid JSON: " + e.what());
  }
  // Checked here as well as in config_from_json: apply_override would fail on a non-object first.
  if (!root.is_object()) throw Error(path + ": the config must be a JSON object");
  std::string origin = path;  // errors name the --set options too: the bad value may come from one
  for (const auto& o : overrides) {
    apply_override(root, o);
    origin += (&o == &overrides.front() ? " with --set " : ", --set ") + o;
  }
  return config_from_json(root, origin);
}

json config_to_json(const Config& c) {
  json root;
  json data, model, training;
  JsonWriter wd(data), wm(model), wt(training);
  Config copy = c;  // visit() is shared with the reader, so it takes a mutable section
  copy.data.visit(wd);
  copy.model.visit(wm);
  copy.training.visit(wt);
  root["data"] = data;
  root["model"] = model;
  root["training"] = training;
  root["output_dir"] = c.output_dir;
  return root;
}

void validate_config(const Config& c, const std::string& origin) {
  const auto& d = c.data;
  const auto& m = c.model;
  const auto& t = c.training;
  check_one_of(d.tokenizer, {"word", "sentencepiece"}, origin, "data.tokenizer");
  check(d.min_freq >= 1, origin, "data.min_freq", "must be at least 1");
  check(d.max_size >= 0, origin, "data.max_size", "must be 0 (unlimited) or positive");
  check(d.vocab_size >= 8, origin, "data.vocab_size", "must be at least 8");
  check_one_of(d.spm_model_type, {"unigram", "bpe"}, origin, "data.spm_model_type");
  check(d.spm_model.empty() || d.tokenizer == "sentencepiece", origin, "data.spm_model",
        "is set, but data.tokenizer is \"" + d.tokenizer + "\", not \"sentencepiece\"");
  check(d.spm_model_tgt.empty() || !d.spm_model.empty(), origin, "data.spm_model_tgt",
        "needs data.spm_model (the source side's model) as well");
  check(d.spm_model_tgt.empty() || !d.shared_vocab, origin, "data.shared_vocab",
        "cannot be true with two models (data.spm_model and data.spm_model_tgt)");
  check(d.max_len >= 1, origin, "data.max_len", "must be positive");
  check(d.max_length_ratio >= 0, origin, "data.max_length_ratio", "must be 0 (off) or positive");
  check_one_of(m.cell, {"rnn", "gru", "lstm"}, origin, "model.cell");
  check_one_of(m.attention, {"bahdanau", "qkv", "none"}, origin, "model.attention");
  check_one_of(m.output, {"state", "deep"}, origin, "model.output");
  check_one_of(m.init, {"uniform", "xavier"}, origin, "model.init");
  check(m.embedding_size >= 1, origin, "model.embedding_size", "must be positive");
  check(m.hidden_size >= 1, origin, "model.hidden_size", "must be positive");
  check(m.encoder_layers >= 1, origin, "model.encoder_layers", "must be at least 1");
  check(m.attention_size >= 0, origin, "model.attention_size", "must be 0 (= hidden_size) or positive");
  check(m.dropout >= 0 && m.dropout < 1, origin, "model.dropout", "must be in [0, 1)");
  check(m.init_range > 0, origin, "model.init_range", "must be positive");
  check(!m.tied_embeddings || m.output == "deep" || m.embedding_size == m.hidden_size, origin,
        "model.tied_embeddings", "needs embedding_size == hidden_size when model.output is \"state\"");
  check(t.batch_size >= 1, origin, "training.batch_size", "must be positive");
  check_one_of(t.batch_type, {"sentences", "tokens"}, origin, "training.batch_type");
  check_one_of(t.optimizer, {"adam", "sgd"}, origin, "training.optimizer");
  check(t.learning_rate > 0, origin, "training.learning_rate", "must be positive");
  check_one_of(t.lr_schedule, {"constant", "rsqrt", "plateau"}, origin, "training.lr_schedule");
  check(t.warmup_steps >= 0, origin, "training.warmup_steps", "must be 0 (none) or positive");
  check(t.lr_decay > 0 && t.lr_decay <= 1, origin, "training.lr_decay", "must be in (0, 1]");
  check(t.lr_patience >= 1, origin, "training.lr_patience", "must be at least 1");
  check(t.min_learning_rate >= 0, origin, "training.min_learning_rate", "must not be negative");
  check(t.lr_schedule != "rsqrt" || t.warmup_steps > 0, origin, "training.warmup_steps",
        "must be positive with lr_schedule \"rsqrt\"");
  check(t.max_steps >= 0, origin, "training.max_steps", "must be 0 (no limit) or positive");
  check(t.epochs >= 1, origin, "training.epochs", "must be at least 1");
  check(t.clip_norm >= 0, origin, "training.clip_norm", "must be 0 (off) or positive");
  check(t.label_smoothing >= 0 && t.label_smoothing < 1, origin, "training.label_smoothing", "must be in [0, 1)");
  check(t.ema_decay >= 0 && t.ema_decay < 1, origin, "training.ema_decay", "must be in [0, 1)");
  check(t.cuda_graph_length_step >= 1, origin, "training.cuda_graph_length_step", "must be at least 1");
  check(t.scheduled_sampling >= 0 && t.scheduled_sampling <= 1, origin, "training.scheduled_sampling", "must be in [0, 1]");
  check(t.threads >= 0, origin, "training.threads", "must be 0 (all cores) or positive");
  check(t.cpu_parallel == "batch" || t.cpu_parallel == "ops", origin, "training.cpu_parallel",
        "must be \"batch\" or \"ops\"");
  const bool cuda = t.device.rfind("cuda", 0) == 0;
  check(t.device == "auto" || t.device == "cpu" || cuda, origin, "training.device",
        "\"" + t.device + "\" is not one of \"auto\", \"cpu\", \"cuda\", \"cuda:N\"");
  check(t.log_every >= 1, origin, "training.log_every", "must be positive");
  check(t.valid_every >= 1, origin, "training.valid_every", "must be positive");
  check(t.valid_bleu_sentences >= 0, origin, "training.valid_bleu_sentences", "must be 0 (all) or positive");
  check(t.checkpoint_every >= 1, origin, "training.checkpoint_every", "must be positive");
  check(t.keep_checkpoints >= 1, origin, "training.keep_checkpoints", "must be at least 1");
  check(t.patience >= 0, origin, "training.patience", "must be 0 (off) or positive");
  check_one_of(t.best_metric, {"bleu", "chrf", "loss"}, origin, "training.best_metric");
  check(t.accumulate >= 1, origin, "training.accumulate", "must be at least 1");
  check(t.dist_timeout > 0, origin, "training.dist_timeout", "must be positive (seconds)");
  check(!c.output_dir.empty(), origin, "output_dir", "must not be empty");
}

std::string config_reference(bool markdown) {
  Config c;
  std::ostringstream out;
  if (markdown) out << "| key | default | meaning |\n|---|---|---|\n";
  ReferenceWriter rd(out, "data", markdown), rm(out, "model", markdown), rt(out, "training", markdown);
  c.data.visit(rd);
  c.model.visit(rm);
  c.training.visit(rt);
  const char* doc = "folder for checkpoints, logs and metrics";
  if (markdown)
    out << "| `output_dir` | `" << nlohmann::json(c.output_dir).dump() << "` | " << doc << " |\n";
  else
    out << "  output_dir = " << nlohmann::json(c.output_dir).dump() << "\n      " << doc << "\n";
  return out.str();
}

}  // namespace s2s
