#include "data.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

#include <spdlog/spdlog.h>

#include "error.h"
#include "utf8.h"

namespace s2s {

std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open the file (does it exist and is it readable?)");
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (auto bad = utf8::find_invalid(line))
      throw Error(path + ":" + std::to_string(lines.size() + 1) + ": invalid UTF-8 at byte " + std::to_string(*bad + 1) +
                  " of the line");
    lines.push_back(std::move(line));
  }
  if (in.bad()) throw Error(path + ": read error");
  return lines;
}

void require_data_file(const std::string& key, const std::string& path) {
  namespace fs = std::filesystem;
  if (path.empty()) return;
  std::error_code ec;
  const auto status = fs::status(path, ec);
  std::string problem;
  if (!fs::exists(status))
    problem = "no such file";
  else if (fs::is_directory(status))
    problem = "a directory, not a file";
  else
    return;
  std::string where;
  if (fs::path(path).is_relative())
    where = " (a relative path is read from the current directory, " + fs::current_path(ec).string() + ")";
  throw Error(key + ": " + path + ": " + problem + where);
}

void require_data_files(const DataConfig& d) {
  for (const auto& [key, path] : {std::pair{"data.train_src", &d.train_src}, {"data.train_tgt", &d.train_tgt},
                                  {"data.valid_src", &d.valid_src}, {"data.valid_tgt", &d.valid_tgt},
                                  {"data.spm_model", &d.spm_model}, {"data.spm_model_tgt", &d.spm_model_tgt}})
    require_data_file(key, *path);
}

ParallelText read_tsv(const std::string& path) {
  ParallelText t;
  const auto lines = read_lines(path);
  for (size_t i = 0; i < lines.size(); ++i) {
    const auto& line = lines[i];
    const auto tab = line.find('\t');
    if (tab == std::string::npos)
      throw Error(path + ":" + std::to_string(i + 1) + ": no tab; a tab-separated corpus needs source<TAB>target");
    const auto end = line.find('\t', tab + 1);  // columns after the second are ignored (Tatoeba's attribution)
    t.src.push_back(line.substr(0, tab));
    t.tgt.push_back(line.substr(tab + 1, end == std::string::npos ? std::string::npos : end - tab - 1));
  }
  return t;
}

ParallelText read_parallel(const std::string& src_path, const std::string& tgt_path) {
  if (tgt_path.empty()) return read_tsv(src_path);
  ParallelText t;
  t.src = read_lines(src_path);
  t.tgt = read_lines(tgt_path);
  if (t.src.size() != t.tgt.size())
    throw Error("the two sides are not line-aligned: " + src_path + " has " + std::to_string(t.src.size()) +
                " lines, " + tgt_path + " has " + std::to_string(t.tgt.size()));
  return t;
}

std::vector<int64_t> TextCodec::encode_src(const std::string& line) const {
  auto ids = src_vocab.encode(src_tokenizer->tokenize(line));
  ids.push_back(Vocabulary::kEos);
  return ids;
}

std::vector<int64_t> TextCodec::encode_tgt(const std::string& line) const {
  return tgt_vocab.encode(tgt_tokenizer->tokenize(line));
}

std::string TextCodec::decode_tgt(const std::vector<int64_t>& ids) const {
  return tgt_tokenizer->detokenize(tgt_vocab.decode(ids));
}

nlohmann::json TextCodec::to_json() const {
  return {{"src_tokenizer", src_tokenizer->to_json()},
          {"tgt_tokenizer", tgt_tokenizer->to_json()},
          {"src_vocab", src_vocab.to_json()},
          {"tgt_vocab", tgt_vocab.to_json()}};
}

TextCodec TextCodec::from_json(const nlohmann::json& j) {
  TextCodec c;
  c.src_tokenizer = tokenizer_from_json(j.at("src_tokenizer"));
  // A joint model is written twice; read back, both sides share one tokenizer (and one helper process).
  c.tgt_tokenizer = j.at("tgt_tokenizer") == j.at("src_tokenizer") ? c.src_tokenizer
                                                                    : tokenizer_from_json(j.at("tgt_tokenizer"));
  c.src_vocab = Vocabulary::from_json(j.at("src_vocab"));
  c.tgt_vocab = Vocabulary::from_json(j.at("tgt_vocab"));
  return c;
}

namespace {

// Pieces of a SentencePiece model in Vocabulary's order: specials first (trained models have them at
// the same ids), then the model's pieces by id.
Vocabulary vocabulary_of(const SentencePieceTokenizer& tokenizer) {
  nlohmann::json tokens = Vocabulary::specials();
  for (const auto& p : tokenizer.pieces()) tokens.push_back(p);
  return Vocabulary::from_json(tokens);
}

std::shared_ptr<SentencePieceTokenizer> load_spm_model(const std::string& key, const std::string& path, bool lowercase) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(key + ": " + path + ": cannot open the SentencePiece model");
  std::ostringstream bytes;
  bytes << in.rdbuf();
  auto t = std::make_shared<SentencePieceTokenizer>(bytes.str(), lowercase, key + ": " + path);
  t->pieces();  // starts the helper: a file that is no model is reported here, naming the key
  return t;
}

TextCodec build_sentencepiece(const DataConfig& config, const ParallelText& train) {
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  TextCodec c;
  SentencePieceTrainOptions o;
  o.model_type = config.spm_model_type;
  o.vocab_size = config.vocab_size;
  o.lowercase = config.lowercase;
  std::string how;
  if (!config.spm_model.empty()) {
    c.src_tokenizer = load_spm_model("data.spm_model", config.spm_model, config.lowercase);
    c.tgt_tokenizer = config.spm_model_tgt.empty()
                          ? c.src_tokenizer
                          : load_spm_model("data.spm_model_tgt", config.spm_model_tgt, config.lowercase);
    how = "loaded from " + config.spm_model + (config.spm_model_tgt.empty() ? "" : " and " + config.spm_model_tgt);
  } else if (config.shared_vocab) {
    std::vector<std::string> both = train.src;
    both.insert(both.end(), train.tgt.begin(), train.tgt.end());
    c.src_tokenizer = SentencePieceTokenizer::train(both, o, "both sides of " + config.train_src);
    c.tgt_tokenizer = c.src_tokenizer;
    how = "one " + o.model_type + " model trained on both sides";
  } else {
    const std::string src_file = config.train_src + (config.train_tgt.empty() ? " (source column)" : "");
    const std::string tgt_file = config.train_tgt.empty() ? config.train_src + " (target column)" : config.train_tgt;
    c.src_tokenizer = SentencePieceTokenizer::train(train.src, o, src_file);
    c.tgt_tokenizer = SentencePieceTokenizer::train(train.tgt, o, tgt_file);
    how = "one " + o.model_type + " model per side";
  }
  c.src_vocab = vocabulary_of(static_cast<const SentencePieceTokenizer&>(*c.src_tokenizer));
  c.tgt_vocab = c.tgt_tokenizer == c.src_tokenizer
                    ? c.src_vocab
                    : vocabulary_of(static_cast<const SentencePieceTokenizer&>(*c.tgt_tokenizer));
  spdlog::info("[data] sentencepiece: {} in {:.1f} s", how,
               std::chrono::duration<double>(Clock::now() - t0).count());
  return c;
}

}  // namespace

TextCodec TextCodec::build(const DataConfig& config, const ParallelText& train) {
  if (config.tokenizer == "sentencepiece") return build_sentencepiece(config, train);
  if (config.tokenizer != "word") throw Error("data.tokenizer: \"" + config.tokenizer + "\" is not known");
  TextCodec c;
  WordTokenizerOptions o;
  o.lowercase = config.lowercase;
  o.split_punctuation = config.split_punctuation;
  c.src_tokenizer = std::make_shared<WordTokenizer>(o);
  c.tgt_tokenizer = c.src_tokenizer;
  std::map<std::string, int64_t> src_counts, tgt_counts;
  for (const auto& line : train.src)
    for (auto& t : c.src_tokenizer->tokenize(line)) ++src_counts[t];
  for (const auto& line : train.tgt)
    for (auto& t : c.tgt_tokenizer->tokenize(line)) ++tgt_counts[t];
  if (config.shared_vocab) {
    for (const auto& [t, n] : tgt_counts) src_counts[t] += n;
    c.src_vocab = Vocabulary::build(src_counts, config.min_freq, config.max_size);
    c.tgt_vocab = c.src_vocab;
  } else {
    c.src_vocab = Vocabulary::build(src_counts, config.min_freq, config.max_size);
    c.tgt_vocab = Vocabulary::build(tgt_counts, config.min_freq, config.max_size);
  }
  return c;
}

std::vector<Example> encode_corpus(const ParallelText& text, const TextCodec& codec, const DataConfig& config,
                                   bool filter, FilterStats* stats) {
  FilterStats s;
  std::vector<Example> out;
  out.reserve(text.src.size());
  const auto src_tokens = codec.src_tokenizer->tokenize_all(text.src);
  const auto tgt_tokens = codec.tgt_tokenizer->tokenize_all(text.tgt);
  for (size_t i = 0; i < text.src.size(); ++i) {
    ++s.read;
    Example e{codec.src_vocab.encode(src_tokens[i]), codec.tgt_vocab.encode(tgt_tokens[i])};
    e.src.push_back(Vocabulary::kEos);
    const auto ls = static_cast<int64_t>(e.src.size()) - 1, lt = static_cast<int64_t>(e.tgt.size());
    if (filter) {
      if (ls == 0 || lt == 0) { ++s.empty; continue; }
      if (ls > config.max_len || lt > config.max_len) { ++s.too_long; continue; }
      if (config.max_length_ratio > 0 &&
          static_cast<double>(std::max(ls, lt)) > config.max_length_ratio * static_cast<double>(std::min(ls, lt))) {
        ++s.bad_ratio;
        continue;
      }
    }
    out.push_back(std::move(e));
  }
  s.kept = static_cast<int64_t>(out.size());
  if (stats) *stats = s;
  return out;
}

Batch Batch::to(const torch::Device& device) const {
  Batch b = *this;
  b.src = src.to(device);
  b.src_lengths = src_lengths.to(device);
  if (tgt_in.defined()) {
    b.tgt_in = tgt_in.to(device);
    b.tgt_out = tgt_out.to(device);
  }
  return b;
}

Batch make_batch(const std::vector<Example>& examples, const std::vector<int64_t>& indices) {
  const auto n = static_cast<int64_t>(indices.size());
  TORCH_CHECK(n > 0, "make_batch: empty batch");
  int64_t max_src = 0, max_tgt = 0;
  for (auto i : indices) {
    max_src = std::max<int64_t>(max_src, examples[i].src.size());
    max_tgt = std::max<int64_t>(max_tgt, examples[i].tgt.size() + 1);
  }
  Batch b;
  b.indices = indices;
  b.src = torch::full({n, max_src}, Vocabulary::kPad, torch::kInt64);      // [batch, src_len]
  b.src_lengths = torch::empty({n}, torch::kInt64);                         // [batch]
  b.tgt_in = torch::full({n, max_tgt}, Vocabulary::kPad, torch::kInt64);   // [batch, tgt_len]
  b.tgt_out = torch::full({n, max_tgt}, Vocabulary::kPad, torch::kInt64);  // [batch, tgt_len]
  auto src = b.src.accessor<int64_t, 2>();
  auto len = b.src_lengths.accessor<int64_t, 1>();
  auto tin = b.tgt_in.accessor<int64_t, 2>();
  auto tout = b.tgt_out.accessor<int64_t, 2>();
  for (int64_t r = 0; r < n; ++r) {
    const auto& e = examples[indices[r]];
    const auto ls = static_cast<int64_t>(e.src.size()), lt = static_cast<int64_t>(e.tgt.size());
    for (int64_t k = 0; k < ls; ++k) src[r][k] = e.src[k];
    len[r] = ls;
    tin[r][0] = Vocabulary::kBos;
    for (int64_t k = 0; k < lt; ++k) {
      tin[r][k + 1] = e.tgt[k];
      tout[r][k] = e.tgt[k];
    }
    tout[r][lt] = Vocabulary::kEos;
    b.tgt_tokens += lt + 1;
    b.real_tokens += ls + lt + 1;
  }
  b.padded_tokens = n * (max_src + max_tgt);
  return b;
}

Batch pad_batch(const Batch& batch, int64_t rows, int64_t src_len, int64_t tgt_len) {
  const auto n = batch.src.size(0), s = batch.src.size(1), t = batch.tgt_in.size(1);
  TORCH_CHECK(batch.tgt_in.defined() && rows >= n && src_len >= s && tgt_len >= t,
              "pad_batch: the new shape [", rows, ", ", src_len, " + ", tgt_len, "] is smaller than the batch's [", n,
              ", ", s, " + ", t, "]");
  Batch b = batch;
  b.src = torch::full({rows, src_len}, Vocabulary::kPad, batch.src.options());
  b.src.narrow(0, 0, n).narrow(1, 0, s).copy_(batch.src);
  b.src.narrow(0, n, rows - n).select(1, 0).fill_(Vocabulary::kEos);  // empty sentences: </s> alone
  b.src_lengths = torch::ones({rows}, batch.src_lengths.options());
  b.src_lengths.narrow(0, 0, n).copy_(batch.src_lengths);
  b.tgt_in = torch::full({rows, tgt_len}, Vocabulary::kPad, batch.tgt_in.options());
  b.tgt_in.narrow(0, 0, n).narrow(1, 0, t).copy_(batch.tgt_in);
  b.tgt_in.narrow(0, n, rows - n).select(1, 0).fill_(Vocabulary::kBos);
  b.tgt_out = torch::full({rows, tgt_len}, Vocabulary::kPad, batch.tgt_out.options());
  b.tgt_out.narrow(0, 0, n).narrow(1, 0, t).copy_(batch.tgt_out);
  b.padded_tokens = rows * (src_len + tgt_len);
  return b;
}

Batch make_source_batch(const std::vector<std::vector<int64_t>>& sources) {
  const auto n = static_cast<int64_t>(sources.size());
  TORCH_CHECK(n > 0, "make_source_batch: empty batch");
  int64_t max_src = 1;
  for (const auto& s : sources) max_src = std::max<int64_t>(max_src, s.size());
  Batch b;
  b.src = torch::full({n, max_src}, Vocabulary::kPad, torch::kInt64);
  b.src_lengths = torch::empty({n}, torch::kInt64);
  auto src = b.src.accessor<int64_t, 2>();
  auto len = b.src_lengths.accessor<int64_t, 1>();
  for (int64_t r = 0; r < n; ++r) {
    for (size_t k = 0; k < sources[r].size(); ++k) src[r][k] = sources[r][k];
    len[r] = static_cast<int64_t>(sources[r].size());
    b.indices.push_back(r);
  }
  return b;
}

namespace {

// Fisher-Yates with our own bounded draw, so the order is the same with every standard library.
template <class T>
void shuffle(std::vector<T>& v, std::mt19937_64& rng) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = rng() % i;
    std::swap(v[i - 1], v[j]);
  }
}

int64_t length_key(const Example& e) { return static_cast<int64_t>(std::max(e.src.size(), e.tgt.size() + 1)); }

std::vector<std::vector<int64_t>> cut_batches(const std::vector<Example>& examples, const std::vector<int64_t>& order,
                                              int64_t batch_size, bool by_tokens) {
  std::vector<std::vector<int64_t>> batches;
  std::vector<int64_t> current;
  int64_t longest = 0;
  for (auto i : order) {
    const int64_t l = length_key(examples[i]);
    const bool full = by_tokens ? (!current.empty() && std::max(longest, l) * static_cast<int64_t>(current.size() + 1) >
                                                           batch_size)
                                : static_cast<int64_t>(current.size()) >= batch_size;
    if (full) {
      batches.push_back(std::move(current));
      current.clear();
      longest = 0;
    }
    current.push_back(i);
    longest = std::max(longest, l);
  }
  if (!current.empty()) batches.push_back(std::move(current));
  return batches;
}

}  // namespace

std::vector<std::vector<int64_t>> epoch_batches(const std::vector<Example>& examples, const BatchingOptions& options,
                                                int64_t epoch) {
  std::mt19937_64 rng(options.seed * 1000003ULL + static_cast<uint64_t>(epoch));
  std::vector<int64_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  shuffle(order, rng);
  // Bucketing: sort by length inside pools, so neighbours in a batch have similar lengths.
  const bool by_tokens = options.batch_type == "tokens";
  const int64_t pool = std::max<int64_t>(1, (by_tokens ? options.batch_size / 20 : options.batch_size) * 100);
  for (size_t start = 0; start < order.size(); start += pool) {
    const auto end = std::min(order.size(), start + static_cast<size_t>(pool));
    std::stable_sort(order.begin() + start, order.begin() + end,
                     [&](int64_t a, int64_t b) { return length_key(examples[a]) < length_key(examples[b]); });
  }
  auto batches = cut_batches(examples, order, options.batch_size, by_tokens);
  shuffle(batches, rng);
  return batches;
}

std::vector<std::vector<int64_t>> ordered_batches(const std::vector<Example>& examples, int64_t batch_size, bool sort) {
  std::vector<int64_t> order(examples.size());
  std::iota(order.begin(), order.end(), 0);
  if (sort)
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return examples[a].src.size() < examples[b].src.size(); });
  return cut_batches(examples, order, batch_size, false);
}

}  // namespace s2s
