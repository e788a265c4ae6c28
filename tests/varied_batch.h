// A batch for the model tests that compare two ways of computing the same thing: sentences of many
// source lengths (so masks of many lengths) and 2 to 6 target tokens, ids above the specials.
#pragma once
#include <cstdint>
#include <numeric>
#include <vector>

#include "data.h"
#include "vocabulary.h"

namespace s2s::testing {

// `sentences` sentences; sentence k has 1 + (5k mod max_src) source words before </s>.
inline Batch varied_batch(int64_t vocab, int64_t sentences, int64_t max_src) {
  std::vector<Example> examples;
  for (int64_t k = 0; k < sentences; ++k) {
    Example e;
    for (int64_t i = 0; i < 1 + (k * 5) % max_src; ++i) e.src.push_back(4 + (k * 7 + i * 3) % (vocab - 4));
    e.src.push_back(Vocabulary::kEos);
    for (int64_t i = 0; i < 2 + k % 5; ++i) e.tgt.push_back(4 + (k * 5 + i * 11) % (vocab - 4));
    examples.push_back(e);
  }
  std::vector<int64_t> indices(examples.size());
  std::iota(indices.begin(), indices.end(), 0);
  return make_batch(examples, indices);
}

}  // namespace s2s::testing
