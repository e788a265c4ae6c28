// chrF (Popović 2015) and chrF++ (Popović 2017, word_order = 2) exactly as sacreBLEU 2.6.0
// computes them, one reference per segment.
//
// Character n-grams are over Unicode code points, with all whitespace removed first unless
// `whitespace` is set. The statistics (hypothesis, reference and matched n-gram counts per order)
// add up over the corpus; the score is the F-beta of the precision and recall averaged over the
// orders that occur in both hypothesis and reference.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace s2s {

struct ChrfOptions {
  int char_order = 6;
  int word_order = 0;  // 2 gives chrF++
  double beta = 2.0;   // recall is beta times as important as precision
  bool lowercase = false;
  bool whitespace = false;     // keep whitespace inside character n-grams
  bool eps_smoothing = false;  // chrF++.py's epsilon smoothing instead of effective order ("eff:no")
};

struct ChrfOrderStats {
  int64_t hyp = 0, ref = 0, match = 0;
};

// Per order: the char_order character orders first, then the word_order word orders.
struct ChrfStats {
  std::vector<ChrfOrderStats> orders;
  ChrfStats& operator+=(const ChrfStats& other);  // an empty ChrfStats adopts the other's size
};

struct ChrfResult {
  double score = 0.0;  // 0..100
  std::string signature;  // e.g. "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:2.6.0"
  std::string name;       // "chrF2", or "chrF2++" for word_order 2
  std::string to_string() const;  // sacreBLEU's score line without the signature: "chrF2 = 56.65"
};

// All functions throw std::invalid_argument for negative orders, no order at all, or beta < 0.
ChrfStats chrf_sentence_stats(const std::string& hyp, const std::string& ref, const ChrfOptions& options);
ChrfResult chrf_from_stats(const ChrfStats& stats, const ChrfOptions& options);
// Throws std::invalid_argument if hyps and refs differ in size.
ChrfResult corpus_chrf(const std::vector<std::string>& hyps, const std::vector<std::string>& refs,
                       const ChrfOptions& options);
double sentence_chrf(const std::string& hyp, const std::string& ref, const ChrfOptions& options = {});

}  // namespace s2s
