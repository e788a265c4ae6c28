// Encoder + decoder + output layer, built from the config and the vocabulary sizes.
#pragma once
#include <torch/torch.h>

#include "config.h"
#include "data.h"
#include "decoder.h"
#include "encoder.h"

namespace s2s {

class Seq2SeqImpl : public torch::nn::Module {
 public:
  Seq2SeqImpl(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab);

  EncoderOutput encode(const torch::Tensor& src, const torch::Tensor& lengths) { return encoder->forward(src, lengths); }
  // Teacher-forced pass over a batch: logits [batch, tgt_len, vocab] and alpha [batch, tgt_len, src_len].
  // sampling_ratio: scheduled sampling's probability of feeding the model's own previous prediction.
  DecoderImpl::TeacherForced forward(const Batch& batch, double sampling_ratio = 0);

  const ModelConfig& config() const { return config_; }
  int64_t parameter_count() const;

  Encoder encoder{nullptr};
  Decoder decoder{nullptr};

 private:
  void initialize();
  ModelConfig config_;
};
TORCH_MODULE(Seq2Seq);

// A model of this shape for weights that are copied in afterwards (a moving average, a checkpoint's),
// made without drawing from the global CPU random generator, so that training draws the same random
// numbers with or without it.
Seq2Seq model_shell(const ModelConfig& config, int64_t src_vocab, int64_t tgt_vocab);

struct LossResult {
  torch::Tensor loss;  // scalar, mean over real target tokens (what is optimised)
  double sum_nll = 0;  // summed negative log-likelihood of the references (no smoothing), for perplexity
  int64_t tokens = 0;
};
// Cross-entropy over the real target tokens, with optional label smoothing.
LossResult sequence_loss(const torch::Tensor& logits, const torch::Tensor& targets, double label_smoothing);
// The same mean as a tensor, computed without reading anything back to the CPU (a CUDA graph records it,
// cuda_graph_update.h); `nll` and `tokens`, when given, receive the per-row negative log-likelihoods and
// the count of real target tokens ([], int64), both on the logits' device.
torch::Tensor mean_token_loss(const torch::Tensor& logits, const torch::Tensor& targets, double label_smoothing,
                              torch::Tensor* nll = nullptr, torch::Tensor* tokens = nullptr);

// The references' summed negative log-likelihood (no smoothing) and their target tokens over a corpus:
// teacher forcing, no autograd, batches of `batch_size` sentences sorted by length. On the CPU the
// batches run side by side on the worker threads where they exist (worker_threads.h); their sums are
// added in batch order, so the result does not depend on that. The model is expected in eval mode (and
// is only read).
struct CorpusLoss {
  double sum_nll = 0;
  int64_t tokens = 0;
};
CorpusLoss corpus_loss(Seq2Seq& model, const std::vector<Example>& examples, int64_t batch_size,
                       const torch::Device& device);
// An ensemble's (search.h): each token's probability is the mean of the models' probabilities. One model
// gives the result of the call above.
CorpusLoss corpus_loss(std::vector<Seq2Seq>& models, const std::vector<Example>& examples, int64_t batch_size,
                       const torch::Device& device);

// Each example's target log-probabilities, token by token (y_1 .. y_t, then </s>), under the model or the
// ensemble's mean of probabilities, with the target teacher-forced: `s2s score`. In the examples' order,
// whatever the batching (batches as corpus_loss makes them; padding changes nothing); models in eval mode.
std::vector<std::vector<float>> target_log_probs(std::vector<Seq2Seq>& models, const std::vector<Example>& examples,
                                                 int64_t batch_size, const torch::Device& device);

}  // namespace s2s
