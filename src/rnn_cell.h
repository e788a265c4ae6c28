// The recurrent update shared by the encoder and the decoder.
//
// The input part of every update (A_x x_t + b, plus A_c c_{t-1} in the decoder) is computed by the
// owner and passed in as `x_proj`, so that the encoder and the decoder can compute it for all time
// steps in one matrix product. The cell adds the recurrent part:
//   rnn  : h_t = tanh(x_proj + W_hh h_{t-1})                     (the seed's Simple RNN)
//   gru  : [r z n] gates as in Cho et al. (2014) / PyTorch's GRU, with bias b_hh on the recurrent side
//   lstm : [i f g o] gates as in PyTorch's LSTM; the state carries the memory cell
#pragma once
#include <string>

#include <torch/torch.h>

#include "step_weight.h"

namespace s2s {

enum class CellType { RNN, GRU, LSTM };
CellType cell_type_from_string(const std::string& name);
int64_t gate_count(CellType type);  // 1, 3, 4: rows of x_proj per hidden unit

struct CellState {
  torch::Tensor h;  // [batch, hidden]
  torch::Tensor c;  // [batch, hidden], LSTM memory cell; undefined for rnn and gru
  CellState index_select(const torch::Tensor& rows) const;
};

// One step's gate arithmetic, given recurrent(c) = c + W_hh h_{t-1} (c: x_proj for rnn and lstm, the
// recurrent bias b_hh for gru). Gates lie along the last dimension: x_proj [..., gates*hidden], states
// [..., hidden], so a stack of cells' steps ([directions, batch, ...]) goes through as one.
// (A template: it runs at every step of every recurrence, and a std::function of the callers' lambdas
// would allocate each time.)
template <class Recurrent>
CellState cell_update(CellType type, const torch::Tensor& x_proj, const CellState& prev, const torch::Tensor& b_hh,
                      const Recurrent& recurrent) {
  switch (type) {
    case CellType::RNN:
      return {torch::tanh(recurrent(x_proj)), {}};
    case CellType::GRU: {
      auto hh = recurrent(b_hh).chunk(3, -1);  // [..., hidden] x 3
      auto xx = x_proj.chunk(3, -1);
      auto r = torch::sigmoid(xx[0] + hh[0]);
      auto z = torch::sigmoid(xx[1] + hh[1]);
      auto n = torch::tanh(xx[2] + r * hh[2]);
      return {(1 - z) * n + z * prev.h, {}};
    }
    case CellType::LSTM: {
      auto g = recurrent(x_proj).chunk(4, -1);
      auto i = torch::sigmoid(g[0]), f = torch::sigmoid(g[1]), o = torch::sigmoid(g[3]);
      auto c = f * prev.c + i * torch::tanh(g[2]);
      return {o * torch::tanh(c), c};
    }
  }
  return {};
}

class RecurrentCellImpl : public torch::nn::Module {
 public:
  RecurrentCellImpl(int64_t hidden_size, CellType type);
  // x_proj: [batch, gates*hidden]. w_hh: W_hh as a sequence's StepWeight (training; see recurrent_weight),
  // or null for a plain product.
  CellState step(const torch::Tensor& x_proj, const CellState& prev, StepWeight* w_hh = nullptr) const;
  // W_hh for a sequence of `steps` steps of `rows` rows, its gradient made once (step_weight.h).
  StepWeight recurrent_weight(int64_t steps, int64_t rows) const { return StepWeight(W_hh, steps, rows); }
  CellState initial_state(const torch::Tensor& h0) const;                     // memory cell zeros for lstm
  CellType type() const { return type_; }
  int64_t hidden_size() const { return hidden_; }

  torch::Tensor W_hh;  // [gates*hidden, hidden]
  torch::Tensor b_hh;  // [gates*hidden], gru only (the r * (W_hn h + b_hn) term needs it)

 private:
  int64_t hidden_;
  CellType type_;
};
TORCH_MODULE(RecurrentCell);

}  // namespace s2s
