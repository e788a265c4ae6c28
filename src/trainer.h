// `s2s train`: data, model, optimiser, then the step loop with validation, checkpoints and resume.
#pragma once
#include <string>
#include <vector>

namespace s2s {

struct TrainOptions {
  std::string config_path;
  std::vector<std::string> overrides;  // --set section.key=value
  std::string resume;                  // checkpoint path, "auto" or empty
  std::string init_from;               // checkpoint whose weights start a fresh run
  // A new run into an output_dir that holds checkpoints deletes them (and metrics.jsonl) first; without
  // it such a run is refused, as it would replace another run's last.pt and best.pt.
  bool overwrite = false;
};

// Returns the process exit status: 0 when training finished, 130/143 when interrupted by a signal
// (after writing a checkpoint), 1 when it had to stop (non-finite loss).
int train(const TrainOptions& options);

// Newest loadable checkpoint in a run folder ("" if none): last.pt, else the highest step-*.pt.
std::string find_resume_checkpoint(const std::string& output_dir);

}  // namespace s2s
