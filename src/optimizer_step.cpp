#include "optimizer_step.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>

#include <torch/csrc/autograd/variable.h>

#include "simd.h"
#include "worker_threads.h"

namespace s2s {
namespace {

std::atomic<bool> fused_enabled{true};
std::atomic<bool> multi_tensor_on_cpu{false};

constexpr int64_t kChunk = int64_t{1} << 14;  // elements per unit of work: 64 KiB of each array

// Torch's optimisers key their per-parameter state by the parameter's TensorImpl: as its printed address
// in LibTorch 1.13, as the pointer itself in later versions.
template <class Map>
typename Map::key_type state_key(const Map&, const torch::Tensor& p) {
  using Key = typename Map::key_type;
  if constexpr (std::is_same_v<Key, std::string>) {
    std::ostringstream s;
    s << p.unsafeGetTensorImpl();
    return s.str();
  } else {
    return static_cast<Key>(p.unsafeGetTensorImpl());
  }
}

struct AdamScalars {
  float scale;          // gradient clipping factor (1 = none)
  float beta1, beta2;   // moment decay rates
  float one_minus_beta1, one_minus_beta2;
  float sqrt_bias2;     // sqrt(1 - beta2^step)
  float eps;
  float step_size;      // lr / (1 - beta1^step)
};

// The update of torch::optim::Adam (no weight decay, no amsgrad) for n elements, with g scaled first:
//   m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;
//   p -= step_size * m / (sqrt(v) / sqrt_bias2 + eps)
void adam_portable(const AdamScalars& k, const float* grad, float* p, float* m, float* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = grad[i] * k.scale;
    const float mi = m[i] * k.beta1 + k.one_minus_beta1 * g;
    const float vi = v[i] * k.beta2 + k.one_minus_beta2 * g * g;
    m[i] = mi;
    v[i] = vi;
    p[i] -= k.step_size * (mi / (std::sqrt(vi) / k.sqrt_bias2 + k.eps));
  }
}

double squares_portable(const float* g, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += static_cast<double>(g[i]) * g[i];
  return s;
}

#ifdef S2S_SIMD_AVX2
S2S_AVX2 void adam_avx2(const AdamScalars& k, const float* grad, float* p, float* m, float* v, int64_t n) {
  const auto scale = _mm256_set1_ps(k.scale), b1 = _mm256_set1_ps(k.beta1), b2 = _mm256_set1_ps(k.beta2);
  const auto c1 = _mm256_set1_ps(k.one_minus_beta1), c2 = _mm256_set1_ps(k.one_minus_beta2);
  const auto sb2 = _mm256_set1_ps(k.sqrt_bias2), eps = _mm256_set1_ps(k.eps);
  const auto step = _mm256_set1_ps(k.step_size);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const auto g = _mm256_mul_ps(_mm256_loadu_ps(grad + i), scale);
    const auto mi = _mm256_fmadd_ps(c1, g, _mm256_mul_ps(_mm256_loadu_ps(m + i), b1));
    const auto vi = _mm256_fmadd_ps(_mm256_mul_ps(c2, g), g, _mm256_mul_ps(_mm256_loadu_ps(v + i), b2));
    const auto denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), sb2), eps);
    const auto pi = _mm256_fnmadd_ps(step, _mm256_div_ps(mi, denom), _mm256_loadu_ps(p + i));
    _mm256_storeu_ps(m + i, mi);
    _mm256_storeu_ps(v + i, vi);
    _mm256_storeu_ps(p + i, pi);
  }
  adam_portable(k, grad + i, p + i, m + i, v + i, n - i);
}

S2S_AVX2 double squares_avx2(const float* g, int64_t n) {
  auto lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const auto x = _mm256_loadu_ps(g + i);
    const auto a = _mm256_cvtps_pd(_mm256_castps256_ps128(x)), b = _mm256_cvtps_pd(_mm256_extractf128_ps(x, 1));
    lo = _mm256_fmadd_pd(a, a, lo);
    hi = _mm256_fmadd_pd(b, b, hi);
  }
  alignas(32) double lanes[4];
  _mm256_store_pd(lanes, _mm256_add_pd(lo, hi));
  return lanes[0] + lanes[1] + lanes[2] + lanes[3] + squares_portable(g + i, n - i);
}
#endif

void adam_rows(const AdamScalars& k, const float* grad, float* p, float* m, float* v, int64_t n) {
#ifdef S2S_SIMD_AVX2
  if (simd::avx2()) return adam_avx2(k, grad, p, m, v, n);
#endif
  adam_portable(k, grad, p, m, v, n);
}

double sum_of_squares(const float* g, int64_t n) {
#ifdef S2S_SIMD_AVX2
  if (simd::avx2()) return squares_avx2(g, n);
#endif
  return squares_portable(g, n);
}

bool fusable(const torch::Tensor& t) {
  return t.defined() && t.device().is_cpu() && t.scalar_type() == torch::kFloat && t.is_contiguous() &&
         !t.is_sparse();
}

// One parameter's share of the fused update.
struct Slot {
  torch::Tensor param, grad, exp_avg, exp_avg_sq;
  const torch::optim::AdamOptions* options;  // of the parameter's group
  AdamScalars scalars;
};

struct Chunk {
  size_t slot;
  int64_t begin, end;
};

std::vector<Chunk> chunks_of(const std::vector<Slot>& slots) {
  std::vector<Chunk> chunks;
  for (size_t s = 0; s < slots.size(); ++s)
    for (int64_t b = 0, n = slots[s].param.numel(); b < n; b += kChunk) chunks.push_back({s, b, std::min(n, b + kChunk)});
  return chunks;
}

// The parameters with a gradient, or nullopt when some cannot take a route: `suits(param, grad)`, and
// no weight decay or amsgrad (the routes do Adam's plain update only).
template <class Suits>
std::optional<std::vector<Slot>> adam_slots(torch::optim::Adam& adam, const Suits& suits) {
  std::vector<Slot> slots;
  for (auto& group : adam.param_groups()) {
    const auto& o = static_cast<const torch::optim::AdamOptions&>(group.options());
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (o.weight_decay() != 0 || o.amsgrad() || !suits(p, p.grad())) return std::nullopt;
      slots.push_back({p, p.grad(), {}, {}, &o, {}});
    }
  }
  return slots;
}

// The fused loop's: float32 CPU contiguous parameters and gradients.
std::optional<std::vector<Slot>> fused_slots(torch::optim::Adam& adam) {
  return adam_slots(adam, [](const torch::Tensor& p, const torch::Tensor& g) {
    return fusable(p) && fusable(g) && g.numel() == p.numel();
  });
}

// The state of each slot for this step and the scalars of its update.
void prepare_state(torch::optim::Adam& adam, std::vector<Slot>& slots, float scale) {
  for (auto& slot : slots) {
    const auto& o = *slot.options;
    auto& state = next_step_state(adam, slot.param);
    TORCH_CHECK(fusable(state.exp_avg()) && fusable(state.exp_avg_sq()), "Adam state of an unexpected layout");
    const double beta1 = std::get<0>(o.betas()), beta2 = std::get<1>(o.betas());
    const double bias1 = 1 - std::pow(beta1, static_cast<double>(state.step()));
    const double bias2 = 1 - std::pow(beta2, static_cast<double>(state.step()));
    slot.exp_avg = state.exp_avg();
    slot.exp_avg_sq = state.exp_avg_sq();
    slot.scalars = {scale,
                    static_cast<float>(beta1),
                    static_cast<float>(beta2),
                    static_cast<float>(1 - beta1),
                    static_cast<float>(1 - beta2),
                    static_cast<float>(std::sqrt(bias2)),
                    static_cast<float>(o.eps()),
                    static_cast<float>(o.lr() / bias1)};
  }
}

double fused_clip_and_adam(torch::optim::Adam& adam, std::vector<Slot> slots, double clip_norm, double square_sum) {
  torch::NoGradGuard no_grad;
  const auto chunks = chunks_of(slots);
  const auto n_chunks = static_cast<int64_t>(chunks.size());
  double norm = 0;
  float scale = 1;
  if (clip_norm > 0 && square_sum < 0) {
    // Partial sums per chunk, added in chunk order: the same norm at any thread count.
    std::vector<double> partial(chunks.size(), 0.0);
    parallel_ranges(n_chunks, [&](int64_t begin, int64_t end) {
      for (int64_t c = begin; c < end; ++c) {
        const auto& ch = chunks[c];
        partial[c] = sum_of_squares(slots[ch.slot].grad.data_ptr<float>() + ch.begin, ch.end - ch.begin);
      }
    });
    square_sum = 0;
    for (double x : partial) square_sum += x;
  }
  if (clip_norm > 0) {
    norm = std::sqrt(square_sum);
    // clip_grad_norm_'s factor: max_norm / (norm + 1e-6), applied when below 1.
    scale = static_cast<float>(std::min(1.0, clip_norm / (norm + 1e-6)));
  }
  prepare_state(adam, slots, scale);
  parallel_ranges(n_chunks, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      const auto& ch = chunks[c];
      auto& s = slots[ch.slot];
      adam_rows(s.scalars, s.grad.data_ptr<float>() + ch.begin, s.param.data_ptr<float>() + ch.begin,
                s.exp_avg.data_ptr<float>() + ch.begin, s.exp_avg_sq.data_ptr<float>() + ch.begin, ch.end - ch.begin);
    }
  });
  // Written through raw pointers: count the change as LibTorch's in-place operations do, so that autograd
  // still notices a parameter modified after a graph saved it.
  for (auto& s : slots)
    for (auto* t : {&s.param, &s.exp_avg, &s.exp_avg_sq}) torch::autograd::impl::bump_version(*t);
  return norm;
}

// --- the multi-tensor route -------------------------------------------------------------------------
// For parameters where the fused loop cannot run (a GPU's): the same clipping and Adam update as
// clip_grad_norm_ and Adam::step, operation for operation, but each operation applied to all parameters
// at once with LibTorch's multi-tensor (_foreach) functions. Adam::step issues about 7 operations per
// parameter tensor and clip_grad_norm_ 2; on a GPU each is a kernel launch of its own (about 24 us each
// on the lent H200, README "On a GPU"), and a _foreach operation launches a few for all of them.

struct Update1 {  // the parameters that share one set of scalars (one options group, one step count)
  const torch::optim::AdamOptions* options;
  int64_t step;
  std::vector<torch::Tensor> params, grads, exp_avgs, exp_avg_sqs;
};

// The multi-tensor route's: dense floating-point gradients of their parameter's shape, device and type.
std::optional<std::vector<Slot>> multi_tensor_slots(torch::optim::Adam& adam) {
  return adam_slots(adam, [](const torch::Tensor& p, const torch::Tensor& g) {
    return !p.is_sparse() && !g.is_sparse() && g.sizes() == p.sizes() && g.device() == p.device() &&
           g.scalar_type() == p.scalar_type() && at::isFloatingType(p.scalar_type());
  });
}

double multi_tensor_clip_and_adam(torch::optim::Adam& adam, const std::vector<Slot>& slots, double clip_norm,
                                  double square_sum) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads;
  for (const auto& s : slots) grads.push_back(s.grad);
  double norm = 0;
  if (clip_norm > 0 && !grads.empty()) {
    // clip_grad_norm_: the 2-norm of the parameters' 2-norms, and the factor max_norm / (norm + 1e-6)
    // applied to the gradients when it is below 1
    norm = square_sum >= 0 ? std::sqrt(square_sum) : at::stack(at::_foreach_norm(grads)).norm().item<double>();
    const double factor = clip_norm / (norm + 1e-6);
    if (factor < 1) at::_foreach_mul_(grads, factor);
  }
  std::vector<Update1> updates;
  for (const auto& s : slots) {
    auto& state = next_step_state(adam, s.param);
    auto it = std::find_if(updates.begin(), updates.end(),
                           [&](const Update1& u) { return u.options == s.options && u.step == state.step(); });
    if (it == updates.end()) {
      updates.push_back({s.options, state.step(), {}, {}, {}, {}});
      it = updates.end() - 1;
    }
    it->params.push_back(s.param);
    it->grads.push_back(s.grad);
    it->exp_avgs.push_back(state.exp_avg());
    it->exp_avg_sqs.push_back(state.exp_avg_sq());
  }
  for (auto& u : updates) {
    // Adam::step: m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g g;
    // p -= lr / bias1 * m / (sqrt(v) / sqrt(bias2) + eps)
    const double beta1 = std::get<0>(u.options->betas()), beta2 = std::get<1>(u.options->betas());
    const double bias1 = 1 - std::pow(beta1, static_cast<double>(u.step));
    const double bias2 = 1 - std::pow(beta2, static_cast<double>(u.step));
    at::_foreach_mul_(u.exp_avgs, beta1);
    at::_foreach_add_(u.exp_avgs, u.grads, 1 - beta1);
    at::_foreach_mul_(u.exp_avg_sqs, beta2);
    at::_foreach_addcmul_(u.exp_avg_sqs, u.grads, u.grads, 1 - beta2);
    auto denom = at::_foreach_sqrt(u.exp_avg_sqs);
    at::_foreach_div_(denom, std::sqrt(bias2));
    at::_foreach_add_(denom, u.options->eps());
    at::_foreach_addcdiv_(u.params, u.exp_avgs, denom, -u.options->lr() / bias1);
  }
  return norm;
}

}  // namespace

torch::optim::AdamParamState* adam_state(torch::optim::Adam& adam, const torch::Tensor& p) {
  auto& states = adam.state();
  const auto it = states.find(state_key(states, p));
  return it == states.end() ? nullptr : static_cast<torch::optim::AdamParamState*>(it->second.get());
}

torch::optim::AdamParamState& next_step_state(torch::optim::Adam& adam, const torch::Tensor& p) {
  auto* found = adam_state(adam, p);
  if (!found) {
    auto fresh = std::make_unique<torch::optim::AdamParamState>();
    fresh->step(0);
    fresh->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    fresh->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
    found = fresh.get();
    adam.state().emplace(state_key(adam.state(), p), std::move(fresh));
  }
  found->step(found->step() + 1);
  return *found;
}

double clip_and_step(torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& params,
                     double clip_norm, double square_sum) {
  if (fused_optimizer_enabled()) {
    if (auto* adam = dynamic_cast<torch::optim::Adam*>(&optimizer)) {
      if (!multi_tensor_on_cpu.load())
        if (auto slots = fused_slots(*adam)) return fused_clip_and_adam(*adam, std::move(*slots), clip_norm, square_sum);
      if (auto slots = multi_tensor_slots(*adam)) return multi_tensor_clip_and_adam(*adam, *slots, clip_norm, square_sum);
    }
  }
  double norm = 0;
  if (clip_norm > 0) norm = torch::nn::utils::clip_grad_norm_(params, clip_norm);
  optimizer.step();
  return norm;
}

void set_fused_optimizer(bool enabled) { fused_enabled.store(enabled); }
void set_multi_tensor_on_cpu(bool enabled) { multi_tensor_on_cpu.store(enabled); }
bool fused_optimizer_enabled() { return fused_enabled.load(); }

}  // namespace s2s
