#include "encoder.h"

#include "random.h"

namespace s2s {

RecurrentLayerImpl::RecurrentLayerImpl(int64_t input_size, int64_t hidden_size, CellType type) {
  const auto g = gate_count(type);
  W_x = register_parameter("W_x", torch::empty({g * hidden_size, input_size}));
  b = register_parameter("b", torch::zeros({g * hidden_size}));
  cell = register_module("cell", RecurrentCell(hidden_size, type));
}

std::pair<torch::Tensor, CellState> RecurrentLayerImpl::forward(const torch::Tensor& inputs, const torch::Tensor& mask,
                                                               bool reverse) {
  const auto batch = inputs.size(0), len = inputs.size(1);
  auto x_proj = torch::addmm(b, inputs.reshape({batch * len, -1}), W_x.t()).view({batch, len, -1});  // [B, L, G*H]
  auto state = cell->initial_state(torch::zeros({batch, cell->hidden_size()}, inputs.options()));
  std::vector<torch::Tensor> outputs(len);
  // unbind, not select(1, t) per step: its backward is one stack of the steps' gradients, where each
  // select's would fill a whole [B, L, G*H] tensor with zeros and add it up, step after step.
  const auto x_steps = x_proj.unbind(1);
  const auto mask_steps = mask.unbind(1);
  auto w_hh = cell->recurrent_weight(len, batch);
  for (int64_t k = 0; k < len; ++k) {
    const int64_t t = reverse ? len - 1 - k : k;
    auto next = cell->step(x_steps[t], state, &w_hh);
    // Padding positions keep the previous state, so the final state is the last real one and the
    // backward direction starts from zeros at each sentence's own end.
    state = CellState::where(mask_steps[t], next, state);
    outputs[t] = state.h;
  }
  auto states = torch::stack(outputs, 1) * mask.unsqueeze(2).to(inputs.dtype());  // [B, L, H], zero on padding
  return {states, state};
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
    auto [fwd_states, fwd_last] = forward_layers_[l]->forward(x, out.mask, false);
    fwd_final = fwd_last;
    if (bidirectional_) {
      auto [bwd_states, bwd_last] = backward_layers_[l]->forward(x, out.mask, true);
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
