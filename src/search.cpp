#include "search.h"

#include <cmath>
#include <limits>
#include <numeric>

#include "error.h"
#include "vocabulary.h"

namespace s2s {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Eval mode and no autograd for the lifetime of the guard; the previous mode is restored. A model already
// in eval mode is not written to, so that searches on several threads can share it (the caller puts it
// in eval mode first).
class InferenceGuard {
 public:
  explicit InferenceGuard(Seq2Seq& model) : model_(model), was_training_(model->is_training()) {
    if (was_training_) model_->eval();
  }
  ~InferenceGuard() {
    if (was_training_) model_->train(true);
  }

 private:
  Seq2Seq& model_;
  bool was_training_;
  torch::NoGradGuard no_grad_;
};

// GNMT's length normalisation (Wu et al., 2016): score / ((5 + len) / 6)^alpha.
double normalise(double log_prob, int64_t length, double alpha) {
  if (alpha == 0) return log_prob;
  return log_prob / std::pow((5.0 + static_cast<double>(length)) / 6.0, alpha);
}

// What one search step chose for every slot (sentence * beam + k), kept to trace hypotheses back.
struct StepRecord {
  std::vector<int64_t> token;
  std::vector<int64_t> parent;   // slot in the previous step
  torch::Tensor weights;         // [slots, src_len] on the CPU, or undefined without attention
};

struct Finished {
  int64_t step, slot;
  double log_prob, score;
};

Hypothesis trace_back(const std::vector<StepRecord>& history, const Finished& f, int64_t src_len) {
  Hypothesis h;
  h.score = f.score;
  std::vector<int64_t> tokens;
  std::vector<std::vector<float>> rows;
  int64_t slot = f.slot;
  for (int64_t t = f.step; t >= 0; --t) {
    const auto& rec = history[t];
    tokens.push_back(rec.token[slot]);
    if (rec.weights.defined()) {
      auto row = rec.weights[rec.parent[slot]];  // weights were computed before the reordering
      rows.emplace_back(row.data_ptr<float>(), row.data_ptr<float>() + src_len);
    }
    slot = rec.parent[slot];
  }
  std::reverse(tokens.begin(), tokens.end());
  std::reverse(rows.begin(), rows.end());
  if (!tokens.empty() && tokens.back() == Vocabulary::kEos) tokens.pop_back();
  h.tokens = std::move(tokens);
  h.attention = std::move(rows);
  return h;
}

}  // namespace

void check_search_options(const SearchOptions& o) {
  if (o.n_best > o.beam_size)
    throw Error("--n-best " + std::to_string(o.n_best) + " is more than --beam " + std::to_string(o.beam_size) +
                ": a search keeps at most beam-size hypotheses per sentence");
}

std::vector<std::vector<Hypothesis>> search(Seq2Seq& model, const Batch& batch, const SearchOptions& options) {
  InferenceGuard guard(model);
  const int64_t B = batch.src.size(0), K = std::max<int64_t>(1, options.beam_size);
  const int64_t n_best = std::clamp<int64_t>(options.n_best, 1, K);
  auto device = batch.src.device();
  auto lengths = batch.src_lengths.to(torch::kCPU);
  std::vector<int64_t> max_len(B), src_len(B);
  int64_t longest = 1;
  for (int64_t b = 0; b < B; ++b) {
    src_len[b] = lengths[b].item<int64_t>();
    const auto limit = static_cast<int64_t>(options.max_length_ratio * static_cast<double>(src_len[b])) +
                       options.max_length_extra;
    max_len[b] = std::clamp<int64_t>(limit, 1, std::max<int64_t>(1, options.max_length));
    longest = std::max(longest, max_len[b]);
  }

  // Encode once, then give every sentence K slots (slot = b * K + k).
  auto encoded = model->encode(batch.src, batch.src_lengths);
  auto& decoder = model->decoder;
  auto rows = torch::arange(B, torch::TensorOptions().dtype(torch::kInt64).device(device)).repeat_interleave(K);
  encoded.final = encoded.final.index_select(0, rows);
  encoded.states = encoded.states.index_select(0, rows);
  encoded.mask = encoded.mask.index_select(0, rows);
  auto memory = decoder->prepare_memory(encoded);
  auto state = decoder->init_state(encoded, memory);

  // Only the sentences still searched keep rows in the tensors: `active` lists them, and local row
  // i * K + k holds beam k of sentence active[i]. The records keep global slots (b * K + k).
  std::vector<int64_t> active(B);
  std::iota(active.begin(), active.end(), 0);
  std::vector<double> log_prob(B * K, kNegInf);  // per local row
  for (int64_t b = 0; b < B; ++b) log_prob[b * K] = 0;  // one live hypothesis per sentence to start
  std::vector<int64_t> prev_tokens(B * K, Vocabulary::kBos);
  std::vector<std::vector<Finished>> finished(B);
  std::vector<bool> done(B, false);
  std::vector<StepRecord> history;
  const auto long_options = torch::TensorOptions().dtype(torch::kInt64);
  auto step_weights = decoder->step_weights(longest, B * K);  // (no grad: packed once for all steps, or plain)

  for (int64_t t = 0; t < longest; ++t) {
    const int64_t A = static_cast<int64_t>(active.size());
    auto input = decoder->embed(torch::tensor(prev_tokens, torch::kInt64).to(device));
    state = decoder->step(input, state, memory, &step_weights);
    auto logits = decoder->output(state.cell.h, state.context, input.embedding, &step_weights);  // [A*K, V]
    auto logp = torch::log_softmax(logits.to(torch::kFloat32), -1);
    const int64_t V = logp.size(1);
    auto total = logp + torch::tensor(log_prob, torch::kFloat64).to(torch::kFloat32).to(device).unsqueeze(1);
    auto top = total.view({A, K * V}).topk(std::min<int64_t>(2 * K, K * V), 1);
    auto top_values = std::get<0>(top).to(torch::kCPU).contiguous();
    auto top_indices = std::get<1>(top).to(torch::kCPU).contiguous();
    auto tv = top_values.accessor<float, 2>();
    auto ti = top_indices.accessor<int64_t, 2>();

    StepRecord rec;
    rec.token.assign(B * K, Vocabulary::kPad);
    rec.parent.resize(B * K);
    for (int64_t b = 0; b < B; ++b)
      for (int64_t k = 0; k < K; ++k) rec.parent[b * K + k] = b * K;  // placeholder for unused slots
    if (state.weights.defined()) {
      // Rows of the global slots, so that tracing back does not depend on which sentences were active.
      auto local = state.weights.to(torch::kCPU, torch::kFloat32);
      std::vector<int64_t> slots;
      for (int64_t b : active)
        for (int64_t k = 0; k < K; ++k) slots.push_back(b * K + k);
      rec.weights = torch::zeros({B * K, local.size(1)}, local.options());
      rec.weights.index_copy_(0, torch::tensor(slots, long_options), local);
    }
    std::vector<double> next_log_prob(A * K, kNegInf);
    std::vector<int64_t> next_parent(A * K);  // local row each next row continues
    for (int64_t i = 0; i < A; ++i) {
      const int64_t b = active[i];
      for (int64_t k = 0; k < K; ++k) next_parent[i * K + k] = i * K;
      const bool last_step = t + 1 >= max_len[b];
      int64_t alive = 0;
      for (int64_t c = 0; c < top_values.size(1) && alive < K; ++c) {
        const double value = tv[i][c];
        if (std::isinf(value)) break;
        const int64_t beam = ti[i][c] / V, token = ti[i][c] % V;
        const int64_t slot = b * K + alive;
        rec.token[slot] = token;
        rec.parent[slot] = b * K + beam;
        next_parent[i * K + alive] = i * K + beam;
        if (token == Vocabulary::kEos || last_step) {
          // A finished hypothesis keeps its own slot in this step's record only for tracing back.
          finished[b].push_back({t, slot, value, normalise(value, t + 1, options.length_penalty)});
          ++alive;  // the slot is used by the record; it is not continued (log-prob stays -inf)
          continue;
        }
        next_log_prob[i * K + alive] = value;
        ++alive;
      }
      bool any_alive = false;
      for (int64_t k = 0; k < K; ++k) any_alive |= !std::isinf(next_log_prob[i * K + k]);
      if (static_cast<int64_t>(finished[b].size()) >= K || !any_alive || last_step) done[b] = true;
    }
    history.push_back(rec);

    // Next rows: the continued hypotheses of the sentences not done, in the same order.
    std::vector<int64_t> still_active, rows, memory_rows, tokens;
    std::vector<double> kept_log_prob;
    for (int64_t i = 0; i < A; ++i) {
      if (done[active[i]]) continue;
      still_active.push_back(active[i]);
      for (int64_t k = 0; k < K; ++k) {
        rows.push_back(next_parent[i * K + k]);
        memory_rows.push_back(i * K + k);
        tokens.push_back(rec.token[active[i] * K + k]);
        kept_log_prob.push_back(next_log_prob[i * K + k]);
      }
    }
    if (still_active.empty()) break;
    state = state.index_select(torch::tensor(rows, long_options).to(device));
    if (still_active.size() < active.size()) memory = memory.index_select(torch::tensor(memory_rows, long_options).to(device));
    active = std::move(still_active);
    log_prob = std::move(kept_log_prob);
    prev_tokens = std::move(tokens);
  }

  std::vector<std::vector<Hypothesis>> results(B);
  for (int64_t b = 0; b < B; ++b) {
    auto& f = finished[b];
    std::stable_sort(f.begin(), f.end(), [](const Finished& x, const Finished& y) { return x.score > y.score; });
    for (int64_t i = 0; i < std::min<int64_t>(n_best, f.size()); ++i)
      results[b].push_back(trace_back(history, f[i], src_len[b]));
  }
  return results;
}

}  // namespace s2s
