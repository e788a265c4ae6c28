#include "translator.h"

#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <spdlog/spdlog.h>

#include "alignment.h"
#include "attention_plot.h"
#include "directories.h"
#include "error.h"
#include "metrics.h"
#include "runtime.h"
#include "utf8.h"
#include "worker_threads.h"

namespace s2s {
namespace fs = std::filesystem;

nlohmann::json Translation::to_json(bool with_alignment) const {
  auto one = [&](const Output& o) {
    // One row per output token; the row of the final </s> prediction is left out.
    auto rows = o.attention;
    rows.resize(std::min(rows.size(), o.tokens.size()));
    nlohmann::json j{{"output", o.text}, {"output_tokens", o.tokens}, {"score", o.score}, {"attention", rows}};
    if (o.alignment) j["alignment"] = *o.alignment;
    return j;
  };
  nlohmann::json j{{"source", source}, {"source_tokens", source_tokens}};
  if (outputs.empty()) {
    Output empty;
    if (with_alignment) empty.alignment = "";
    j.update(one(empty));
  } else {
    j.update(one(outputs[0]));
    if (outputs.size() > 1) {
      j["nbest"] = nlohmann::json::array();
      for (const auto& o : outputs) j["nbest"].push_back(one(o));
    }
  }
  return j;
}

std::vector<LoadedModel> load_ensemble(const std::vector<std::string>& paths, const torch::Device& device,
                                       const std::string& command) {
  if (paths.empty()) throw Error("no checkpoint given (--checkpoint)");
  std::vector<LoadedModel> models;
  nlohmann::json first_codec;
  for (const auto& path : paths) {
    models.push_back(load_model(path, device));
    const auto codec = models.back().codec.to_json();
    if (models.size() == 1) first_codec = codec;
    else if (codec != first_codec)
      throw Error(path + ": its vocabularies or tokenizers differ from " + paths.front() +
                  "'s: the models of an ensemble must share them (train them on the same data with the same data "
                  "settings)");
  }
  if (models.size() > 1)
    spdlog::info("[{}] an ensemble of {} models (the mean of their probabilities): {}", command, models.size(),
                 fmt::join(paths, ", "));
  return models;
}

Translator::Translator(LoadedModel model, torch::Device device, TranslatorOptions options)
    : Translator(std::vector<LoadedModel>{std::move(model)}, device, options) {}

Translator::Translator(std::vector<LoadedModel> models, torch::Device device, TranslatorOptions options)
    : models_(std::move(models)), device_(device), options_(options) {
  if (models_.empty()) throw Error("Translator: no model");
  bool any_attention = false;
  for (auto& m : models_) {
    m.model->to(device_);
    m.model->eval();
    any_attention |= m.model->decoder->has_attention();
  }
  if (options_.search.coverage_penalty != 0 && !any_attention)
    throw Error("--coverage-penalty: the model has no attention (model.attention \"none\"), so no coverage to measure");
  // On the CPU with 2 or more threads, whole batches side by side on the worker threads, one intra-op
  // thread each: a search step is many small operations that intra-op threads hardly split.
  const int threads = at::get_num_threads();
  parallel_batches_ = options_.batches_in_parallel && device_.is_cpu() && threads >= 2;
  if (parallel_batches_) worker_threads(threads);
}

std::vector<Seq2Seq> Translator::models() const {
  std::vector<Seq2Seq> models;
  for (const auto& m : models_) models.push_back(m.model);
  return models;
}

int64_t Translator::batches_at_once() const { return parallel_batches_ ? std::max(1, worker_thread_count()) : 1; }

void replace_unknowns(std::vector<std::string>& output, const std::vector<std::vector<float>>& attention,
                      const std::vector<std::string>& source_tokens) {
  for (size_t j = 0; j < output.size() && j < attention.size(); ++j) {
    if (output[j] != "<unk>") continue;
    const auto& row = attention[j];
    const auto n = std::min(row.size(), source_tokens.size());  // skip the </s> column
    if (n == 0) continue;
    output[j] = source_tokens[std::max_element(row.begin(), row.begin() + n) - row.begin()];
  }
}

std::vector<Translation> Translator::translate(const std::vector<std::string>& lines) {
  const auto& codec = models_.front().codec;
  std::vector<Translation> out(lines.size());
  std::vector<std::vector<int64_t>> sources;
  std::vector<size_t> which;  // line index of each non-empty source
  for (size_t i = 0; i < lines.size(); ++i) {
    out[i].source = lines[i];
    out[i].source_tokens = codec.src_tokenizer->tokenize(lines[i]);
    if (out[i].source_tokens.empty()) continue;
    auto ids = codec.src_vocab.encode(out[i].source_tokens);
    ids.push_back(Vocabulary::kEos);
    sources.push_back(std::move(ids));
    which.push_back(i);
  }
  // Sort by length so batches carry little padding; results do not depend on the batching.
  std::vector<size_t> order(sources.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return sources[a].size() < sources[b].size(); });
  const auto batch_size = static_cast<size_t>(options_.batch_size);
  const auto batches = (order.size() + batch_size - 1) / batch_size;
  std::vector<std::vector<std::vector<Hypothesis>>> results(batches);
  auto run_batch = [&](int64_t b) {
    const size_t start = static_cast<size_t>(b) * batch_size, end = std::min(order.size(), start + batch_size);
    std::vector<std::vector<int64_t>> chunk;
    for (size_t k = start; k < end; ++k) chunk.push_back(sources[order[k]]);
    auto models = this->models();
    const auto batch = make_source_batch(chunk).to(device_);
    if (options_.search.sampling) {
      std::vector<uint64_t> ids;  // each sentence's line number in all the lines this translator was given
      for (size_t k = start; k < end; ++k) ids.push_back(lines_seen_ + which[order[k]]);
      results[static_cast<size_t>(b)] = sample(models, batch, options_.search, ids);
    } else {
      results[static_cast<size_t>(b)] = search(models, batch, options_.search);
    }
  };
  if (parallel_batches_)
    parallel_tasks(static_cast<int64_t>(batches), run_batch);  // worker_threads.h
  else
    for (size_t b = 0; b < batches; ++b) run_batch(static_cast<int64_t>(b));
  lines_seen_ += lines.size();
  // Tokens to text here, on this thread (a SentencePiece codec talks to its helper process).
  for (size_t start = 0; start < order.size(); start += batch_size) {
    const size_t end = std::min(order.size(), start + batch_size);
    const auto& batch_results = results[start / batch_size];
    for (size_t k = start; k < end; ++k) {
      auto& t = out[which[order[k]]];
      for (const auto& h : batch_results[k - start]) {
        Translation::Output o;
        o.tokens = codec.tgt_vocab.decode(h.tokens);
        o.score = h.score;
        o.attention = h.attention;
        if (options_.unk_replace) replace_unknowns(o.tokens, o.attention, t.source_tokens);
        if (options_.alignment) o.alignment = to_pharaoh(hard_alignment(o.attention, t.source_tokens.size(), o.tokens.size()));
        o.text = codec.tgt_tokenizer->detokenize(o.tokens);
        t.outputs.push_back(std::move(o));
      }
    }
  }
  return out;
}

namespace {

AttentionMatrix attention_matrix(const Translation& t) {
  AttentionMatrix m;
  m.source_tokens = t.source_tokens;
  m.source_tokens.push_back("</s>");
  const auto& o = t.outputs.at(0);
  m.output_tokens = o.tokens;
  m.output_tokens.push_back("</s>");
  m.weights = o.attention;
  m.weights.resize(std::min(m.weights.size(), m.output_tokens.size()));
  m.output_tokens.resize(m.weights.size());
  return m;
}

// Reads lines as they arrive: a batch is translated when it is full or when no more input is waiting,
// so an interactive user gets each translation at once and a pipe is translated in batches.
class LineSource {
 public:
  LineSource(std::istream& in, bool is_stdin) : in_(in), is_stdin_(is_stdin) {}
  bool next_batch(size_t max_lines, std::vector<std::string>& lines, std::vector<bool>& bad) {
    lines.clear();
    bad.clear();
    std::string line;
    while (lines.size() < max_lines && std::getline(in_, line)) {
      ++line_number_;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (auto off = utf8::find_invalid(line)) {
        spdlog::error("[translate] input line {}: invalid UTF-8 at byte {}; writing an empty line for it",
                      line_number_, *off + 1);
        line.clear();
        bad.push_back(true);
      } else {
        bad.push_back(false);
      }
      lines.push_back(line);
      if (is_stdin_ && !more_waiting()) break;
    }
    return !lines.empty();
  }

 private:
  bool more_waiting() {
    if (in_.rdbuf()->in_avail() > 0) return true;
    pollfd p{STDIN_FILENO, POLLIN, 0};
    return ::poll(&p, 1, 0) > 0;
  }
  std::istream& in_;
  bool is_stdin_;
  int64_t line_number_ = 0;
};

}  // namespace

int run_translate(const TranslateCommand& cmd) {
  check_search_options(cmd.translator.search);
  configure_threads(cmd.threads, "translate");
  const auto device = resolve_device(cmd.device);
  Translator translator(load_ensemble(cmd.checkpoints, device, "translate"), device, cmd.translator);
  if (cmd.translator.alignment) {
    bool any_attention = false;
    for (const auto& m : translator.models()) any_attention |= m->decoder->has_attention();
    if (!any_attention)
      throw Error("--alignment: " + cmd.checkpoints.front() + (cmd.checkpoints.size() > 1 ? " and the others have" : " has") +
                  " no attention (model.attention \"none\"), so no alignment to read");
  }
  if (cmd.format != "text" && cmd.format != "json") throw Error("--format must be text or json");

  std::ofstream out_file;
  if (!cmd.output.empty()) {
    out_file.open(cmd.output);
    if (!out_file) throw Error(cmd.output + ": cannot open for writing");
  }
  std::ostream& out = cmd.output.empty() ? std::cout : out_file;
  if (!cmd.attention_svg_dir.empty()) ensure_directory(cmd.attention_svg_dir, "--attention-svg");
  int64_t sentence_number = 0;

  auto emit = [&](const std::vector<Translation>& results) {
    for (const auto& t : results) {
      ++sentence_number;
      if (cmd.format == "json") {
        out << t.to_json(cmd.translator.alignment).dump() << "\n";
      } else {
        // --alignment: Marian's layout, "translation ||| i-j ..."
        auto links = [&](const Translation::Output* o) {
          return cmd.translator.alignment ? " ||| " + (o && o->alignment ? *o->alignment : std::string()) : std::string();
        };
        if (t.outputs.size() > 1) {
          for (const auto& o : t.outputs) out << o.score << "\t" << o.text << links(&o) << "\n";
        } else {
          const auto* o = t.outputs.empty() ? nullptr : &t.outputs[0];
          out << (o ? o->text : "") << links(o) << "\n";
        }
      }
      const bool has_attention = !t.outputs.empty() && !t.outputs[0].attention.empty();
      if (has_attention && !cmd.attention_svg_dir.empty()) {
        std::ostringstream name;
        name << "sentence-" << std::setw(4) << std::setfill('0') << sentence_number << ".svg";
        const auto path = fs::path(cmd.attention_svg_dir) / name.str();
        std::ofstream svg(path);
        svg << attention_svg(attention_matrix(t), t.source);
        if (!svg) throw Error(path.string() + ": cannot write");
      }
      if (has_attention && cmd.show_attention) std::cerr << attention_terminal(attention_matrix(t), isatty(2)) << "\n";
    }
    out << std::flush;
  };

  if (!cmd.sentences.empty()) {
    emit(translator.translate(cmd.sentences));
    return 0;
  }
  std::ifstream in_file;
  if (!cmd.input.empty()) {
    in_file.open(cmd.input, std::ios::binary);
    if (!in_file) throw Error(cmd.input + ": cannot open the input file");
  }
  std::istream& in = cmd.input.empty() ? std::cin : in_file;
  LineSource source(in, cmd.input.empty());
  std::vector<std::string> lines;
  std::vector<bool> bad;
  bool any_bad = false;
  // A file or pipe is read as many batches at a time as the translator runs side by side.
  const auto lines_at_once = static_cast<size_t>(cmd.translator.batch_size * translator.batches_at_once());
  while (source.next_batch(lines_at_once, lines, bad)) {
    emit(translator.translate(lines));
    any_bad |= std::find(bad.begin(), bad.end(), true) != bad.end();
  }
  return any_bad ? 1 : 0;
}

int run_evaluate(const EvaluateCommand& cmd) {
  check_search_options(cmd.translator.search);
  configure_threads(cmd.threads, "evaluate");
  const auto device = resolve_device(cmd.device);
  if (cmd.src.empty() && !cmd.ref.empty())
    throw Error("evaluate: --ref needs --src (or give neither, for the checkpoint's data.test_src and data.test_tgt)");
  Translator translator(load_ensemble(cmd.checkpoints, device, "evaluate"), device, cmd.translator);
  const auto& checkpoint = cmd.checkpoints.front();  // the first model's config names the test set
  std::string src = cmd.src, ref = cmd.ref;  // without --ref, --src is tab-separated (read_parallel)
  if (src.empty()) {
    const auto& d = translator.loaded().config.data;
    if (d.test_src.empty())
      throw Error("evaluate: no --src, and the config in " + checkpoint + " has no data.test_src");
    src = d.test_src;
    ref = d.test_tgt;
    require_data_file("data.test_src of " + checkpoint, src);
    require_data_file("data.test_tgt of " + checkpoint, ref);
    spdlog::info("[evaluate] the checkpoint's test set: data.test_src {}{}", src, ref.empty() ? "" : ", data.test_tgt " + ref);
  }
  auto text = read_parallel(src, ref);
  const auto t0 = std::chrono::steady_clock::now();
  auto results = translator.translate(text.src);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::vector<std::string> hyps;
  for (const auto& r : results) hyps.push_back(r.outputs.empty() ? "" : r.outputs[0].text);

  const auto bleu = corpus_bleu(hyps, text.tgt, BleuOptions{});
  const auto chrf = corpus_chrf(hyps, text.tgt, ChrfOptions{});

  // Perplexity of the references under the model or the ensemble (teacher forcing).
  auto& loaded = translator.loaded();
  auto examples = encode_corpus(text, loaded.codec, loaded.config.data, /*filter=*/false, nullptr);
  auto models = translator.models();
  const auto loss = corpus_loss(models, examples, cmd.translator.batch_size, device);
  const double ppl = std::exp(loss.sum_nll / static_cast<double>(std::max<int64_t>(loss.tokens, 1)));

  // BLEU by source length (tokens of the source as tokenised), Bahdanau et al.'s Figure 2.
  nlohmann::json buckets = nlohmann::json::array();
  int64_t low = 1;
  for (size_t b = 0; b <= cmd.bucket_bounds.size(); ++b) {
    const bool open = b == cmd.bucket_bounds.size();
    const int64_t high = open ? std::numeric_limits<int64_t>::max() : cmd.bucket_bounds[b];
    BleuStats stats;
    int64_t n = 0;
    for (size_t i = 0; i < results.size(); ++i) {
      const auto len = static_cast<int64_t>(results[i].source_tokens.size());
      if (len < low || len > high) continue;
      stats += bleu_sentence_stats(hyps[i], text.tgt[i], BleuOptions{});
      ++n;
    }
    const std::string label = open ? std::to_string(low) + "+" : std::to_string(low) + "-" + std::to_string(high);
    buckets.push_back({{"min", low},
                       {"max", open ? nlohmann::json(nullptr) : nlohmann::json(high)},
                       {"label", label},
                       {"sentences", n},
                       {"bleu", n > 0 ? nlohmann::json(bleu_from_stats(stats, BleuOptions{}).score)
                                      : nlohmann::json(nullptr)}});
    if (!open) low = high + 1;  // (the open bucket's high is INT64_MAX: adding 1 would overflow)
  }
  // "a.pt", or "a.pt + b.pt" for an ensemble
  nlohmann::json j{{"model", fmt::format("{}", fmt::join(cmd.checkpoints, " + "))}, {"models", cmd.checkpoints}, {"src", src}, {"ref", ref},
                   {"sentences", text.src.size()}, {"beam", cmd.translator.search.beam_size},
                   {"bleu", bleu.score}, {"bleu_signature", bleu.signature}, {"bleu_detail", bleu.to_string()},
                   {"chrf", chrf.score}, {"chrf_signature", chrf.signature}, {"ppl", ppl},
                   {"translate_seconds", seconds}, {"sentences_per_second", text.src.size() / std::max(seconds, 1e-9)},
                   {"buckets", buckets}};
  if (cmd.json) {
    std::cout << j.dump(2) << "\n";
    return 0;
  }
  std::cout << bleu.to_string() << "  " << bleu.signature << "\n";
  std::cout << "chrF2 = " << std::fixed << std::setprecision(2) << chrf.score << "  " << chrf.signature << "\n";
  std::cout << "reference perplexity = " << ppl << "\n";
  std::cout << "translated " << text.src.size() << " sentences in " << seconds << " s ("
            << text.src.size() / std::max(seconds, 1e-9) << " sentences/s, beam " << cmd.translator.search.beam_size
            << ")\n\nBLEU by source length (tokens):\n";
  for (const auto& b : buckets) {
    std::cout << "  " << std::setw(6) << b["label"].get<std::string>() << "  " << std::setw(5)
              << b["sentences"].get<int64_t>() << " sentences  BLEU ";
    if (b["bleu"].is_null()) std::cout << "  -\n";
    else std::cout << std::setw(6) << b["bleu"].get<double>() << "\n";
  }
  return 0;
}

}  // namespace s2s
