#include "model.h"

#include "vocabulary.h"

namespace s2s {
namespace {
bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
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

int64_t Seq2SeqImpl::parameter_count() const {
  int64_t n = 0;
  for (const auto& p : parameters()) n += p.numel();
  return n;
}

DecoderImpl::TeacherForced Seq2SeqImpl::forward(const Batch& batch, double sampling_ratio) {
  auto encoded = encode(batch.src, batch.src_lengths);
  return decoder->forward(encoded, batch.tgt_in, sampling_ratio);
}

LossResult sequence_loss(const torch::Tensor& logits, const torch::Tensor& targets, double label_smoothing) {
  const auto V = logits.size(-1);
  auto logp = torch::log_softmax(logits.reshape({-1, V}), -1);  // [N, V]
  auto flat = targets.reshape({-1});                               // [N]
  auto real = flat.ne(Vocabulary::kPad);
  auto nll = -logp.gather(1, flat.clamp_min(0).unsqueeze(1)).squeeze(1);  // [N]
  nll = nll.masked_fill(real.logical_not(), 0);
  LossResult r;
  r.tokens = real.sum().item<int64_t>();
  auto nll_sum = nll.sum();
  r.sum_nll = nll_sum.item<double>();
  auto total = nll_sum;
  if (label_smoothing > 0) {
    auto smooth = -logp.mean(1).masked_fill(real.logical_not(), 0).sum();  // uniform-target cross-entropy
    total = (1 - label_smoothing) * nll_sum + label_smoothing * smooth;
  }
  r.loss = total / std::max<int64_t>(r.tokens, 1);
  return r;
}

}  // namespace s2s
