// The benchmark's operation count (the benchmark's timings themselves are not tested).
#include <gtest/gtest.h>

#include "bench.h"

namespace s2s {
namespace {

TEST(BenchFlops, HandCountedSmallModel) {
  ModelConfig m;
  m.cell = "rnn";
  m.embedding_size = 2;
  m.hidden_size = 3;
  m.attention = "bahdanau";
  m.attention_size = 4;
  // One sentence, 2 source and 1 target positions, vocabulary 5. Multiply-adds:
  //   encoder 2 x (W_x 3x2 + W_hh 3x3) = 30; keys W_h h_i 2 x 4x3 = 24;
  //   attention for c_0 and s_1: 2 x (W_s 4x3 + scores 2x4 + context 2x3) = 52;
  //   decoder state W_x 3x2 + W_c 3x3 + W_hh 3x3 = 24; output layer 5x3 = 15.
  EXPECT_DOUBLE_EQ(forward_multiply_adds(m, 5, 1, 2, 1), 30 + 24 + 52 + 24 + 15);
  EXPECT_DOUBLE_EQ(training_flops(m, 5, 1, 2, 1), 6.0 * 145);
  // GRU: three gates in every recurrent product; bidirectional: two encoder directions and a bridge.
  m.cell = "gru";
  m.bidirectional = true;
  m.attention = "qkv";
  // encoder 2 directions x 2 x (9x2 + 9x3) = 180; bridge 3x6 = 18; keys and values 2 x 2 x 4x6 = 96;
  // attention 2 x (W_Q 4x3 + 2x4 + 2x4) = 56; decoder 9x2 + 9x4 + 9x3 = 81; output 15.
  EXPECT_DOUBLE_EQ(forward_multiply_adds(m, 5, 1, 2, 1), 180 + 18 + 96 + 56 + 81 + 15);
}

}  // namespace
}  // namespace s2s
