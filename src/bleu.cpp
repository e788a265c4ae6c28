#include "bleu.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <unordered_map>

#include "sacrebleu_tokenize.h"

namespace s2s {
namespace {

using sacrebleu::Text;

constexpr int kMaxOrder = 4;

enum class SmoothMethod { kNone, kFloor, kAddK, kExp };

struct Smoothing {
  SmoothMethod method;
  double value;      // floor / add-k constant
  std::string name;  // as the signature shows it: "exp", "none", "floor[0.10]", "add-k[1.00]"
};

Smoothing parse_smoothing(const BleuOptions& options) {
  const std::string& m = options.smooth_method;
  if (m == "exp") return {SmoothMethod::kExp, 0.0, "exp"};
  if (m == "none") return {SmoothMethod::kNone, 0.0, "none"};
  if (m != "floor" && m != "add-k")
    throw std::invalid_argument("unknown BLEU smoothing method '" + m +
                                "' (supported: exp, none, floor, add-k)");
  const bool floor = m == "floor";
  const double value = options.smooth_value.value_or(floor ? 0.1 : 1.0);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s[%.2f]", m.c_str(), value);
  return {floor ? SmoothMethod::kFloor : SmoothMethod::kAddK, value, buf};
}

std::string signature(const BleuOptions& options, const Smoothing& smoothing, bool effective_order) {
  const auto tokenizer = sacrebleu::parse_tokenizer(options.tokenize);
  return std::string("nrefs:1|case:") + (options.lowercase ? "lc" : "mixed") +
         "|eff:" + (effective_order ? "yes" : "no") + "|tok:" + sacrebleu::tokenizer_name(tokenizer) +
         "|smooth:" + smoothing.name + "|version:" + sacrebleu::kVersion;
}

// sacreBLEU's per-segment preprocessing: optional str.lower(), str.rstrip(), the tokenizer,
// then str.split() into words.
std::vector<Text> words_of(const std::string& line, sacrebleu::Tokenizer tokenizer, bool lowercase) {
  Text text = sacrebleu::decode_utf8(line);
  if (lowercase) text = sacrebleu::lowercase(text);
  text = sacrebleu::tokenize(sacrebleu::rstrip_whitespace(text), tokenizer);
  return sacrebleu::split_whitespace(text);
}

// Counts of all n-grams of each order 1..4; an n-gram is its words joined by single spaces
// (unambiguous, since words contain no whitespace).
using NgramCounts = std::unordered_map<Text, int64_t>;

std::array<NgramCounts, kMaxOrder> count_ngrams(const std::vector<Text>& words) {
  std::array<NgramCounts, kMaxOrder> counts;
  for (int n = 1; n <= kMaxOrder; ++n) {
    for (size_t i = 0; i + n <= words.size(); ++i) {
      Text key = words[i];
      for (int k = 1; k < n; ++k) {
        key += U' ';
        key += words[i + k];
      }
      ++counts[n - 1][key];
    }
  }
  return counts;
}

// Python's math.log guarded as sacreBLEU's my_log: log(0) is a large negative number, not -inf.
double my_log(double x) { return x == 0.0 ? -9999999999.0 : std::log(x); }

}  // namespace

BleuStats& BleuStats::operator+=(const BleuStats& other) {
  for (int n = 0; n < kMaxOrder; ++n) {
    correct[n] += other.correct[n];
    total[n] += other.total[n];
  }
  sys_len += other.sys_len;
  ref_len += other.ref_len;
  return *this;
}

std::string BleuResult::to_string() const {
  std::string precision_str;
  for (int n = 0; n < kMaxOrder; ++n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%s%.1f", n ? "/" : "", precisions[n]);
    precision_str += buf;
  }
  const double ratio = ref_len ? static_cast<double>(sys_len) / static_cast<double>(ref_len) : 0.0;
  char buf[256];
  std::snprintf(buf, sizeof buf, "BLEU = %.2f %s (BP = %.3f ratio = %.3f hyp_len = %lld ref_len = %lld)",
                score, precision_str.c_str(), bp, ratio, static_cast<long long>(sys_len),
                static_cast<long long>(ref_len));
  return buf;
}

BleuStats bleu_sentence_stats(const std::string& hyp, const std::string& ref, const BleuOptions& options) {
  const auto tokenizer = sacrebleu::parse_tokenizer(options.tokenize);
  const std::vector<Text> hyp_words = words_of(hyp, tokenizer, options.lowercase);
  const std::vector<Text> ref_words = words_of(ref, tokenizer, options.lowercase);
  const auto hyp_ngrams = count_ngrams(hyp_words);
  const auto ref_ngrams = count_ngrams(ref_words);

  BleuStats stats;
  stats.sys_len = static_cast<int64_t>(hyp_words.size());
  stats.ref_len = static_cast<int64_t>(ref_words.size());  // the closest (only) reference
  for (int n = 0; n < kMaxOrder; ++n) {
    for (const auto& [ngram, count] : hyp_ngrams[n]) {
      stats.total[n] += count;
      // Clipping: an n-gram earns at most as many matches as the reference has copies of it.
      const auto it = ref_ngrams[n].find(ngram);
      if (it != ref_ngrams[n].end()) stats.correct[n] += std::min(count, it->second);
    }
  }
  return stats;
}

BleuResult bleu_from_stats(const BleuStats& stats, const BleuOptions& options) {
  const Smoothing smoothing = parse_smoothing(options);
  const bool effective_order = options.effective_order.value_or(false);

  BleuResult result;
  result.counts = stats.correct;
  result.totals = stats.total;
  result.sys_len = stats.sys_len;
  result.ref_len = stats.ref_len;
  result.signature = signature(options, smoothing, effective_order);

  // Brevity penalty: exp(1 - r/c) for a hypothesis shorter than the reference, 0 for an empty one.
  if (stats.sys_len < stats.ref_len) {
    result.bp = stats.sys_len > 0
                    ? std::exp(1.0 - static_cast<double>(stats.ref_len) / static_cast<double>(stats.sys_len))
                    : 0.0;
  } else {
    result.bp = 1.0;
  }

  // No match of any order: BLEU is 0 and so are all precisions, whatever the smoothing.
  if (std::all_of(stats.correct.begin(), stats.correct.end(), [](int64_t c) { return c == 0; })) {
    result.score = 0.0;
    return result;
  }

  // Precisions in percent. sacreBLEU's "exp" smoothing is NIST's (mteval-v13a): the k-th order
  // with no match, counting from the lowest, gets 100 / (2^k * total) instead of 0.
  // An order with no hypothesis n-grams at all (a hypothesis shorter than n words) stops the loop:
  // its precision stays 0. Without effective order that 0 still enters the geometric mean (as
  // log 0 = -9999999999, so BLEU is 0); with effective order the mean runs only over the orders
  // before it, which is what makes sentence BLEU of short sentences non-zero.
  double smooth_mteval = 1.0;
  int orders_in_mean = kMaxOrder;
  for (int n = 1; n <= kMaxOrder; ++n) {
    double correct = static_cast<double>(stats.correct[n - 1]);
    double total = static_cast<double>(stats.total[n - 1]);
    if (smoothing.method == SmoothMethod::kAddK && n > 1) {
      correct += smoothing.value;
      total += smoothing.value;
    }
    if (total == 0.0) break;
    if (effective_order) orders_in_mean = n;

    double& precision = result.precisions[n - 1];
    if (correct == 0.0) {
      if (smoothing.method == SmoothMethod::kExp) {
        smooth_mteval *= 2.0;
        precision = 100.0 / (smooth_mteval * total);
      } else if (smoothing.method == SmoothMethod::kFloor) {
        precision = 100.0 * smoothing.value / total;
      }
    } else {
      precision = 100.0 * correct / total;
    }
  }

  double log_sum = 0.0;
  for (int n = 0; n < orders_in_mean; ++n) log_sum += my_log(result.precisions[n]);
  result.score = result.bp * std::exp(log_sum / orders_in_mean);
  return result;
}

BleuResult corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs,
                       const BleuOptions& options) {
  if (hyps.size() != refs.size())
    throw std::invalid_argument("corpus_bleu: " + std::to_string(hyps.size()) + " hypotheses but " +
                                std::to_string(refs.size()) + " references; they must pair up line by line");
  sacrebleu::parse_tokenizer(options.tokenize);  // fail before the loop, not inside it
  BleuStats stats;
  for (size_t i = 0; i < hyps.size(); ++i) stats += bleu_sentence_stats(hyps[i], refs[i], options);
  return bleu_from_stats(stats, options);
}

BleuResult sentence_bleu_result(const std::string& hyp, const std::string& ref, const BleuOptions& options) {
  BleuOptions sentence_options = options;
  if (!sentence_options.effective_order) sentence_options.effective_order = true;
  return bleu_from_stats(bleu_sentence_stats(hyp, ref, sentence_options), sentence_options);
}

double sentence_bleu(const std::string& hyp, const std::string& ref, const BleuOptions& options) {
  return sentence_bleu_result(hyp, ref, options).score;
}

}  // namespace s2s
