// Greedy and beam search on the decoder's one-step function (DecoderImpl::step).
#pragma once
#include <vector>

#include <torch/torch.h>

#include "data.h"
#include "model.h"

namespace s2s {

struct SearchOptions {
  int64_t beam_size = 1;        // 1 = greedy
  int64_t n_best = 1;           // hypotheses returned per sentence (<= beam_size)
  double length_penalty = 1.0;  // beam: score / len^penalty (0 = raw log-probability)
  // GNMT's coverage penalty (Wu et al., 2016): a finished hypothesis's score gains
  // beta * sum_i log(min(sum_j alpha_ji, 1)) over the real source tokens i, so that outputs which leave
  // source words unattended rank lower; 0 = off. Needs attention.
  double coverage_penalty = 0.0;
  double max_length_ratio = 2.0;  // output at most ratio * source length + max_length_extra tokens
  int64_t max_length_extra = 10;
  int64_t max_length = 512;       // hard cap on output tokens, whatever the source length
  // Sampling instead of search (sample() below): n_best samples per sentence, each token drawn from the
  // model's next-token distribution, as back-translation by sampling does (Edunov et al., 2018).
  bool sampling = false;
  int64_t top_k = 0;         // draw only among the k most probable tokens; 0 = among all
  double temperature = 1.0;  // draw with probabilities proportional to p^(1 / temperature)
  uint64_t seed = 1;         // with the sentence's number, fixes its draws
};

// Throws s2s::Error, in the command line's words, when the options ask for what a search cannot give
// (more hypotheses than the beam keeps).
void check_search_options(const SearchOptions& options);

struct Hypothesis {
  std::vector<int64_t> tokens;                 // without </s>
  double score = 0;                            // sum of log-probabilities (beam: length-normalised, plus
                                               // the coverage penalty)
  std::vector<std::vector<float>> attention;   // [tokens + 1 (</s>)][source length incl. </s>]
};

// One list of n_best hypotheses per sentence of the batch, best first. The model is put in eval mode
// for the call and restored afterwards.
std::vector<std::vector<Hypothesis>> search(Seq2Seq& model, const Batch& batch, const SearchOptions& options);

// An ensemble: the models (of one source and one target vocabulary; any cells and attentions) decode in
// step, and each step's next-token distribution is the mean of the models' probabilities, as in OpenNMT-py
// and fairseq; a hypothesis's score is built from those. Its attention is the mean of the weights of the
// models that have attention (none: no attention). One model gives the same result as the call above.
std::vector<std::vector<Hypothesis>> search(std::vector<Seq2Seq>& models, const Batch& batch,
                                            const SearchOptions& options);

// Random sampling (options.sampling): options.n_best samples per sentence, each token drawn from the next-
// token distribution of the model (an ensemble: the mean of the models'), restricted to the top_k most
// probable tokens and sharpened or flattened by the temperature, until </s> or the length limit. A
// sample's score is its log-probability under the model (the full distribution, no temperature); the
// samples come best first. Sample k of sentence b draws from a generator seeded with (options.seed,
// sentence_ids[b], k), so the samples do not depend on the batch a sentence is in, the threads or the
// device.
std::vector<std::vector<Hypothesis>> sample(std::vector<Seq2Seq>& models, const Batch& batch,
                                            const SearchOptions& options, const std::vector<uint64_t>& sentence_ids);

}  // namespace s2s
