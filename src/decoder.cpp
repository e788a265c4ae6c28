#include "decoder.h"

#include "random.h"
#include "row_parallel.h"
#include "vocabulary.h"

namespace s2s {

DecoderState DecoderState::index_select(const torch::Tensor& rows) const {
  return {cell.index_select(rows), context.defined() ? context.index_select(0, rows) : torch::Tensor(),
          weights.defined() ? weights.index_select(0, rows) : torch::Tensor()};
}

DecoderImpl::DecoderImpl(const ModelConfig& config, int64_t vocab_size, int64_t encoder_size)
    : dropout_(config.dropout), deep_output_(config.output == "deep"), tied_(config.tied_embeddings) {
  const auto type = cell_type_from_string(config.cell);
  const auto H = config.hidden_size, E = config.embedding_size, G = gate_count(type);
  embedding = register_module("embedding", torch::nn::Embedding(vocab_size, E));
  attention_ = make_attention(config, encoder_size, H);
  if (attention_) register_module("attention", attention_);
  W_x = register_parameter("W_x", torch::empty({G * H, E}));
  if (attention_) W_c = register_parameter("W_c", torch::empty({G * H, attention_->context_size()}));
  b = register_parameter("b", torch::zeros({G * H}));
  cell = register_module("cell", RecurrentCell(H, type));
  if (config.bidirectional || encoder_size != H) {
    W_bridge = register_parameter("W_bridge", torch::empty({H, encoder_size}));
    b_bridge = register_parameter("b_bridge", torch::zeros({H}));
  }
  int64_t out_in = H;
  if (deep_output_) {
    const int64_t deep = tied_ ? E : H;
    const int64_t ctx = attention_ ? attention_->context_size() : 0;
    W_deep = register_parameter("W_deep", torch::empty({deep, H + ctx + E}));
    b_deep = register_parameter("b_deep", torch::zeros({deep}));
    out_in = deep;
  }
  if (!tied_) W_out = register_parameter("W_out", torch::empty({vocab_size, out_in}));
  b_out = register_parameter("b_out", torch::zeros({vocab_size}));
}

AttentionMemory DecoderImpl::prepare_memory(const EncoderOutput& encoded) {
  if (!attention_) return {torch::Tensor(), torch::Tensor(), encoded.mask, {}, {}, {}, {}};
  return attention_->prepare(encoded.states, encoded.mask);
}

DecoderState DecoderImpl::init_state(const EncoderOutput& encoded, const AttentionMemory& memory) {
  auto s0 = W_bridge.defined() ? torch::tanh(torch::addmm(b_bridge, encoded.final, W_bridge.t())) : encoded.final;
  DecoderState state;
  state.cell = cell->initial_state(s0);
  if (attention_) {
    auto r = attention_->forward(s0, memory);  // c_0 from s_0
    state.context = r.context;
    state.weights = r.weights;
  }
  return state;
}

StepInput DecoderImpl::embed(const torch::Tensor& tokens) {
  auto e = s2s::dropout(embedding(tokens), dropout_, is_training());  // [..., E]
  return {e, torch::matmul(e, W_x.t()) + b};                             // [..., G*H]
}

DecoderStepWeights DecoderImpl::step_weights(int64_t steps, int64_t rows) {
  DecoderStepWeights w;
  w.recurrent = cell->recurrent_weight(steps, rows);
  if (attention_) {
    w.context = StepWeight(W_c, steps, rows);
    w.query = StepWeight(attention_->query_weight(), steps, rows);
  }
  const auto& W = tied_ ? embedding->weight : W_out;
  if (!torch::GradMode::is_enabled() && PackedMatrix::suits(W)) w.output = PackedMatrix(W.t());
  return w;
}

DecoderState DecoderImpl::step(const StepInput& input, const DecoderState& prev, const AttentionMemory& memory,
                               DecoderStepWeights* weights) {
  DecoderState next;
  if (attention_) {
    auto x_proj = weights ? weights->context.addmm(input.projection, prev.context)  // W_x x'_j + b + W_c c_{j-1}
                          : torch::addmm(input.projection, prev.context, W_c.t());
    next.cell = cell->step(x_proj, prev.cell, weights ? &weights->recurrent : nullptr);
    // alpha_j computed again for the new state
    auto r = attention_->forward(next.cell.h, memory, weights ? &weights->query : nullptr);
    next.context = r.context;
    next.weights = r.weights;
  } else {
    next.cell = cell->step(input.projection, prev.cell, weights ? &weights->recurrent : nullptr);
  }
  return next;
}

torch::Tensor DecoderImpl::output(const torch::Tensor& s, const torch::Tensor& context,
                                  const torch::Tensor& embedding_in, const DecoderStepWeights* weights) {
  torch::Tensor x = s;
  if (deep_output_) {
    std::vector<torch::Tensor> parts{s};
    if (context.defined()) parts.push_back(context);
    parts.push_back(embedding_in);
    x = torch::tanh(torch::matmul(torch::cat(parts, -1), W_deep.t()) + b_deep);
  }
  x = s2s::dropout(x, dropout_, is_training());
  // A search step of up to 320 rows (greedy: the batch; beam 5: 64 sentences): W^T packed once per search,
  // its column panels split across threads. Against linear_rows (OpenBLAS, which packs the whole [V, H]
  // weight in every call), [rows x 256] x [256 x 6198] with 2 threads: 4.7x at 8 rows, 1.7x at 64, 1.3x at
  // 128, 1.06-1.17x at 320, 0.97x at 640; with 1 thread 1.33x at 64, 1.08x at 320.
  if (weights && weights->output.defined() && x.dim() == 2 && x.size(0) <= 320)
    return weights->output.addmm(b_out, x, /*split_columns=*/true);
  const auto& W = tied_ ? embedding->weight : W_out;
  return linear_rows(x, W, b_out);  // [..., vocab] = x W^T + b_out
}

DecoderImpl::TeacherForced DecoderImpl::forward(const EncoderOutput& encoded, const torch::Tensor& tgt_in,
                                                double sampling_ratio) {
  TORCH_CHECK(tgt_in.dim() == 2, "decoder: tgt_in must be [batch, tgt_len], got ", tgt_in.sizes());
  auto memory = prepare_memory(encoded);
  auto state = init_state(encoded, memory);
  const auto initial_weights = state.weights;
  const auto len = tgt_in.size(1);
  std::vector<torch::Tensor> states, contexts, weights;
  if (sampling_ratio <= 0) {
    auto inputs = embed(tgt_in);  // all x'_j and W_x x'_j + b in one product
    // unbind: one stack in the backward pass, not a zero-filled [B, T, G*H] per step (see encoder.cpp)
    const auto x_steps = inputs.embedding.unbind(1), p_steps = inputs.projection.unbind(1);
    auto weights_of_steps = step_weights(len, tgt_in.size(0));
    for (int64_t j = 0; j < len; ++j) {
      state = step({x_steps[j], p_steps[j]}, state, memory, &weights_of_steps);
      states.push_back(state.cell.h);
      if (attention_) {
        contexts.push_back(state.context);
        weights.push_back(state.weights);
      }
    }
    TeacherForced out;
    auto S = torch::stack(states, 1);  // [B, T, H]
    auto C = attention_ ? torch::stack(contexts, 1) : torch::Tensor();
    out.logits = output(S, C, inputs.embedding);
    if (attention_) out.weights = torch::stack(weights, 1);  // [B, T, S]
    out.initial_weights = initial_weights;
    return out;
  }
  // Scheduled sampling (Bengio et al., 2015): from the second position on, each sentence's input is,
  // with probability sampling_ratio, the model's own most probable previous token instead of the
  // reference's. The choice is not differentiated through.
  std::vector<torch::Tensor> embeddings;
  torch::Tensor previous_logits;
  auto weights_of_steps = step_weights(len, tgt_in.size(0));
  for (int64_t j = 0; j < len; ++j) {
    auto tokens = tgt_in.select(1, j);
    if (j > 0) {
      torch::NoGradGuard no_grad;
      auto predicted = previous_logits.argmax(-1);
      auto use_own = s2s::uniform(tokens.size(0), tokens.device()) < sampling_ratio;
      // Positions after the reference's end stay <pad> (masked out of the loss either way).
      use_own &= tokens.ne(Vocabulary::kPad);
      tokens = torch::where(use_own, predicted, tokens);
    }
    auto input = embed(tokens);
    state = step(input, state, memory, &weights_of_steps);
    embeddings.push_back(input.embedding);
    states.push_back(state.cell.h);
    if (attention_) {
      contexts.push_back(state.context);
      weights.push_back(state.weights);
    }
    if (j + 1 < len) {
      torch::NoGradGuard no_grad;
      previous_logits = output(state.cell.h, attention_ ? state.context : torch::Tensor(), input.embedding);
    }
  }
  TeacherForced out;
  auto S = torch::stack(states, 1);
  auto C = attention_ ? torch::stack(contexts, 1) : torch::Tensor();
  out.logits = output(S, C, torch::stack(embeddings, 1));
  if (attention_) out.weights = torch::stack(weights, 1);
  out.initial_weights = initial_weights;
  return out;
}

torch::Tensor DecoderImpl::output_attention(const TeacherForced& forced) const {
  if (!forced.weights.defined() || deep_output_) return forced.weights;
  const auto T = forced.weights.size(1);
  return torch::cat({forced.initial_weights.unsqueeze(1), forced.weights.slice(1, 0, T - 1)}, 1);
}

}  // namespace s2s
