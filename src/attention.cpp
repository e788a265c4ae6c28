#include "attention.h"

#include <atomic>

#include "attention_kernels.h"
#include "error.h"

namespace s2s {

AttentionMemory AttentionMemory::index_select(const torch::Tensor& rows) const {
  auto select = [&](const torch::Tensor& t) { return t.defined() ? t.index_select(0, rows) : torch::Tensor(); };
  return {select(keys), select(values), select(mask), {}, {}};  // keys and values are undefined without attention
}

namespace {

std::atomic<bool> fused_enabled{true};
std::atomic<bool> kernels_enabled{true};

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// keys and values pass through unchanged; the backward returns the totals that the steps added into
// grad_keys and grad_values (attention_step_backward), plus whatever reached them otherwise.
class MemoryGradients : public torch::autograd::Function<MemoryGradients> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor keys, torch::Tensor values,
                               torch::Tensor grad_keys, torch::Tensor grad_values) {
    ctx->saved_data["grad_keys"] = grad_keys;
    ctx->saved_data["grad_values"] = grad_values;
    ctx->set_materialize_grads(false);
    return {keys, values};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto gk = ctx->saved_data["grad_keys"].toTensor(), gv = ctx->saved_data["grad_values"].toTensor();
    if (grads[0].defined()) gk = gk + grads[0];
    if (grads[1].defined()) gv = gv + grads[1];
    return {gk, gv, torch::Tensor(), torch::Tensor()};
  }
};

kernels::StepShape step_shape(const torch::Tensor& keys, const torch::Tensor& values) {
  return {keys.size(0), keys.size(1), keys.size(2), values.size(2)};
}

bool fusable(const torch::Tensor& t) { return t.is_cpu() && t.scalar_type() == torch::kFloat; }

// Whether a step on these tensors runs the CPU kernels (otherwise its LibTorch operations).
bool kernels_apply(const torch::Tensor& keys, const torch::Tensor& values, const torch::Tensor& q) {
  return kernels_enabled.load(std::memory_order_relaxed) && fusable(keys) && fusable(values) && fusable(q);
}

// The step's forward into new (context, weights), by the kernels or by LibTorch's operations. tanh_out:
// null when no backward follows; else, for Additive, receives tanh(k + q), which the backward reads.
AttentionResult step_forward(bool use_kernels, kernels::Score score, const torch::Tensor& keys,
                             const torch::Tensor& values, const torch::Tensor& q, const torch::Tensor& v,
                             const torch::Tensor& mask, double scale, torch::Tensor* tanh_out) {
  const bool additive = score == kernels::Score::Additive;
  if (!use_kernels) {
    // LibTorch's operations: each is one kernel on a GPU
    torch::Tensor scores;
    if (additive) {
      auto t = torch::tanh(keys + q.unsqueeze(1));  // [B, S, A]
      scores = torch::matmul(t, v);                  // [B, S]
      if (tanh_out) *tanh_out = t;
    } else {
      scores = torch::bmm(keys, q.unsqueeze(2)).squeeze(2);
      if (scale != 1.0) scores.mul_(scale);
    }
    // exp(-inf) is exactly 0: padding gets no weight (every row has a real token, </s>)
    auto weights = torch::softmax(torch::where(mask, scores, -std::numeric_limits<double>::infinity()), -1);
    return {torch::bmm(weights.unsqueeze(1), values).squeeze(1), weights};
  }
  const auto n = step_shape(keys, values);
  auto weights = torch::empty({n.B, n.S}, q.options());
  auto context = torch::empty({n.B, n.C}, q.options());
  if (tanh_out && additive) *tanh_out = torch::empty_like(keys);
  kernels::attention_step_forward(score, n, keys.data_ptr<float>(), values.data_ptr<float>(), q.data_ptr<float>(),
                                  v.defined() && v.numel() ? v.data_ptr<float>() : nullptr, mask.data_ptr<bool>(),
                                  static_cast<float>(scale),
                                  tanh_out && additive ? tanh_out->data_ptr<float>() : nullptr,
                                  weights.data_ptr<float>(), context.data_ptr<float>());
  return {context, weights};
}

// The step's backward, by the route its forward took: adds dL/dkeys and dL/dvalues into grad_keys and
// grad_values, returns dL/dq and (Additive) dL/dv. gc: dL/dcontext; gw: dL/dweights, or undefined.
std::pair<torch::Tensor, torch::Tensor> step_backward(bool use_kernels, kernels::Score score, const torch::Tensor& keys,
                                                      const torch::Tensor& values, const torch::Tensor& q,
                                                      const torch::Tensor& v, const torch::Tensor& t,
                                                      const torch::Tensor& weights, const torch::Tensor& gc,
                                                      const torch::Tensor& gw, double scale, torch::Tensor& grad_keys,
                                                      torch::Tensor& grad_values) {
  const bool additive = score == kernels::Score::Additive;
  if (!use_kernels) {
    auto g_weights = torch::bmm(values, gc.unsqueeze(2)).squeeze(2);  // [B, S] through the context
    if (gw.defined()) g_weights.add_(gw);
    // dL/dscores; exactly 0 on padding, where the weights are 0
    auto g_scores = torch::_softmax_backward_data(g_weights, weights, -1, weights.scalar_type());
    grad_values.baddbmm_(weights.unsqueeze(2), gc.unsqueeze(1));  // += alpha_i gc
    if (additive) {
      auto g_sum = torch::tanh_backward(g_scores.unsqueeze(2) * v, t);  // dL/d(k_i + q) [B, S, A]
      auto gv = torch::mv(t.reshape({-1, t.size(2)}).t(), g_scores.reshape({-1}));
      grad_keys.add_(g_sum);
      return {g_sum.sum(1), gv};
    }
    if (scale != 1.0) g_scores.mul_(scale);
    grad_keys.baddbmm_(g_scores.unsqueeze(2), q.unsqueeze(1));  // += scale g_i q
    return {torch::bmm(g_scores.unsqueeze(1), keys).squeeze(1), torch::Tensor()};
  }
  const auto n = step_shape(keys, values);
  const auto gc_ = gc.contiguous();
  const auto gw_ = gw.defined() ? gw.contiguous() : torch::Tensor();
  auto gq = torch::empty_like(q);
  auto gv = additive ? torch::empty_like(v) : torch::Tensor();
  kernels::attention_step_backward(score, n, keys.data_ptr<float>(), values.data_ptr<float>(), q.data_ptr<float>(),
                                   additive ? v.data_ptr<float>() : nullptr, additive ? t.data_ptr<float>() : nullptr,
                                   weights.data_ptr<float>(), gc_.data_ptr<float>(),
                                   gw_.defined() ? gw_.data_ptr<float>() : nullptr, static_cast<float>(scale),
                                   grad_keys.data_ptr<float>(), grad_values.data_ptr<float>(), gq.data_ptr<float>(),
                                   gv.defined() ? gv.data_ptr<float>() : nullptr);
  return {gq, gv};
}

// One step: (context, weights) from q = W_s s_j (or W_Q s_j) and the memory. v is empty for Dot.
class AttentionStep : public torch::autograd::Function<AttentionStep> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor keys, torch::Tensor values, torch::Tensor q,
                               torch::Tensor v, torch::Tensor mask, torch::Tensor grad_keys, torch::Tensor grad_values,
                               int64_t score, double scale) {
    const auto kind = static_cast<kernels::Score>(score);
    q = q.contiguous();
    torch::Tensor t;
    const bool use_kernels = kernels_apply(keys, values, q);
    auto [context, weights] = step_forward(use_kernels, kind, keys, values, q, v, mask, scale, &t);
    // keys and values are the sentence's memory, saved by every step: kept as references, not versioned
    ctx->saved_data["keys"] = keys;
    ctx->saved_data["values"] = values;
    ctx->saved_data["grad_keys"] = grad_keys;
    ctx->saved_data["grad_values"] = grad_values;
    ctx->saved_data["score"] = score;
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["kernels"] = use_kernels;
    ctx->save_for_backward({q, v, t, weights});
    ctx->set_materialize_grads(false);
    return {context, weights};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto &q = saved[0], &v = saved[1], &t = saved[2], &weights = saved[3];
    const auto keys = ctx->saved_data["keys"].toTensor(), values = ctx->saved_data["values"].toTensor();
    auto grad_keys = ctx->saved_data["grad_keys"].toTensor(), grad_values = ctx->saved_data["grad_values"].toTensor();
    const auto gc = grads[0].defined() ? grads[0] : torch::zeros({keys.size(0), values.size(2)}, q.options());
    const auto kind = static_cast<kernels::Score>(ctx->saved_data["score"].toInt());
    auto [gq, gv] = step_backward(ctx->saved_data["kernels"].toBool(), kind, keys, values, q, v, t, weights, gc,
                                  grads[1], ctx->saved_data["scale"].toDouble(), grad_keys, grad_values);
    return {torch::Tensor(), torch::Tensor(), gq, v.numel() ? gv : torch::Tensor(), torch::Tensor(), torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// The memory as the fused step reads it: contiguous, with gradient totals when a backward will follow.
AttentionMemory fused_memory(torch::Tensor keys, torch::Tensor values, const torch::Tensor& mask) {
  AttentionMemory m{keys.contiguous(), values.contiguous(), mask.contiguous(), {}, {}};
  if (torch::GradMode::is_enabled() && (m.keys.requires_grad() || m.values.requires_grad())) {
    m.grad_keys = torch::zeros_like(m.keys);
    m.grad_values = torch::zeros_like(m.values);
    auto out = MemoryGradients::apply(m.keys, m.values, m.grad_keys, m.grad_values);
    m.keys = out[0];
    m.values = out[1];
  }
  return m;
}

bool use_fused(const AttentionMemory& m) {
  if (!fused_enabled.load(std::memory_order_relaxed)) return false;
  if (!m.keys.is_contiguous() || !m.values.is_contiguous() || !m.mask.is_contiguous()) return false;
  // a backward needs the totals (memories from index_select have none: they are for search, without grad)
  return !torch::GradMode::is_enabled() || m.grad_keys.defined();
}

AttentionResult fused_step(kernels::Score score, const torch::Tensor& q, const torch::Tensor& v,
                           const AttentionMemory& m, double scale) {
  if (!torch::GradMode::is_enabled())  // search: no graph, no saved tanh
    return step_forward(kernels_apply(m.keys, m.values, q), score, m.keys, m.values, q.contiguous(), v, m.mask,
                        scale, nullptr);
  // every input of a custom function must be defined: Dot has no v, an empty one stands for it
  auto out = AttentionStep::apply(m.keys, m.values, q, v.defined() ? v : torch::empty({0}, q.options()), m.mask,
                                  m.grad_keys, m.grad_values, static_cast<int64_t>(score), scale);
  return {out[0], out[1]};
}

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
  auto keys = torch::matmul(encoder_states, W_h.t());  // [B, S, A]
  if (fused_attention_enabled()) return fused_memory(keys, encoder_states, mask);
  return {keys, encoder_states, mask, {}, {}};
}

namespace {
// W q for one step: through the sequence's StepWeight when there is one.
torch::Tensor project(const torch::Tensor& query, const torch::Tensor& W, StepWeight* step_weight) {
  return step_weight ? step_weight->addmm({}, query) : torch::matmul(query, W.t());
}
}  // namespace

AttentionResult BahdanauAttentionImpl::forward(const torch::Tensor& query, const AttentionMemory& memory,
                                               StepWeight* query_weight) {
  if (use_fused(memory))
    return fused_step(kernels::Score::Additive, project(query, W_s, query_weight), v, memory, 1.0);
  auto q = project(query, W_s, query_weight).unsqueeze(1);              // [B, 1, A]
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
  auto keys = torch::matmul(encoder_states, W_K.t()), values = torch::matmul(encoder_states, W_V.t());  // [B, S, A]
  if (fused_attention_enabled()) return fused_memory(keys, values, mask);
  return {keys, values, mask, {}, {}};
}

AttentionResult QKVAttentionImpl::forward(const torch::Tensor& query, const AttentionMemory& memory,
                                          StepWeight* query_weight) {
  if (use_fused(memory))
    return fused_step(kernels::Score::Dot, project(query, W_Q, query_weight), {}, memory, scale_);
  auto q = project(query, W_Q, query_weight).unsqueeze(1);                   // [B, 1, A]
  auto scores = (memory.keys * q).sum(2);                                    // [B, S] = K^T q_j
  if (scale_ != 1.0) scores = scores * scale_;
  auto weights = masked_softmax(scores, memory.mask);                        // [B, S]
  auto context = weighted_sum(weights, memory.values);                        // [B, A]
  return {context, weights};
}

void set_fused_attention(bool enabled) { fused_enabled.store(enabled); }
bool fused_attention_enabled() { return fused_enabled.load(std::memory_order_relaxed); }
void set_attention_kernels(bool enabled) { kernels_enabled.store(enabled); }

std::shared_ptr<AttentionImpl> make_attention(const ModelConfig& config, int64_t encoder_size, int64_t query_size) {
  const int64_t size = config.attention_size > 0 ? config.attention_size : config.hidden_size;
  if (config.attention == "bahdanau") return std::make_shared<BahdanauAttentionImpl>(encoder_size, query_size, size);
  if (config.attention == "qkv")
    return std::make_shared<QKVAttentionImpl>(encoder_size, query_size, size, config.qkv_scaled);
  if (config.attention == "none") return nullptr;
  throw Error("model.attention: unknown type \"" + config.attention + "\"");
}

}  // namespace s2s
