#include "chrf.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <string_view>
#include <unordered_map>

#include "sacrebleu_tokenize.h"

namespace s2s {
namespace {

using sacrebleu::Text;
using Counts = std::unordered_map<std::u32string_view, int64_t>;

void check_options(const ChrfOptions& options) {
  if (options.char_order < 0 || options.word_order < 0 || options.char_order + options.word_order == 0)
    throw std::invalid_argument("chrF: char_order (" + std::to_string(options.char_order) +
                                ") and word_order (" + std::to_string(options.word_order) +
                                ") must be >= 0 and not both 0");
  if (!(options.beta >= 0.0) || !std::isfinite(options.beta))
    throw std::invalid_argument("chrF: beta must be a finite number >= 0, got " + std::to_string(options.beta));
}

// Character n-grams of order n, as views into `text` (which must outlive the counts).
Counts char_ngrams(const Text& text, int n) {
  Counts counts;
  const std::u32string_view view(text);
  for (size_t i = 0; i + n <= text.size(); ++i) ++counts[view.substr(i, n)];
  return counts;
}

// Word n-grams of order n over `words`; the n-grams are stored, joined by spaces, in `storage`
// (reserved up front so that the views stay valid).
Counts word_ngrams(const std::vector<Text>& words, int n, std::vector<Text>& storage) {
  Counts counts;
  if (words.size() < static_cast<size_t>(n)) return counts;
  storage.clear();
  storage.reserve(words.size() - n + 1);
  for (size_t i = 0; i + n <= words.size(); ++i) {
    Text key = words[i];
    for (int k = 1; k < n; ++k) {
      key += U' ';
      key += words[i + k];
    }
    storage.push_back(std::move(key));
    ++counts[storage.back()];
  }
  return counts;
}

bool is_ascii_punctuation(char32_t c) {  // Python's string.punctuation
  return (c >= U'!' && c <= U'/') || (c >= U':' && c <= U'@') || (c >= U'[' && c <= U'`') ||
         (c >= U'{' && c <= U'~');
}

// chrF++'s word splitting (after m-popovic/chrF): split on whitespace, then detach ONE ASCII
// punctuation mark from the end of a word or, failing that, from its start. So "(hi)" gives
// "(hi" and ")", and "hi." gives "hi" and "."; a one-character word stays whole.
std::vector<Text> words_for_chrf(const Text& text) {
  std::vector<Text> words;
  for (Text& w : sacrebleu::split_whitespace(text)) {
    if (w.size() > 1 && is_ascii_punctuation(w.back())) {
      words.push_back(w.substr(0, w.size() - 1));
      words.push_back(w.substr(w.size() - 1));
    } else if (w.size() > 1 && is_ascii_punctuation(w.front())) {
      words.push_back(w.substr(0, 1));
      words.push_back(w.substr(1));
    } else {
      words.push_back(std::move(w));
    }
  }
  return words;
}

// Hypothesis, reference and clipped match counts for one order. When the reference has no
// n-gram of this order, the hypothesis count is recorded as 0 too (sacreBLEU does this so that
// the order drops out of the effective-order average instead of counting as precision 0).
ChrfOrderStats match_stats(const Counts& hyp, const Counts& ref) {
  ChrfOrderStats s;
  int64_t hyp_count = 0;
  for (const auto& [ngram, count] : hyp) {
    hyp_count += count;
    const auto it = ref.find(ngram);
    if (it != ref.end()) s.match += std::min(count, it->second);
  }
  s.hyp = ref.empty() ? 0 : hyp_count;
  for (const auto& entry : ref) s.ref += entry.second;
  return s;
}

// Removes all whitespace: Python's ''.join(line.split()).
Text without_whitespace(const Text& text) {
  Text out;
  out.reserve(text.size());
  for (char32_t c : text)
    if (!sacrebleu::is_space(c)) out += c;
  return out;
}

std::string format_beta(double beta) {
  char buf[32];
  if (beta == std::floor(beta) && beta < 1e9)
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(beta));
  else
    std::snprintf(buf, sizeof buf, "%g", beta);
  return buf;
}

}  // namespace

ChrfStats& ChrfStats::operator+=(const ChrfStats& other) {
  if (orders.empty()) orders.resize(other.orders.size());
  if (orders.size() != other.orders.size())
    throw std::invalid_argument("ChrfStats: cannot add statistics with " + std::to_string(other.orders.size()) +
                                " orders to statistics with " + std::to_string(orders.size()));
  for (size_t i = 0; i < orders.size(); ++i) {
    orders[i].hyp += other.orders[i].hyp;
    orders[i].ref += other.orders[i].ref;
    orders[i].match += other.orders[i].match;
  }
  return *this;
}

std::string ChrfResult::to_string() const {
  char buf[64];
  std::snprintf(buf, sizeof buf, " = %.2f", score);
  return name + buf;
}

ChrfStats chrf_sentence_stats(const std::string& hyp, const std::string& ref, const ChrfOptions& options) {
  check_options(options);
  Text hyp_text = sacrebleu::decode_utf8(hyp);
  Text ref_text = sacrebleu::decode_utf8(ref);
  if (options.lowercase) {
    hyp_text = sacrebleu::lowercase(hyp_text);
    ref_text = sacrebleu::lowercase(ref_text);
  }

  ChrfStats stats;
  // Character n-grams: by default over the line with every whitespace character deleted, so
  // n-grams span word boundaries ("a cat" gives the bigram "ac"). With `whitespace` the line is
  // used as is, leading and trailing whitespace included.
  const Text hyp_chars = options.whitespace ? hyp_text : without_whitespace(hyp_text);
  const Text ref_chars = options.whitespace ? ref_text : without_whitespace(ref_text);
  for (int n = 1; n <= options.char_order; ++n)
    stats.orders.push_back(match_stats(char_ngrams(hyp_chars, n), char_ngrams(ref_chars, n)));

  // Word n-grams (chrF++), from the whitespace-separated words with punctuation detached.
  if (options.word_order > 0) {
    const std::vector<Text> hyp_words = words_for_chrf(hyp_text);
    const std::vector<Text> ref_words = words_for_chrf(ref_text);
    std::vector<Text> hyp_storage, ref_storage;
    for (int n = 1; n <= options.word_order; ++n) {
      const Counts h = word_ngrams(hyp_words, n, hyp_storage);
      const Counts r = word_ngrams(ref_words, n, ref_storage);
      stats.orders.push_back(match_stats(h, r));
    }
  }
  return stats;
}

ChrfResult chrf_from_stats(const ChrfStats& stats, const ChrfOptions& options) {
  check_options(options);
  const size_t num_orders = static_cast<size_t>(options.char_order + options.word_order);
  if (!stats.orders.empty() && stats.orders.size() != num_orders)
    throw std::invalid_argument("chrF: statistics have " + std::to_string(stats.orders.size()) +
                                " orders but the options ask for " + std::to_string(num_orders));

  ChrfResult result;
  result.name = "chrF" + format_beta(options.beta) + std::string(options.word_order, '+');
  result.signature = std::string("nrefs:1|case:") + (options.lowercase ? "lc" : "mixed") +
                     "|eff:" + (options.eps_smoothing ? "no" : "yes") +
                     "|nc:" + std::to_string(options.char_order) + "|nw:" + std::to_string(options.word_order) +
                     "|space:" + (options.whitespace ? "yes" : "no") + "|version:" + sacrebleu::kVersion;
  if (stats.orders.empty()) return result;  // no segments: 0

  const double factor = options.beta * options.beta;
  const double eps = 1e-16;
  double eps_f_sum = 0.0;               // for eps_smoothing: the mean of the per-order F scores
  double avg_prec = 0.0, avg_rec = 0.0;  // otherwise: the F score of the mean P and R
  int effective_order = 0;
  for (const ChrfOrderStats& s : stats.orders) {
    const double prec = s.hyp > 0 ? static_cast<double>(s.match) / static_cast<double>(s.hyp) : eps;
    const double rec = s.ref > 0 ? static_cast<double>(s.match) / static_cast<double>(s.ref) : eps;
    const double denom = factor * prec + rec;
    eps_f_sum += denom > 0 ? (1 + factor) * prec * rec / denom : eps;
    // Effective order: only orders present in both hypothesis and reference are averaged.
    if (s.hyp > 0 && s.ref > 0) {
      avg_prec += prec;
      avg_rec += rec;
      ++effective_order;
    }
  }

  if (options.eps_smoothing) {
    result.score = 100 * eps_f_sum / static_cast<double>(num_orders);
    return result;
  }
  if (effective_order > 0) {
    avg_prec /= effective_order;
    avg_rec /= effective_order;
  }
  if (avg_prec + avg_rec != 0.0) {
    double score = (1 + factor) * avg_prec * avg_rec;
    score /= factor * avg_prec + avg_rec;
    result.score = 100 * score;
  }
  return result;
}

ChrfResult corpus_chrf(const std::vector<std::string>& hyps, const std::vector<std::string>& refs,
                       const ChrfOptions& options) {
  if (hyps.size() != refs.size())
    throw std::invalid_argument("corpus_chrf: " + std::to_string(hyps.size()) + " hypotheses but " +
                                std::to_string(refs.size()) + " references; they must pair up line by line");
  check_options(options);
  ChrfStats stats;
  for (size_t i = 0; i < hyps.size(); ++i) stats += chrf_sentence_stats(hyps[i], refs[i], options);
  return chrf_from_stats(stats, options);
}

double sentence_chrf(const std::string& hyp, const std::string& ref, const ChrfOptions& options) {
  return chrf_from_stats(chrf_sentence_stats(hyp, ref, options), options).score;
}

}  // namespace s2s
