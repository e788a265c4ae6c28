// `s2s translate` and `s2s evaluate`: a checkpoint, text in, translations (and attention) out.
#pragma once
#include <istream>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "checkpoint.h"
#include "search.h"

namespace s2s {

struct Translation {
  std::string source;
  std::vector<std::string> source_tokens;  // as tokenised (unknown words kept as written)
  struct Output {
    std::string text;                         // detokenised
    std::vector<std::string> tokens;
    double score = 0;
    std::vector<std::vector<float>> attention;  // [tokens + 1 (</s>)][source_tokens + 1 (</s>)]
    std::optional<std::string> alignment;       // --alignment: Pharaoh links from the attention (alignment.h)
  };
  std::vector<Output> outputs;  // n-best, best first; empty for an empty input line
  // with_alignment (--alignment): every output has an "alignment" string, "" for an empty one.
  nlohmann::json to_json(bool with_alignment = false) const;
};

// --unk-replace: each "<unk>" in `output` becomes the source token with the highest weight in its
// attention row (the last column, the source's </s>, is not a candidate).
void replace_unknowns(std::vector<std::string>& output, const std::vector<std::vector<float>>& attention,
                      const std::vector<std::string>& source_tokens);

struct TranslatorOptions {
  SearchOptions search;
  int64_t batch_size = 32;
  bool unk_replace = false;  // replace <unk> by the source token with the highest attention weight
  bool alignment = false;    // give each output its word alignment to the source (alignment.h)
  // CPU, 2 or more threads: batches translated side by side on the worker threads (worker_threads.h),
  // one intra-op thread each, instead of one after the other with the operations split. The same
  // translations either way.
  bool batches_in_parallel = true;
};

// The checkpoints of an ensemble (search.h), each loaded onto `device`. Throws s2s::Error naming the
// file when one's tokenizers or vocabularies differ from the first's. `command` tags the log line.
std::vector<LoadedModel> load_ensemble(const std::vector<std::string>& paths, const torch::Device& device,
                                       const std::string& command);

class Translator {
 public:
  Translator(LoadedModel model, torch::Device device, TranslatorOptions options);
  // An ensemble: the models decode together (search.h); they share one codec (load_ensemble).
  Translator(std::vector<LoadedModel> models, torch::Device device, TranslatorOptions options);
  // Input order is kept; empty lines give empty translations.
  std::vector<Translation> translate(const std::vector<std::string>& lines);
  // The first model: its codec and config serve the whole ensemble.
  LoadedModel& loaded() { return models_.front(); }
  std::vector<Seq2Seq> models() const;
  const torch::Device& device() const { return device_; }
  // How many batches translate() runs side by side (1, or the worker threads).
  int64_t batches_at_once() const;

 private:
  std::vector<LoadedModel> models_;
  torch::Device device_;
  TranslatorOptions options_;
  bool parallel_batches_ = false;
  uint64_t lines_seen_ = 0;  // lines given to translate() so far: the sentence numbers that seed sampling
};

struct TranslateCommand {
  std::vector<std::string> checkpoints;  // two or more: an ensemble
  std::vector<std::string> sentences;  // if empty: read --input or stdin
  std::string input, output;
  std::string format = "text";         // "text" | "json"
  std::string attention_svg_dir;
  bool show_attention = false;
  std::string device = "auto";
  int64_t threads = 0;
  TranslatorOptions translator;
};
int run_translate(const TranslateCommand& cmd);

struct EvaluateCommand {
  std::vector<std::string> checkpoints;  // two or more: an ensemble
  std::string src, ref;
  bool json = false;
  std::string device = "auto";
  int64_t threads = 0;
  std::vector<int64_t> bucket_bounds{10, 20, 30, 40};  // upper bounds; the last bucket is open
  TranslatorOptions translator;
};
int run_evaluate(const EvaluateCommand& cmd);

}  // namespace s2s
