// Sentence pairs of random ids for the update tests: varied lengths (so batches and shards get different
// padding), ids above the specials, </s> ending each source.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "data.h"

namespace s2s::testing {

// n pairs of 1..max_len source and target ids from [4, src_vocab) and [4, tgt_vocab).
inline std::vector<Example> random_examples(int n, uint32_t seed, int64_t src_vocab, int64_t tgt_vocab, int max_len) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> len(1, max_len);
  std::uniform_int_distribution<int> src_tok(4, static_cast<int>(src_vocab) - 1), tgt_tok(4, static_cast<int>(tgt_vocab) - 1);
  std::vector<Example> out;
  for (int i = 0; i < n; ++i) {
    Example e;
    for (int k = len(rng); k > 0; --k) e.src.push_back(src_tok(rng));
    e.src.push_back(3);  // </s>
    for (int k = len(rng); k > 0; --k) e.tgt.push_back(tgt_tok(rng));
    out.push_back(e);
  }
  return out;
}

}  // namespace s2s::testing
