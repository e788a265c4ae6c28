// BLEU (Papineni et al., 2002) exactly as sacreBLEU 2.6.0 computes it, one reference per segment.
//
// Each segment is lowercased (optionally), right-stripped and tokenized (13a by default), then
// split on whitespace; its statistics are the clipped n-gram matches and the hypothesis n-gram
// counts for n = 1..4 plus both lengths. Corpus BLEU sums the statistics over all segments first
// and computes one score from the sums.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace s2s {

struct BleuOptions {
  bool lowercase = false;
  std::string tokenize = "13a";     // "13a" | "none" | "intl"
  std::string smooth_method = "exp";  // "exp" | "none" | "floor" | "add-k"
  std::optional<double> smooth_value;  // floor and add-k only; unset: 0.1 (floor), 1 (add-k)
  // Unset: the function's sacreBLEU default, off for corpus BLEU and on for sentence_bleu.
  std::optional<bool> effective_order;
};

// Sufficient statistics of BLEU; they add up over segments.
struct BleuStats {
  std::array<int64_t, 4> correct{}, total{};  // clipped matches / hypothesis n-grams, n = 1..4
  int64_t sys_len = 0, ref_len = 0;           // tokens
  BleuStats& operator+=(const BleuStats& other);
};

struct BleuResult {
  double score = 0.0;                       // 0..100
  std::array<int64_t, 4> counts{}, totals{};  // the statistics the score was computed from
  std::array<double, 4> precisions{};       // percent, after smoothing
  double bp = 0.0;                          // brevity penalty
  int64_t sys_len = 0, ref_len = 0;
  std::string signature;  // e.g. "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
  // sacreBLEU's score line without the signature:
  // "BLEU = 39.04 70.1/45.2/31.5/23.0 (BP = 1.000 ratio = 1.002 hyp_len = 12985 ref_len = 12955)"
  std::string to_string() const;
};

// All functions throw std::invalid_argument for an unknown tokenizer or smoothing method.
// An empty reference (which sacreBLEU refuses) is scored as a reference with no tokens.
BleuStats bleu_sentence_stats(const std::string& hyp, const std::string& ref, const BleuOptions& options);
// Corpus-level score from summed statistics (effective order off unless options say so).
BleuResult bleu_from_stats(const BleuStats& stats, const BleuOptions& options);
// Throws std::invalid_argument if hyps and refs differ in size.
BleuResult corpus_bleu(const std::vector<std::string>& hyps, const std::vector<std::string>& refs,
                       const BleuOptions& options);
// sacreBLEU's sentence_bleu(): exp smoothing and effective order by default.
BleuResult sentence_bleu_result(const std::string& hyp, const std::string& ref,
                                const BleuOptions& options = {});
double sentence_bleu(const std::string& hyp, const std::string& ref, const BleuOptions& options = {});

}  // namespace s2s
