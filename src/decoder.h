// The seed's decoder. With attention (A' = [W_x | W_hh | W_c], kept as three blocks that add up to it):
//   s_j = tanh(W_x x'_j + W_hh s_{j-1} + W_c c_{j-1} + b)          c_j, alpha_j = attention(s_j)
// Without attention ("none"): s_j = tanh(W_x x'_j + W_hh s_{j-1} + b).
// s_0 = h_m of the encoder (through a bridge tanh(W_bridge h + b_bridge) when the sizes differ or the
// encoder is bidirectional); c_0 is computed from s_0 before the first step. gru and lstm cells take
// [x'_j; c_{j-1}] as input and s_{j-1} as state.
// step() is the one place the update is written: teacher-forced training and search both call it.
#pragma once
#include <memory>

#include <torch/torch.h>

#include "attention.h"
#include "config.h"
#include "encoder.h"
#include "packed_gemm.h"
#include "rnn_cell.h"

namespace s2s {

struct DecoderState {
  CellState cell;          // s_j (and the lstm memory)
  torch::Tensor context;   // [batch, context] c_j, undefined without attention
  torch::Tensor weights;   // [batch, src_len] alpha_j, undefined without attention
  DecoderState index_select(const torch::Tensor& rows) const;
};

// The previous target token, embedded (x'_j) and projected (W_x x'_j + b), computed before the step.
struct StepInput {
  torch::Tensor embedding;   // [batch, emb]
  torch::Tensor projection;  // [batch, gates*hidden]
};

// The weights that every step multiplies by, each with its gradient made once per sequence
// (step_weight.h): W_c, the cell's W_hh and the attention's query projection.
struct DecoderStepWeights {
  StepWeight context, recurrent, query;
  PackedMatrix output;  // search (no grad, AVX-512F): the output layer's W^T packed once for all steps
};

class DecoderImpl : public torch::nn::Module {
 public:
  DecoderImpl(const ModelConfig& config, int64_t vocab_size, int64_t encoder_size);

  AttentionMemory prepare_memory(const EncoderOutput& encoded);
  DecoderState init_state(const EncoderOutput& encoded, const AttentionMemory& memory);
  // tokens: [batch] or [batch, len] -> embeddings and projections of the same leading shape.
  StepInput embed(const torch::Tensor& tokens);
  // weights: from step_weights() for the steps of a sequence (training, search), or null: plain products.
  DecoderState step(const StepInput& input, const DecoderState& prev, const AttentionMemory& memory,
                    DecoderStepWeights* weights = nullptr);
  DecoderStepWeights step_weights(int64_t steps, int64_t rows);
  // Logits from s_j (and for the deep output c_j, x'_j); works on [batch, H] or [batch, len, H]. weights:
  // a search's step_weights(), whose packed output layer serves steps of few rows.
  torch::Tensor output(const torch::Tensor& s, const torch::Tensor& context, const torch::Tensor& embedding,
                       const DecoderStepWeights* weights = nullptr);
  bool has_attention() const { return attention_ != nullptr; }
  // The attention that informed output y_j, the row that heat maps, alignments and --unk-replace show for
  // it: with output "state" (the page) alpha_{j-1}, whose context c_{j-1} enters s_j, from which y_j is
  // predicted (alpha_0 for y_1); with "deep" alpha_j, whose context c_j enters y_j's output layer itself.
  // (Bahdanau et al.'s alpha_i for y_i is the first kind: computed from s_{i-1}, it makes the c_i of s_i.)
  bool output_reads_step_attention() const { return deep_output_; }

  struct TeacherForced {
    torch::Tensor logits;           // [batch, tgt_len, vocab]
    torch::Tensor weights;          // [batch, tgt_len, src_len]: alpha_1 .. alpha_T; undefined without attention
    torch::Tensor initial_weights;  // [batch, src_len]: alpha_0, from s_0; undefined without attention
  };
  // sampling_ratio > 0: scheduled sampling (see decoder.cpp).
  TeacherForced forward(const EncoderOutput& encoded, const torch::Tensor& tgt_in, double sampling_ratio = 0);
  // The rows of output_reads_step_attention() for a teacher-forced pass: [batch, tgt_len, src_len].
  torch::Tensor output_attention(const TeacherForced& forced) const;

  torch::nn::Embedding embedding{nullptr};
  torch::Tensor W_x;       // [gates*hidden, emb]      block of A' for x'_j
  torch::Tensor W_c;       // [gates*hidden, context]  block of A' for c_{j-1} (attention only)
  torch::Tensor b;         // [gates*hidden]
  RecurrentCell cell{nullptr};  // W_hh: block of A' for s_{j-1}
  torch::Tensor W_bridge, b_bridge;  // [hidden, encoder_final], [hidden] (optional)
  torch::Tensor W_deep, b_deep;      // [deep, hidden + context + emb] (output = "deep")
  torch::Tensor W_out, b_out;        // [vocab, hidden or deep or emb], [vocab]

 private:
  std::shared_ptr<AttentionImpl> attention_;
  double dropout_;
  bool deep_output_, tied_;
};
TORCH_MODULE(Decoder);

}  // namespace s2s
