#include "search.h"

#include <cmath>
#include <limits>
#include <memory>
#include <numeric>
#include <random>

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

// The coverage term of GNMT's penalty: sum over the real source tokens (not </s>, the last column) of
// log(min(total attention the output gave it, 1)).
double coverage(const std::vector<std::vector<float>>& attention, int64_t src_len) {
  std::vector<double> total(static_cast<size_t>(std::max<int64_t>(src_len - 1, 0)), 0.0);
  for (const auto& row : attention)
    for (size_t i = 0; i < total.size(); ++i) total[i] += row[i];
  double sum = 0;
  for (const double t : total) sum += std::log(std::clamp(t, 1e-20, 1.0));
  return sum;
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

// One model of a search (an ensemble has several): its attention memory, decoder state and step weights.
struct Member {
  Seq2Seq model;
  AttentionMemory memory;
  DecoderState state;
  DecoderStepWeights weights;
};

struct StepOutput {
  torch::Tensor log_probs;  // [rows, V] float32
  torch::Tensor weights;    // [rows, src_len] attention, undefined when no model has attention
};

// One decoder step of every model on the previous tokens. One model: its log-softmax. Several: the log
// of the mean of their probabilities (OpenNMT-py's and fairseq's ensemble), and the mean of the attention
// weights of those that have attention. The weights are those that informed this step's output:
// alpha_{t-1} or alpha_t, as DecoderImpl::output_reads_step_attention says.
StepOutput ensemble_step(std::vector<Member>& members, const torch::Tensor& prev_tokens) {
  std::vector<torch::Tensor> weights;
  StepOutput out;
  const bool one = members.size() == 1;
  for (auto& m : members) {
    auto& decoder = m.model->decoder;
    auto input = decoder->embed(prev_tokens);
    const auto before = m.state.weights;  // alpha_{t-1}: its context enters this step's state
    m.state = decoder->step(input, m.state, m.memory, &m.weights);
    auto logits = decoder->output(m.state.cell.h, m.state.context, input.embedding, &m.weights).to(torch::kFloat32);
    if (one) out.log_probs = torch::log_softmax(logits, -1);  // [rows, V]
    else if (!out.log_probs.defined()) out.log_probs = torch::softmax(logits, -1);  // the sum of probabilities so far
    else out.log_probs.add_(torch::softmax(logits, -1));
    // The attention that informed this step's output (DecoderImpl::output_reads_step_attention).
    const auto& informed = decoder->output_reads_step_attention() ? m.state.weights : before;
    if (informed.defined()) weights.push_back(informed.to(torch::kFloat32));
  }
  if (!one) out.log_probs.div_(static_cast<double>(members.size())).log_();
  if (weights.size() == 1) out.weights = weights[0];
  else if (!weights.empty()) out.weights = torch::stack(weights).mean(0);
  return out;
}

// Each sentence's source length (with </s>) and output limit: max_length_ratio x source length +
// max_length_extra, within [1, max_length]; `longest` is the largest limit.
struct LengthLimits {
  std::vector<int64_t> src_len, max_len;
  int64_t longest = 1;
};
LengthLimits length_limits(const Batch& batch, const SearchOptions& options) {
  const auto lengths = batch.src_lengths.to(torch::kCPU);
  const int64_t B = lengths.size(0);
  LengthLimits l{std::vector<int64_t>(B), std::vector<int64_t>(B), 1};
  for (int64_t b = 0; b < B; ++b) {
    l.src_len[b] = lengths[b].item<int64_t>();
    const auto limit = static_cast<int64_t>(options.max_length_ratio * static_cast<double>(l.src_len[b])) +
                       options.max_length_extra;
    l.max_len[b] = std::clamp<int64_t>(limit, 1, std::max<int64_t>(1, options.max_length));
    l.longest = std::max(l.longest, l.max_len[b]);
  }
  return l;
}

// Every model encodes the batch once and gives each sentence `copies` rows (row b * copies + k), with its
// attention memory, initial state and step weights for up to `longest` steps.
std::vector<Member> start_members(std::vector<Seq2Seq>& models, const Batch& batch, int64_t copies, int64_t longest) {
  const int64_t B = batch.src.size(0);
  auto rows = torch::arange(B, torch::TensorOptions().dtype(torch::kInt64).device(batch.src.device()))
                  .repeat_interleave(copies);
  std::vector<Member> members;
  for (auto& model : models) {
    auto encoded = model->encode(batch.src, batch.src_lengths);
    encoded.final = encoded.final.index_select(0, rows);
    encoded.states = encoded.states.index_select(0, rows);
    encoded.mask = encoded.mask.index_select(0, rows);
    auto& decoder = model->decoder;
    auto memory = decoder->prepare_memory(encoded);
    auto state = decoder->init_state(encoded, memory);
    // (no grad: packed once for all steps, or plain)
    members.push_back({model, std::move(memory), std::move(state), decoder->step_weights(longest, B * copies)});
  }
  return members;
}

}  // namespace

void check_search_options(const SearchOptions& o) {
  if (o.sampling) {
    if (o.coverage_penalty != 0) throw Error("--coverage-penalty ranks a search's hypotheses; sampling takes none");
    if (o.beam_size != 1)
      throw Error("--sampling draws --n-best samples per sentence instead of searching: it takes no --beam (got " +
                  std::to_string(o.beam_size) + ")");
    if (!(o.temperature > 0)) throw Error("--temperature must be positive");
    if (o.top_k < 0) throw Error("--top-k must be 0 (all tokens) or more");
    return;
  }
  if (o.top_k != 0 || o.temperature != 1.0) throw Error("--top-k and --temperature need --sampling");
  if (o.coverage_penalty < 0) throw Error("--coverage-penalty must be 0 (off) or more");
  if (o.n_best > o.beam_size)
    throw Error("--n-best " + std::to_string(o.n_best) + " is more than --beam " + std::to_string(o.beam_size) +
                ": a search keeps at most beam-size hypotheses per sentence");
}

std::vector<std::vector<Hypothesis>> search(Seq2Seq& model, const Batch& batch, const SearchOptions& options) {
  std::vector<Seq2Seq> one{model};
  return search(one, batch, options);
}

std::vector<std::vector<Hypothesis>> search(std::vector<Seq2Seq>& models, const Batch& batch,
                                            const SearchOptions& options) {
  if (models.empty()) throw Error("search: no model");
  std::vector<std::unique_ptr<InferenceGuard>> guards;
  for (auto& model : models) guards.push_back(std::make_unique<InferenceGuard>(model));
  const int64_t B = batch.src.size(0), K = std::max<int64_t>(1, options.beam_size);
  const int64_t n_best = std::clamp<int64_t>(options.n_best, 1, K);
  auto device = batch.src.device();
  const auto [src_len, max_len, longest] = length_limits(batch, options);
  // Every model encodes once, then gives every sentence K slots (slot = b * K + k).
  auto members = start_members(models, batch, K, longest);

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

  for (int64_t t = 0; t < longest; ++t) {
    const int64_t A = static_cast<int64_t>(active.size());
    const auto step = ensemble_step(members, torch::tensor(prev_tokens, torch::kInt64).to(device));
    const auto& logp = step.log_probs;
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
    if (step.weights.defined()) {
      // Rows of the global slots, so that tracing back does not depend on which sentences were active.
      auto local = step.weights.to(torch::kCPU, torch::kFloat32);
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
    const auto state_rows = torch::tensor(rows, long_options).to(device);
    const bool drop_sentences = still_active.size() < active.size();
    const auto kept_memory_rows = drop_sentences ? torch::tensor(memory_rows, long_options).to(device) : torch::Tensor();
    for (auto& m : members) {
      m.state = m.state.index_select(state_rows);
      if (drop_sentences) m.memory = m.memory.index_select(kept_memory_rows);
    }
    active = std::move(still_active);
    log_prob = std::move(kept_log_prob);
    prev_tokens = std::move(tokens);
  }

  std::vector<std::vector<Hypothesis>> results(B);
  for (int64_t b = 0; b < B; ++b) {
    auto& f = finished[b];
    if (options.coverage_penalty != 0) {
      // Every finished hypothesis gets its coverage term, then they are ranked.
      std::vector<Hypothesis> all;
      for (const auto& x : f) {
        all.push_back(trace_back(history, x, src_len[b]));
        all.back().score += options.coverage_penalty * coverage(all.back().attention, src_len[b]);
      }
      std::stable_sort(all.begin(), all.end(), [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
      all.resize(std::min<size_t>(all.size(), static_cast<size_t>(n_best)));
      results[b] = std::move(all);
      continue;
    }
    std::stable_sort(f.begin(), f.end(), [](const Finished& x, const Finished& y) { return x.score > y.score; });
    for (int64_t i = 0; i < std::min<int64_t>(n_best, f.size()); ++i)
      results[b].push_back(trace_back(history, f[i], src_len[b]));
  }
  return results;
}

std::vector<std::vector<Hypothesis>> sample(std::vector<Seq2Seq>& models, const Batch& batch,
                                            const SearchOptions& options, const std::vector<uint64_t>& sentence_ids) {
  if (models.empty()) throw Error("sample: no model");
  std::vector<std::unique_ptr<InferenceGuard>> guards;
  for (auto& model : models) guards.push_back(std::make_unique<InferenceGuard>(model));
  const int64_t B = batch.src.size(0), K = std::max<int64_t>(1, options.n_best);
  if (static_cast<int64_t>(sentence_ids.size()) != B) throw Error("sample: one sentence id per sentence needed");
  auto device = batch.src.device();
  const auto [src_len, max_len, longest] = length_limits(batch, options);
  // Row r = b * K + k draws sample k of sentence b; rows leave the tensors when their sample ends.
  auto members = start_members(models, batch, K, longest);
  std::vector<std::mt19937_64> generators;
  for (int64_t b = 0; b < B; ++b)
    for (int64_t k = 0; k < K; ++k) {
      const uint64_t id = sentence_ids[static_cast<size_t>(b)];
      std::seed_seq seq{static_cast<uint32_t>(options.seed), static_cast<uint32_t>(options.seed >> 32),
                        static_cast<uint32_t>(id), static_cast<uint32_t>(id >> 32), static_cast<uint32_t>(k)};
      generators.emplace_back(seq);
    }

  std::vector<Hypothesis> drawn(B * K);
  std::vector<int64_t> active(B * K);  // the global row of each local row
  std::iota(active.begin(), active.end(), 0);
  std::vector<int64_t> prev_tokens(B * K, Vocabulary::kBos);
  const auto long_options = torch::TensorOptions().dtype(torch::kInt64);
  for (int64_t t = 0; t < longest && !active.empty(); ++t) {
    const auto step = ensemble_step(members, torch::tensor(prev_tokens, torch::kInt64).to(device));
    // The candidates of each row and their drawing probabilities, in float64 on the CPU.
    torch::Tensor candidates, log_probs = step.log_probs;
    if (options.top_k > 0 && options.top_k < log_probs.size(1)) {
      auto top = log_probs.topk(options.top_k, 1);
      log_probs = std::get<0>(top);
      candidates = std::get<1>(top).to(torch::kCPU).contiguous();
    }
    const auto draw_probs = torch::softmax(log_probs.to(torch::kFloat64) / options.temperature, 1).to(torch::kCPU).contiguous();
    const auto model_log_probs = step.log_probs.to(torch::kCPU).contiguous();  // [rows, V] float32
    const auto weights = step.weights.defined() ? step.weights.to(torch::kCPU, torch::kFloat32).contiguous() : torch::Tensor();
    const auto p = draw_probs.accessor<double, 2>();
    const int64_t width = draw_probs.size(1);
    const int64_t* top_token = candidates.defined() ? candidates.data_ptr<int64_t>() : nullptr;  // [rows, width]
    const auto lp = model_log_probs.accessor<float, 2>();
    std::vector<int64_t> keep, next_tokens;
    for (int64_t i = 0; i < static_cast<int64_t>(active.size()); ++i) {
      const int64_t r = active[i], b = r / K;
      // Inverse transform: the first candidate whose cumulative probability exceeds u in [0, 1).
      const double u = static_cast<double>(generators[r]() >> 11) * 0x1.0p-53;
      int64_t c = 0;
      double cumulative = p[i][0];
      while (cumulative <= u && c + 1 < width) cumulative += p[i][++c];
      const int64_t token = top_token ? top_token[i * width + c] : c;
      auto& h = drawn[r];
      h.score += lp[i][token];
      if (weights.defined()) {
        const float* row = weights[i].data_ptr<float>();
        h.attention.emplace_back(row, row + src_len[b]);
      }
      if (token == Vocabulary::kEos) continue;
      h.tokens.push_back(token);
      if (t + 1 >= max_len[b]) continue;
      keep.push_back(i);
      next_tokens.push_back(token);
    }
    if (keep.size() < active.size()) {
      const auto kept = torch::tensor(keep, long_options).to(device);
      for (auto& m : members) {
        m.state = m.state.index_select(kept);
        m.memory = m.memory.index_select(kept);
      }
      std::vector<int64_t> still;
      for (const auto i : keep) still.push_back(active[i]);
      active = std::move(still);
    }
    prev_tokens = std::move(next_tokens);
  }

  std::vector<std::vector<Hypothesis>> results(B);
  for (int64_t b = 0; b < B; ++b) {
    auto& list = results[b];
    for (int64_t k = 0; k < K; ++k) list.push_back(std::move(drawn[b * K + k]));
    std::stable_sort(list.begin(), list.end(), [](const Hypothesis& x, const Hypothesis& y) { return x.score > y.score; });
  }
  return results;
}

}  // namespace s2s
