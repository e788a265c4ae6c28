// The seed's encoder: h_i = tanh(A [x_i; h_{i-1}] + b), stacked and optionally bidirectional.
// A is kept as two blocks, A = [W_x | W_hh]: W_x x_i + b is computed for all positions in one product.
#pragma once
#include <vector>

#include <torch/torch.h>

#include "config.h"
#include "rnn_cell.h"

namespace s2s {

struct EncoderOutput {
  torch::Tensor states;  // [batch, src_len, out_size]: h_i (both directions concatenated), zero on padding
  torch::Tensor final;   // [batch, out_size]: forward h_m (and backward h_1) of the top layer
  torch::Tensor final_memory;  // [batch, out_size]: lstm memory cells of the same, else undefined
  torch::Tensor mask;    // [batch, src_len] bool: true on real tokens
};

// One direction of one layer.
class RecurrentLayerImpl : public torch::nn::Module {
 public:
  RecurrentLayerImpl(int64_t input_size, int64_t hidden_size, CellType type);
  // inputs: [batch, len, input], padded at the end; mask: [batch, len]; lengths: [batch] int64, each >= 1.
  // Returns states [batch, len, hidden] (zero on padding) and the final state (at the last real token
  // going forward, at the first going backward).
  std::pair<torch::Tensor, CellState> forward(const torch::Tensor& inputs, const torch::Tensor& mask,
                                              const torch::Tensor& lengths, bool reverse);

  torch::Tensor W_x;  // [gates*hidden, input]
  torch::Tensor b;    // [gates*hidden]
  RecurrentCell cell{nullptr};
};
TORCH_MODULE(RecurrentLayer);

class EncoderImpl : public torch::nn::Module {
 public:
  EncoderImpl(const ModelConfig& config, int64_t vocab_size);
  EncoderOutput forward(const torch::Tensor& src, const torch::Tensor& lengths);
  int64_t output_size() const { return hidden_ * (bidirectional_ ? 2 : 1); }

  torch::nn::Embedding embedding{nullptr};

 private:
  int64_t hidden_;
  bool bidirectional_;
  double dropout_;
  std::vector<RecurrentLayer> forward_layers_, backward_layers_;
};
TORCH_MODULE(Encoder);

// A bidirectional layer off the CPU (on a GPU) runs its two directions in one loop, each step one batched
// product for both (encoder.cpp). On the CPU the directions run one after the other, each step's product
// from W_hh packed once (step_weight.h), unless switched here: the tests compare the two routes, and
// `s2s bench --cpu-kernels off` takes a GPU's route on the CPU.
void set_batched_directions_on_cpu(bool on);

}  // namespace s2s
