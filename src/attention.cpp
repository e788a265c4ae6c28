#include "attention.h"

#include <atomic>
#include <iterator>
#include <optional>

#include "attention_kernels.h"
#include "error.h"

namespace s2s {

// The steps' shares of the memory's gradients on LibTorch's route (a GPU's), kept by reference and made
// into totals once per sentence by MemoryGradients, where adding each into a total would be an operation
// per step (on a GPU a kernel launch per step). Only small shares are kept, so the memory held does not
// grow with the steps:
//   Dot: dL/dkeys = sum_j g_j q_j^T, with g_j [B, S] the step's dL/dscores (scaled) and q_j [B, A];
//   both: dL/dvalues = sum_j alpha_j gc_j^T, with alpha_j [B, S] the weights and gc_j [B, C] dL/dcontext;
//   Additive: dL/dv = sum_j T_j^T g_j, each step's [A] kept (autograd would add each into v's total).
// Additive's dL/dkeys, sum_j G_j with G_j [B, S, A] the step's dL/d(k_i + q), is as large as the memory
// per step: the first step's G_j (the last position's: the backward runs in reverse) is key_total's one
// entry, and each later step adds its own into it in place.
// c10::List is shared by reference, so every step's saved copy and MemoryGradients see the same lists.
struct MemoryRecording {
  c10::List<at::Tensor> key_total, key_scores, key_queries, value_weights, value_grads, v_grads;
};

AttentionMemory AttentionMemory::index_select(const torch::Tensor& rows) const {
  auto select = [&](const torch::Tensor& t) { return t.defined() ? t.index_select(0, rows) : torch::Tensor(); };
  return {select(keys), select(values), select(mask), {}, {}, {}, {}};  // keys and values are undefined without attention
}

namespace {

std::atomic<bool> fused_enabled{true};
std::atomic<bool> kernels_enabled{true};

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

torch::Tensor plus(const torch::Tensor& a, const torch::Tensor& b) {
  return !a.defined() ? b : !b.defined() ? a : a + b;
}

// sum_j a_j b_j^T over the recorded steps: a_j [B, S], b_j [B, N] -> [B, S, N], one batched product
torch::Tensor outer_sum(const c10::List<at::Tensor>& a, const c10::List<at::Tensor>& b) {
  if (a.empty()) return {};
  const std::vector<torch::Tensor> as(a.begin(), a.end()), bs(b.begin(), b.end());
  return torch::bmm(torch::stack(as, 2), torch::stack(bs, 1));
}

// The names under which a node keeps the recording's lists.
constexpr const char* kRecordingLists[] = {"key_total",   "key_scores", "key_queries",
                                           "value_weights", "value_grads", "v_grads"};

void save_recording(AutogradContext* ctx, const MemoryRecording& r) {
  const c10::List<at::Tensor>* lists[] = {&r.key_total,     &r.key_scores,  &r.key_queries,
                                          &r.value_weights, &r.value_grads, &r.v_grads};
  for (size_t i = 0; i < std::size(kRecordingLists); ++i) ctx->saved_data[kRecordingLists[i]] = *lists[i];
}

MemoryRecording saved_recording(AutogradContext* ctx) {
  auto list = [&](const char* name) { return ctx->saved_data[name].toTensorList(); };
  return {list("key_total"),     list("key_scores"),  list("key_queries"),
          list("value_weights"), list("value_grads"), list("v_grads")};
}

// keys, values and (Additive) v pass through unchanged; the backward returns the totals of the steps'
// gradients: those they added into grad_keys and grad_values (the CPU kernels, which return v's per
// step), or those they recorded (LibTorch's route), plus whatever reached keys, values and v otherwise.
class MemoryGradients : public torch::autograd::Function<MemoryGradients> {
 public:
  static variable_list forward(AutogradContext* ctx, torch::Tensor keys, torch::Tensor values, torch::Tensor v,
                               torch::Tensor grad_keys, torch::Tensor grad_values, const MemoryRecording& recording) {
    ctx->saved_data["grad_keys"] = grad_keys;
    ctx->saved_data["grad_values"] = grad_values;
    save_recording(ctx, recording);
    ctx->set_materialize_grads(false);
    return {keys, values, v};
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto gk = ctx->saved_data["grad_keys"].toTensor(), gvalues = ctx->saved_data["grad_values"].toTensor();
    if (!gk.numel()) gk = gvalues = torch::Tensor();  // the recorded route: no totals
    const auto r = saved_recording(ctx);
    if (!r.key_total.empty()) gk = plus(gk, r.key_total.get(0));
    gk = plus(gk, outer_sum(r.key_scores, r.key_queries));
    gvalues = plus(gvalues, outer_sum(r.value_weights, r.value_grads));
    torch::Tensor g_v;
    if (!r.v_grads.empty()) {
      const std::vector<torch::Tensor> parts(r.v_grads.begin(), r.v_grads.end());
      g_v = parts.size() == 1 ? parts[0] : torch::stack(parts).sum(0);
    }
    for (const char* name : kRecordingLists) ctx->saved_data[name].toTensorList().clear();  // released now
    return {plus(gk, grads[0]), plus(gvalues, grads[1]), plus(g_v, grads[2]), torch::Tensor(), torch::Tensor(),
            torch::Tensor()};
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

// The step's backward, by the route its forward took: the CPU kernels add dL/dkeys and dL/dvalues into
// grad_keys and grad_values, LibTorch's operations record their shares in `recorded` (MemoryRecording);
// returns dL/dq and (Additive) dL/dv. gc: dL/dcontext; gw: dL/dweights, or undefined.
std::pair<torch::Tensor, torch::Tensor> step_backward(bool use_kernels, kernels::Score score, const torch::Tensor& keys,
                                                      const torch::Tensor& values, const torch::Tensor& q,
                                                      const torch::Tensor& v, const torch::Tensor& t,
                                                      const torch::Tensor& weights, const torch::Tensor& gc,
                                                      const torch::Tensor& gw, double scale, torch::Tensor& grad_keys,
                                                      torch::Tensor& grad_values, const MemoryRecording* recorded) {
  const bool additive = score == kernels::Score::Additive;
  if (!use_kernels) {
    const auto& recording = *recorded;
    auto g_weights = torch::bmm(values, gc.unsqueeze(2)).squeeze(2);  // [B, S] through the context
    if (gw.defined()) g_weights.add_(gw);
    // dL/dscores; exactly 0 on padding, where the weights are 0
    auto g_scores = torch::_softmax_backward_data(g_weights, weights, -1, weights.scalar_type());
    // A memory made for the CPU kernels has totals (a step that could not take them adds into them); one
    // made for this route records. Detached: the lists are held upstream of this step (see StepRecording
    // in step_weight.cpp).
    const bool totals = grad_keys.numel() > 0;
    if (totals) {
      grad_values.baddbmm_(weights.unsqueeze(2), gc.unsqueeze(1));  // += alpha_i gc
    } else {
      recording.value_weights.push_back(weights.detach());
      recording.value_grads.push_back(gc.detach());
    }
    if (additive) {
      auto g_sum = torch::tanh_backward(g_scores.unsqueeze(2) * v, t);  // dL/d(k_i + q) [B, S, A]
      auto gq = g_sum.sum(1);
      auto gv = torch::mv(t.reshape({-1, t.size(2)}).t(), g_scores.reshape({-1}));  // T^T g
      if (totals) {
        grad_keys.add_(g_sum);
        return {gq, gv};
      }
      if (recording.key_total.empty())  // g_sum is this backward's own: it becomes the total
        recording.key_total.push_back(g_sum.detach());
      else
        recording.key_total.get(0).add_(g_sum);
      recording.v_grads.push_back(gv);  // v passes through MemoryGradients, which sums these
      return {gq, torch::Tensor()};
    }
    if (scale != 1.0) g_scores.mul_(scale);
    if (totals) {
      grad_keys.baddbmm_(g_scores.unsqueeze(2), q.unsqueeze(1));  // += scale g_i q
    } else {
      recording.key_scores.push_back(g_scores.detach());
      recording.key_queries.push_back(q.detach());
    }
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
                               const MemoryRecording& recording, int64_t score, double scale) {
    const auto kind = static_cast<kernels::Score>(score);
    q = q.contiguous();
    torch::Tensor t;
    // the kernels add into the totals: a memory made for the recorded route has none (empty tensors)
    const bool use_kernels = kernels_apply(keys, values, q) && grad_keys.numel() > 0;
    auto [context, weights] = step_forward(use_kernels, kind, keys, values, q, v, mask, scale, &t);
    // keys and values are the sentence's memory, saved by every step: kept as references, not versioned
    ctx->saved_data["keys"] = keys;
    ctx->saved_data["values"] = values;
    ctx->saved_data["grad_keys"] = grad_keys;
    ctx->saved_data["grad_values"] = grad_values;
    if (!use_kernels) save_recording(ctx, recording);  // the kernels' backward adds into the totals instead
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
    const bool use_kernels = ctx->saved_data["kernels"].toBool();
    std::optional<MemoryRecording> recording;  // LibTorch's route only
    if (!use_kernels) recording = saved_recording(ctx);
    auto [gq, gv] = step_backward(use_kernels, kind, keys, values, q, v, t, weights, gc,
                                  grads[1], ctx->saved_data["scale"].toDouble(), grad_keys, grad_values,
                                  recording ? &*recording : nullptr);
    return {torch::Tensor(), torch::Tensor(), gq, v.numel() && gv.defined() ? gv : torch::Tensor(),
            torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

// The memory as the fused step reads it: contiguous, and when a backward will follow, with the means of
// collecting its gradients: totals that the CPU kernels add into, or (LibTorch's route: a GPU, a type
// other than float32) a recording of the steps' shares.
// v: Additive's scoring vector (undefined for Dot), passed through the recording with the memory.
AttentionMemory fused_memory(torch::Tensor keys, torch::Tensor values, const torch::Tensor& mask,
                             const torch::Tensor& v = {}) {
  AttentionMemory m{keys.contiguous(), values.contiguous(), mask.contiguous(), {}, {}, {}, {}};
  if (torch::GradMode::is_enabled() && (m.keys.requires_grad() || m.values.requires_grad())) {
    m.recording = std::make_shared<MemoryRecording>();
    if (kernels_enabled.load(std::memory_order_relaxed) && fusable(m.keys) && fusable(m.values)) {
      m.grad_keys = torch::zeros_like(m.keys);
      m.grad_values = torch::zeros_like(m.values);
    } else {  // empty: every input of a custom function must be defined
      m.grad_keys = m.grad_values = torch::empty({0}, m.keys.options());
    }
    const bool recorded_v = v.defined() && !m.grad_keys.numel();
    auto out = MemoryGradients::apply(m.keys, m.values, recorded_v ? v : torch::empty({0}, m.keys.options()),
                                      m.grad_keys, m.grad_values, *m.recording);
    m.keys = out[0];
    m.values = out[1];
    if (recorded_v) m.v = out[2];
  }
  return m;
}

bool use_fused(const AttentionMemory& m) {
  if (!fused_enabled.load(std::memory_order_relaxed)) return false;
  if (!m.keys.is_contiguous() || !m.values.is_contiguous() || !m.mask.is_contiguous()) return false;
  // a backward needs the means of collecting the memory's gradients (memories from index_select have
  // none: they are for search, without grad)
  return !torch::GradMode::is_enabled() || m.recording != nullptr;
}

AttentionResult fused_step(kernels::Score score, const torch::Tensor& q, const torch::Tensor& v,
                           const AttentionMemory& m, double scale) {
  if (!torch::GradMode::is_enabled())  // search: no graph, no saved tanh
    return step_forward(kernels_apply(m.keys, m.values, q), score, m.keys, m.values, q.contiguous(), v, m.mask,
                        scale, nullptr);
  // every input of a custom function must be defined: Dot has no v, an empty one stands for it
  auto out = AttentionStep::apply(m.keys, m.values, q, v.defined() ? v : torch::empty({0}, q.options()), m.mask,
                                  m.grad_keys, m.grad_values, *m.recording, static_cast<int64_t>(score), scale);
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
  if (fused_attention_enabled()) return fused_memory(keys, encoder_states, mask, v);
  return {keys, encoder_states, mask, {}, {}, {}, {}};
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
    return fused_step(kernels::Score::Additive, project(query, W_s, query_weight), memory.v.defined() ? memory.v : v,
                      memory, 1.0);
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
  return {keys, values, mask, {}, {}, {}, {}};
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
