#include "encoder.h"

#include <atomic>

#include "random.h"

namespace s2s {

RecurrentLayerImpl::RecurrentLayerImpl(int64_t input_size, int64_t hidden_size, CellType type) {
  const auto g = gate_count(type);
  W_x = register_parameter("W_x", torch::empty({g * hidden_size, input_size}));
  b = register_parameter("b", torch::zeros({g * hidden_size}));
  cell = register_module("cell", RecurrentCell(hidden_size, type));
}

namespace {

std::atomic<bool> batched_on_cpu{false};

// Each row's states at its last real position: [batch, len, hidden] -> [batch, hidden].
torch::Tensor at_last_token(const torch::Tensor& steps, const torch::Tensor& last) {
  return steps.gather(1, last.expand({steps.size(0), 1, steps.size(2)})).squeeze(1);
}

// Going backward, the position that step t of each row reads: L_b - 1 - t on a real token, t on
// padding. [batch, len, 1]; gathering by it twice puts a row back in order.
torch::Tensor reversed_order(const torch::Tensor& mask, const torch::Tensor& lengths) {
  const auto positions = torch::arange(mask.size(1), lengths.options()).unsqueeze(0);  // [1, len]
  return torch::where(mask, lengths.unsqueeze(1) - 1 - positions, positions).unsqueeze(2);
}

struct BothDirections {
  torch::Tensor states;  // [batch, len, 2 hidden], zero on padding
  CellState forward_final, backward_final;
};

// Both directions of a bidirectional layer in one loop: the two directions' inputs, weights and states
// stacked ([2, batch, ...]), each step one batched product for both and one pass of the gate arithmetic.
// The same arithmetic as RecurrentLayerImpl::forward for each direction, with half the operations per
// step: on a GPU, where each is a kernel launch, the encoder's steps launch half as many.
BothDirections both_directions(RecurrentLayerImpl& fwd, RecurrentLayerImpl& bwd, const torch::Tensor& inputs,
                               const torch::Tensor& mask, const torch::Tensor& lengths) {
  const auto batch = inputs.size(0), len = inputs.size(1);
  const auto type = fwd.cell->type();
  const auto H = fwd.cell->hidden_size();
  const auto order = reversed_order(mask, lengths);
  const auto reversed = inputs.gather(1, order.expand({batch, len, inputs.size(2)}));
  const auto x = torch::stack({inputs, reversed}).view({2, batch * len, inputs.size(2)});
  const auto b = torch::stack({fwd.b, bwd.b}).unsqueeze(1);  // [2, 1, G*H]
  const auto x_proj = torch::baddbmm(b, x, torch::stack({fwd.W_x, bwd.W_x}).transpose(1, 2))
                          .view({2, batch, len, -1});  // [2, B, L, G*H]
  const auto b_hh = type == CellType::GRU ? torch::stack({fwd.cell->b_hh, bwd.cell->b_hh}).unsqueeze(1) : torch::Tensor();
  StepWeight w_hh(torch::stack({fwd.cell->W_hh, bwd.cell->W_hh}), len, batch);  // [2, G*H, H]
  const auto zeros = torch::zeros({2, batch, H}, inputs.options());
  CellState state{zeros, type == CellType::LSTM ? zeros : torch::Tensor()};
  std::vector<torch::Tensor> outputs(len), memories;
  const auto x_steps = x_proj.unbind(2);  // each [2, B, G*H]
  for (int64_t t = 0; t < len; ++t) {
    state = cell_update(type, x_steps[t], state, b_hh,
                        [&](const torch::Tensor& c) { return w_hh.addmm(c, state.h); });
    outputs[t] = state.h;
    if (state.c.defined()) memories.push_back(state.c);
  }
  const auto steps = torch::stack(outputs, 2);  // [2, B, L, H] in the order the steps ran
  const auto last = (lengths - 1).view({1, batch, 1, 1}).expand({2, batch, 1, H});
  const auto final_h = steps.gather(2, last).squeeze(2);  // [2, B, H]
  const auto final_c = memories.empty() ? torch::Tensor() : torch::stack(memories, 2).gather(2, last).squeeze(2);
  BothDirections out;
  out.forward_final = {final_h[0], final_c.defined() ? final_c[0] : torch::Tensor()};
  out.backward_final = {final_h[1], final_c.defined() ? final_c[1] : torch::Tensor()};
  const auto backward_states = steps[1].gather(1, order.expand({batch, len, H}));  // back to source order
  out.states = torch::cat({steps[0], backward_states}, 2) * mask.unsqueeze(2).to(inputs.dtype());
  return out;
}

}  // namespace

void set_batched_directions_on_cpu(bool on) { batched_on_cpu.store(on); }

std::pair<torch::Tensor, CellState> RecurrentLayerImpl::forward(const torch::Tensor& inputs, const torch::Tensor& mask,
                                                               const torch::Tensor& lengths, bool reverse) {
  const auto batch = inputs.size(0), len = inputs.size(1);
  // Sentences are padded at the end, so every row runs from position 0 to its length - 1 from a zero
  // state. Going backward, a row reads its own tokens in reverse: position t of row b from position
  // L_b - 1 - t (padding stays where it is). Then no step needs the mask: what the steps compute past a
  // row's end is never read (its outputs are zeroed below and its final state is taken at its last
  // token), and its gradient is zero. On a GPU that is 4 kernels fewer per step than keeping the state
  // at padding with a where() forward and its two backward.
  torch::Tensor order;  // reverse: [batch, len, 1], the position each step reads
  auto x = inputs;
  if (reverse) {
    order = reversed_order(mask, lengths);
    x = inputs.gather(1, order.expand({batch, len, inputs.size(2)}));
  }
  auto x_proj = torch::addmm(b, x.reshape({batch * len, -1}), W_x.t()).view({batch, len, -1});  // [B, L, G*H]
  auto state = cell->initial_state(torch::zeros({batch, cell->hidden_size()}, inputs.options()));
  std::vector<torch::Tensor> outputs(len), memories;
  // unbind, not select(1, t) per step: its backward is one stack of the steps' gradients, where each
  // select's would fill a whole [B, L, G*H] tensor with zeros and add it up, step after step.
  const auto x_steps = x_proj.unbind(1);
  auto w_hh = cell->recurrent_weight(len, batch);
  for (int64_t t = 0; t < len; ++t) {
    state = cell->step(x_steps[t], state, &w_hh);
    outputs[t] = state.h;
    if (state.c.defined()) memories.push_back(state.c);
  }
  auto steps = torch::stack(outputs, 1);  // [B, L, H] in the order the steps ran
  const auto last = (lengths - 1).view({batch, 1, 1});
  CellState final{at_last_token(steps, last),
                  memories.empty() ? torch::Tensor() : at_last_token(torch::stack(memories, 1), last)};
  if (reverse) steps = steps.gather(1, order.expand({batch, len, steps.size(2)}));  // back to source order
  auto states = steps * mask.unsqueeze(2).to(inputs.dtype());  // [B, L, H], zero on padding
  return {states, final};
}

EncoderImpl::EncoderImpl(const ModelConfig& config, int64_t vocab_size)
    : hidden_(config.hidden_size), bidirectional_(config.bidirectional), dropout_(config.dropout) {
  const auto type = cell_type_from_string(config.cell);
  embedding = register_module("embedding", torch::nn::Embedding(vocab_size, config.embedding_size));
  int64_t input = config.embedding_size;
  for (int64_t l = 0; l < config.encoder_layers; ++l) {
    forward_layers_.push_back(register_module("l" + std::to_string(l) + "_fwd", RecurrentLayer(input, hidden_, type)));
    if (bidirectional_)
      backward_layers_.push_back(
          register_module("l" + std::to_string(l) + "_bwd", RecurrentLayer(input, hidden_, type)));
    input = output_size();
  }
}

EncoderOutput EncoderImpl::forward(const torch::Tensor& src, const torch::Tensor& lengths) {
  TORCH_CHECK(src.dim() == 2, "encoder: src must be [batch, src_len], got ", src.sizes());
  TORCH_CHECK(lengths.dim() == 1 && lengths.size(0) == src.size(0), "encoder: lengths must be [batch]");
  EncoderOutput out;
  const auto len = src.size(1);
  out.mask = torch::arange(len, lengths.options()).unsqueeze(0) < lengths.unsqueeze(1);  // [B, L]
  auto x = s2s::dropout(embedding(src), dropout_, is_training());                    // [B, L, E]
  CellState fwd_final, bwd_final;
  for (size_t l = 0; l < forward_layers_.size(); ++l) {
    if (l > 0) x = s2s::dropout(x, dropout_, is_training());
    if (bidirectional_ && (!x.is_cpu() || batched_on_cpu.load(std::memory_order_relaxed))) {
      auto both = both_directions(*forward_layers_[l], *backward_layers_[l], x, out.mask, lengths);
      fwd_final = both.forward_final;
      bwd_final = both.backward_final;
      x = both.states;
      continue;
    }
    auto [fwd_states, fwd_last] = forward_layers_[l]->forward(x, out.mask, lengths, false);
    fwd_final = fwd_last;
    if (bidirectional_) {
      auto [bwd_states, bwd_last] = backward_layers_[l]->forward(x, out.mask, lengths, true);
      bwd_final = bwd_last;
      x = torch::cat({fwd_states, bwd_states}, 2);  // [B, L, 2H]
    } else {
      x = fwd_states;
    }
  }
  out.states = x;
  out.final = bidirectional_ ? torch::cat({fwd_final.h, bwd_final.h}, 1) : fwd_final.h;
  if (fwd_final.c.defined())
    out.final_memory = bidirectional_ ? torch::cat({fwd_final.c, bwd_final.c}, 1) : fwd_final.c;
  return out;
}

}  // namespace s2s
