#include "attention.h"

#include "error.h"

namespace s2s {

AttentionMemory AttentionMemory::index_select(const torch::Tensor& rows) const {
  auto select = [&](const torch::Tensor& t) { return t.defined() ? t.index_select(0, rows) : torch::Tensor(); };
  return {select(keys), select(values), select(mask)};  // keys and values are undefined without attention
}

namespace {
// sum_i weights[b, i] values[b, i, :]: a broadcast product and a sum. A bmm of [B, 1, S] by [B, S, C]
// on the CPU is B separate vector products (with their own tensor views and BLAS calls) forward and
// backward; this is two vectorised passes.
torch::Tensor weighted_sum(const torch::Tensor& weights, const torch::Tensor& values) {
  return (weights.unsqueeze(2) * values).sum(1);  // [B, C]
}
}  // namespace

torch::Tensor masked_softmax(const torch::Tensor& scores, const torch::Tensor& mask) {
  // exp(-inf) is exactly 0, so padding gets no weight; every row has at least one real token (</s>).
  return torch::softmax(scores.masked_fill(mask.logical_not(), -std::numeric_limits<float>::infinity()), -1);
}

BahdanauAttentionImpl::BahdanauAttentionImpl(int64_t encoder_size, int64_t query_size, int64_t attention_size)
    : encoder_size_(encoder_size) {
  W_h = register_parameter("W_h", torch::empty({attention_size, encoder_size}));
  W_s = register_parameter("W_s", torch::empty({attention_size, query_size}));
  v = register_parameter("v", torch::empty({attention_size}));
}

AttentionMemory BahdanauAttentionImpl::prepare(const torch::Tensor& encoder_states, const torch::Tensor& mask) {
  return {torch::matmul(encoder_states, W_h.t()), encoder_states, mask};  // keys [B, S, A]
}

AttentionResult BahdanauAttentionImpl::forward(const torch::Tensor& query, const AttentionMemory& memory) {
  auto q = torch::matmul(query, W_s.t()).unsqueeze(1);                  // [B, 1, A]
  auto scores = torch::matmul(torch::tanh(memory.keys + q), v);         // [B, S]
  auto weights = masked_softmax(scores, memory.mask);                   // [B, S]
  auto context = weighted_sum(weights, memory.values);                  // [B, C]
  return {context, weights};
}

QKVAttentionImpl::QKVAttentionImpl(int64_t encoder_size, int64_t query_size, int64_t attention_size, bool scaled)
    : attention_size_(attention_size), scale_(scaled ? 1.0 / std::sqrt(static_cast<double>(attention_size)) : 1.0) {
  W_K = register_parameter("W_K", torch::empty({attention_size, encoder_size}));
  W_Q = register_parameter("W_Q", torch::empty({attention_size, query_size}));
  W_V = register_parameter("W_V", torch::empty({attention_size, encoder_size}));
}

AttentionMemory QKVAttentionImpl::prepare(const torch::Tensor& encoder_states, const torch::Tensor& mask) {
  return {torch::matmul(encoder_states, W_K.t()), torch::matmul(encoder_states, W_V.t()), mask};  // [B, S, A] x 2
}

AttentionResult QKVAttentionImpl::forward(const torch::Tensor& query, const AttentionMemory& memory) {
  auto q = torch::matmul(query, W_Q.t()).unsqueeze(1);                       // [B, 1, A]
  auto scores = (memory.keys * q).sum(2);                                    // [B, S] = K^T q_j
  if (scale_ != 1.0) scores = scores * scale_;
  auto weights = masked_softmax(scores, memory.mask);                        // [B, S]
  auto context = weighted_sum(weights, memory.values);                        // [B, A]
  return {context, weights};
}

std::shared_ptr<AttentionImpl> make_attention(const ModelConfig& config, int64_t encoder_size, int64_t query_size) {
  const int64_t size = config.attention_size > 0 ? config.attention_size : config.hidden_size;
  if (config.attention == "bahdanau") return std::make_shared<BahdanauAttentionImpl>(encoder_size, query_size, size);
  if (config.attention == "qkv")
    return std::make_shared<QKVAttentionImpl>(encoder_size, query_size, size, config.qkv_scaled);
  if (config.attention == "none") return nullptr;
  throw Error("model.attention: unknown type \"" + config.attention + "\"");
}

}  // namespace s2s
