// Alignment: alpha_{i,j} = softmax_i(e_{i,j}) over the real source positions, and the context c_j.
//   bahdanau: e_ij = v^T tanh(W_h h_i + W_s s_j)        c_j = sum_i alpha_ij h_i
//   qkv     : e_ij = (W_K h_i) . (W_Q s_j)              c_j = sum_i alpha_ij (W_V h_i)
//             (optionally divided by sqrt(attention size): model.qkv_scaled)
// Everything that depends on the source only (W_h h_i, or K and V) is computed once per sentence by
// prepare(); forward() then does the per-state work. Padding gets weight exactly 0.
#pragma once
#include <memory>

#include <torch/torch.h>

#include "config.h"
#include "step_weight.h"

namespace s2s {

struct MemoryRecording;  // attention.cpp

struct AttentionMemory {
  torch::Tensor keys;    // [batch, src_len, attn]: W_h h_i (bahdanau) or K (qkv)
  torch::Tensor values;  // [batch, src_len, context]: h_i (bahdanau) or V (qkv)
  torch::Tensor mask;    // [batch, src_len] bool, true on real tokens
  // Training with the fused step: each step's backward adds its dL/dkeys and dL/dvalues here (the CPU
  // kernels) or records its share of them in `recording` (LibTorch's operations: on a GPU, one addition
  // per step and tensor would be a kernel launch per step), and the whole sentence's total goes back to
  // the encoder once. Undefined otherwise; empty with the recording alone.
  torch::Tensor grad_keys, grad_values;
  std::shared_ptr<MemoryRecording> recording;
  // With the recording, Additive's v as the steps take it: passed through the node that makes its
  // gradient once per sentence from the recorded steps. Undefined otherwise (the parameter itself).
  torch::Tensor v;
  AttentionMemory index_select(const torch::Tensor& rows) const;  // for search: without the totals
};

struct AttentionResult {
  torch::Tensor context;  // [batch, context]
  torch::Tensor weights;  // [batch, src_len]
};

class AttentionImpl : public torch::nn::Module {
 public:
  virtual AttentionMemory prepare(const torch::Tensor& encoder_states, const torch::Tensor& mask) = 0;
  // query_weight: the query projection (W_s or W_Q) as a sequence's StepWeight (training; see
  // query_weight()), or null for a plain product.
  virtual AttentionResult forward(const torch::Tensor& query, const AttentionMemory& memory,
                                  StepWeight* query_weight = nullptr) = 0;
  virtual const torch::Tensor& query_weight() const = 0;
  virtual int64_t context_size() const = 0;
};

// The fused step computes what the tensor expressions below compute, as one autograd function per step
// whose backward adds the keys' and values' gradients into the sentence's totals (AttentionMemory). For
// float32 CPU tensors it runs the hand-written kernels (attention_kernels.h): fewer passes over memory.
// Elsewhere (a GPU) it runs a few LibTorch operations: about 6 forward and 9 backward per step where the
// expressions, differentiated by autograd, launch about 10 and 15 (without CUDA graphs a GPU's training
// step is bound by how many kernels it launches). Used unless switched off here (the tests compare the
// routes).
void set_fused_attention(bool enabled);
bool fused_attention_enabled();
// The CPU kernels inside the fused step (default), or its LibTorch operations on the CPU too: for the
// tests, which check a GPU's route on the CPU this way.
void set_attention_kernels(bool enabled);

class BahdanauAttentionImpl : public AttentionImpl {
 public:
  BahdanauAttentionImpl(int64_t encoder_size, int64_t query_size, int64_t attention_size);
  AttentionMemory prepare(const torch::Tensor& encoder_states, const torch::Tensor& mask) override;
  AttentionResult forward(const torch::Tensor& query, const AttentionMemory& memory,
                          StepWeight* query_weight = nullptr) override;
  const torch::Tensor& query_weight() const override { return W_s; }
  int64_t context_size() const override { return encoder_size_; }

  torch::Tensor W_h;  // [attn, encoder]
  torch::Tensor W_s;  // [attn, query]
  torch::Tensor v;    // [attn]

 private:
  int64_t encoder_size_;
};

class QKVAttentionImpl : public AttentionImpl {
 public:
  QKVAttentionImpl(int64_t encoder_size, int64_t query_size, int64_t attention_size, bool scaled);
  AttentionMemory prepare(const torch::Tensor& encoder_states, const torch::Tensor& mask) override;
  AttentionResult forward(const torch::Tensor& query, const AttentionMemory& memory,
                          StepWeight* query_weight = nullptr) override;
  const torch::Tensor& query_weight() const override { return W_Q; }
  int64_t context_size() const override { return attention_size_; }

  torch::Tensor W_K;  // [attn, encoder]
  torch::Tensor W_Q;  // [attn, query]
  torch::Tensor W_V;  // [attn, encoder]

 private:
  int64_t attention_size_;
  double scale_;  // 1, or 1/sqrt(attention_size) when scaled
};

// nullptr for "none".
std::shared_ptr<AttentionImpl> make_attention(const ModelConfig& config, int64_t encoder_size, int64_t query_size);

// softmax over the last dimension with masked positions set to exactly 0.
torch::Tensor masked_softmax(const torch::Tensor& scores, const torch::Tensor& mask);

}  // namespace s2s
