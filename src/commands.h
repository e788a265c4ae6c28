// The small subcommands: scoring files (`s2s bleu`, `s2s chrf`) and inspecting a checkpoint (`s2s info`).
#pragma once
#include <string>

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

}  // namespace s2s
