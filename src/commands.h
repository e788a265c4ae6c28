// The small subcommands: scoring files (`s2s bleu`, `s2s chrf`), inspecting and copying checkpoints
// (`s2s info`, `release`, `average`), word alignments from the attention (`s2s align`) and the model's
// log-probability of given translations (`s2s score`).
#pragma once
#include <string>
#include <vector>

namespace s2s {

struct ScoreCommand {
  std::string hyp, ref;
  bool lowercase = false;
  std::string tokenize = "13a";
  bool json = false;
};
int run_bleu(const ScoreCommand& cmd);
int run_chrf(const ScoreCommand& cmd);

int run_info(const std::string& checkpoint, bool json);
// `s2s release`: a copy of a checkpoint without the optimiser state, for translation (a third of the
// size with Adam; it can start a new run with --init-from, not be resumed).
int run_release(const std::string& checkpoint, const std::string& output);
// `s2s average`: a checkpoint whose every parameter is the mean of the checkpoints' (of one model: the
// same model config and vocabularies), with the newest one's config and training position and no
// optimiser state, as `release` writes. Averaging a run's last few checkpoints is common practice for
// Transformers (Vaswani et al. 2017 averaged the last 5); whether it helps a model is for its validation
// set to say (on this project's Multi30k RNN it did not: README).
int run_average(const std::vector<std::string>& checkpoints, const std::string& output);

// `s2s align`: the word alignment of each given sentence pair that the model's attention makes with the
// reference target teacher-forced (alignment.h: each target token to the source token it attends to
// most), one Pharaoh line per pair; with a gold file, the alignment error rate, precision and recall.
// Indices count tokens as the model's tokenizer splits the text (words, or SentencePiece pieces).
struct AlignCommand {
  std::string checkpoint, src, tgt;  // no tgt: src is a source<TAB>target file
  std::string gold, output;
  std::string format = "pharaoh";  // or "json": per pair {"alignment", "source_tokens", "target_tokens", "attention"}
  bool json = false;               // the scores (with gold) as JSON
  std::string device = "auto";
  int64_t threads = 0, batch_size = 64;
};
int run_align(const AlignCommand& cmd);

// `s2s score`: the log-probability that the model (or an ensemble: the mean of the models' probabilities)
// gives each target sentence of the pairs, teacher-forced, one number per line: the sum over its tokens and
// </s>, or with `normalize` their mean. For ranking n-best lists and filtering corpora, as Marian's scorer
// and fairseq's --score-reference do. The run's totals (tokens, perplexity) go to the log (stderr).
struct SentenceScoreCommand {
  std::vector<std::string> checkpoints;  // two or more: an ensemble
  std::string src, tgt;                  // no tgt: src is a source<TAB>target file
  std::string output;
  std::string format = "text";  // or "json": per pair {"score", "tokens", "target_tokens", "token_log_probs"}
  bool normalize = false;
  std::string device = "auto";
  int64_t threads = 0, batch_size = 64;
};
int run_score(const SentenceScoreCommand& cmd);

}  // namespace s2s
