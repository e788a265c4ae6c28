#include "model.h"

#include <cmath>

#include "row_parallel.h"
#include "vocabulary.h"
#include "worker_threads.h"

namespace s2s {
namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// [batch, tgt_len, vocab] float32 log-probabilities of each next target token, teacher-forced: the model's,
// or an ensemble's log of the mean of the models' probabilities (itself a log-softmax).
torch::Tensor next_token_log_probs(std::vector<Seq2Seq>& models, const Batch& batch) {
  std::vector<torch::Tensor> log_probs;
  for (auto& model : models) log_probs.push_back(torch::log_softmax(model->forward(batch).logits.to(torch::kFloat32), -1));
  if (log_probs.size() == 1) return log_probs.front();
  return torch::logsumexp(torch::stack(log_probs), 0) - std::log(static_cast<double>(models.size()));
}
}  // namespace

Seq2SeqImpl::Seq2SeqImpl(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab) : config_(config) {
  encoder = register_module("encoder", Encoder(config, src_vocab));
  decoder = register_module("decoder", Decoder(config, tgt_vocab, encoder->output_size()));
  initialize();
}

// Weight matrices: uniform(-init_range, init_range) or Xavier-uniform; biases zero; recurrent matrices
// (W_hh) orthogonal per gate block when orthogonal_recurrent is set; the <pad> embedding row zero.
void Seq2SeqImpl::initialize() {
  torch::NoGradGuard no_grad;
  for (auto& item : named_parameters()) {
    const auto& name = item.key();
    auto& p = item.value();
    const bool is_bias = p.dim() == 1 && !ends_with(name, ".v");  // v of the additive attention is a vector
    if (is_bias) {
      p.zero_();
    } else if (config_.orthogonal_recurrent && ends_with(name, "W_hh")) {
      for (auto block : p.chunk(p.size(0) / p.size(1), 0)) torch::nn::init::orthogonal_(block);
    } else if (config_.init == "xavier" && p.dim() == 2) {
      torch::nn::init::xavier_uniform_(p);
    } else {
      p.uniform_(-config_.init_range, config_.init_range);
    }
  }
  encoder->embedding->weight[Vocabulary::kPad].zero_();
  decoder->embedding->weight[Vocabulary::kPad].zero_();
}

Seq2Seq model_shell(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab) {
  auto gen = at::detail::getDefaultCPUGenerator();
  torch::Tensor saved;
  {
    std::lock_guard<std::mutex> lock(gen.mutex());
    saved = gen.get_state();
  }
  Seq2Seq model(config, src_vocab, tgt_vocab);
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(saved);
  return model;
}

int64_t Seq2SeqImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

DecoderImpl::TeacherForced Seq2SeqImpl::forward(const Batch& batch, double sampling_ratio) {
  auto encoded = encode(batch.src, batch.src_lengths);
  return decoder->forward(encoded, batch.tgt_in, sampling_ratio);
}

torch::Tensor mean_token_loss(const torch::Tensor& logits, const torch::Tensor& targets, double label_smoothing,
                              torch::Tensor* nll, torch::Tensor* tokens) {
  const auto V = logits.size(-1);
  auto flat = targets.reshape({-1});  // [N]
  // Per row: (1 - s) * nll + s * cross-entropy to the uniform distribution; 0 on padding.
  auto rows = cross_entropy_rows(logits.reshape({-1, V}), flat, label_smoothing, Vocabulary::kPad);
  auto count = flat.ne(Vocabulary::kPad).sum();
  if (nll) *nll = rows.nll;
  if (tokens) *tokens = count;
  return rows.loss.sum() / count.clamp_min(1).to(rows.loss.scalar_type());
}

LossResult sequence_loss(const torch::Tensor& logits, const torch::Tensor& targets, double label_smoothing) {
  LossResult r;
  torch::Tensor nll, tokens;
  r.loss = mean_token_loss(logits, targets, label_smoothing, &nll, &tokens);
  r.tokens = tokens.item<int64_t>();
  r.sum_nll = nll.sum().item<double>();
  return r;
}

CorpusLoss corpus_loss(Seq2Seq& model, const std::vector<Example>& examples, int64_t batch_size,
                       const torch::Device& device) {
  std::vector<Seq2Seq> one{model};
  return corpus_loss(one, examples, batch_size, device);
}

CorpusLoss corpus_loss(std::vector<Seq2Seq>& models, const std::vector<Example>& examples, int64_t batch_size,
                       const torch::Device& device) {
  const auto batches = ordered_batches(examples, batch_size, true);
  std::vector<LossResult> parts(batches.size());
  auto run_batch = [&](int64_t b) {
    torch::NoGradGuard no_grad;  // per thread
    const auto batch = make_batch(examples, batches[static_cast<size_t>(b)]).to(device);
    if (models.size() == 1) {
      parts[static_cast<size_t>(b)] = sequence_loss(models[0]->forward(batch).logits, batch.tgt_out, 0.0);
      return;
    }
    // The mixture's log-probabilities are their own log-softmax, so the loss of them as logits is its nll.
    parts[static_cast<size_t>(b)] = sequence_loss(next_token_log_probs(models, batch), batch.tgt_out, 0.0);
  };
  parallel_tasks(device, static_cast<int64_t>(batches.size()), run_batch);
  CorpusLoss total;
  for (const auto& part : parts) {
    total.sum_nll += part.sum_nll;
    total.tokens += part.tokens;
  }
  return total;
}

std::vector<std::vector<float>> target_log_probs(std::vector<Seq2Seq>& models, const std::vector<Example>& examples,
                                                 int64_t batch_size, const torch::Device& device) {
  const auto batches = ordered_batches(examples, batch_size, true);
  std::vector<std::vector<float>> out(examples.size());
  auto run_batch = [&](int64_t b) {
    torch::NoGradGuard no_grad;  // per thread
    const auto& indices = batches[static_cast<size_t>(b)];
    const auto batch = make_batch(examples, indices).to(device);
    // [B, T]: log p(tgt_out[r][j]); the rows' padding is cut off below
    const auto picked = next_token_log_probs(models, batch).gather(-1, batch.tgt_out.unsqueeze(-1)).squeeze(-1);
    const auto cpu = picked.to(torch::kCPU).contiguous();
    const auto a = cpu.accessor<float, 2>();
    for (size_t r = 0; r < indices.size(); ++r) {
      const auto n = static_cast<int64_t>(examples[static_cast<size_t>(indices[r])].tgt.size()) + 1;  // and </s>
      auto& row = out[static_cast<size_t>(indices[r])];
      row.reserve(static_cast<size_t>(n));
      for (int64_t j = 0; j < n; ++j) row.push_back(a[static_cast<int64_t>(r)][j]);
    }
  };
  parallel_tasks(device, static_cast<int64_t>(batches.size()), run_batch);
  return out;
}

}  // namespace s2s
