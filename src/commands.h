// The small subcommands: scoring files (`s2s bleu`, `s2s chrf`) and inspecting a checkpoint (`s2s info`).
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

}  // namespace s2s
