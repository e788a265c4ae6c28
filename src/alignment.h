// Word alignments read off the attention weights, in the "Pharaoh" format of Moses, fast_align and
// Marian ("i-j": source token i aligns to target token j, both 0-based), and their alignment error rate
// against a gold standard (Och & Ney, 2003).
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace s2s {

using AlignmentLinks = std::vector<std::pair<int64_t, int64_t>>;  // (source i, target j), sorted by j then i

// Each of the first `target_tokens` rows of `attention` (one row per output token; a row may hold a
// last column for the source's </s>) aligns its target token to the real source token (of the first
// `source_tokens` columns) with the highest weight; the first one on a tie.
AlignmentLinks hard_alignment(const std::vector<std::vector<float>>& attention, size_t source_tokens,
                              size_t target_tokens);

std::string to_pharaoh(const AlignmentLinks& links);

// A gold alignment line: "i-j" links are sure, "i?j" links only possible (as in the hand-aligned test
// sets that mark sure and possible links); sure links count as possible too. Throws s2s::Error on a
// malformed item, naming `where` (file:line).
struct GoldAlignment {
  AlignmentLinks sure, possible;  // possible includes sure
};
GoldAlignment parse_gold_alignment(const std::string& line, const std::string& where);

// Corpus totals over sentences: AER = 1 - (|A & S| + |A & P|) / (|A| + |S|), precision |A & P| / |A|,
// recall |A & S| / |S|. With only sure links, AER = 1 - F1.
// `offsets`: for each target token with exactly one sure link and one predicted link, how far the
// predicted source token lies from the sure one (predicted i - sure i): counts by offset. An attention
// that looks one word late shows as a peak at +1.
struct AlignmentScore {
  int64_t predicted = 0, sure = 0, predicted_and_sure = 0, predicted_and_possible = 0;
  std::map<int64_t, int64_t> offsets;
  void add(const AlignmentLinks& predicted, const GoldAlignment& gold);
  double aer() const;
  double precision() const;
  double recall() const;
};

}  // namespace s2s
