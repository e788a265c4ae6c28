// Checkpoints: one LibTorch archive (torch::serialize::OutputArchive, a zip that Python's torch.jit.load
// opens) holding the model parameters under their module names (docs/MODEL.md), the config and the
// tokenizers/vocabularies as JSON strings, the training position, optimiser state and RNG state.
// Files are written to a temporary name in the same folder, flushed to disk and renamed into place,
// so a run killed at any instant leaves every existing checkpoint loadable.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "config.h"
#include "data.h"
#include "model.h"

namespace s2s {

constexpr int64_t kCheckpointVersion = 1;

// Where training is: enough to continue exactly.
struct TrainState {
  int64_t step = 0;             // optimizer updates done
  int64_t epoch = 0;            // current epoch (0-based)
  int64_t batch_in_epoch = 0;   // batches of this epoch already consumed
  double best_score = -std::numeric_limits<double>::infinity();
  int64_t best_step = 0;
  int64_t bad_validations = 0;  // validations since the last improvement (early stopping)
  double elapsed_seconds = 0;
  int64_t batches_per_update = 1;  // processes x training.accumulate of the run that wrote it
  nlohmann::json lr_schedule;   // LrSchedule::state()
  nlohmann::json to_json() const;
  static TrainState from_json(const nlohmann::json& j);
};

struct CheckpointContents {
  std::string path;  // the file it was read from (for messages)
  Config config;
  TextCodec codec;
  TrainState state;
  std::shared_ptr<torch::serialize::InputArchive> archive;  // for restore_model / restore_optimizer
};

// `average`: the moving average of the weights (training.ema_decay, weight_average.h), stored beside them
// as "average" in the module layout of "model".
void save_checkpoint(const std::string& path, const Config& config, const TextCodec& codec, Seq2Seq& model,
                     torch::optim::Optimizer* optimizer, const TrainState& state, Seq2Seq* average = nullptr);
// Throws s2s::Error naming the path when the file is missing, truncated, not an s2s checkpoint or
// from a newer format version.
CheckpointContents read_checkpoint(const std::string& path);
// The trained weights (what training continues from).
Seq2Seq restore_model(const CheckpointContents& ckpt, const torch::Device& device);
// The moving average of the weights, where the run kept one (training.ema_decay); else null.
Seq2Seq restore_average(const CheckpointContents& ckpt, const torch::Device& device);
bool has_average(const CheckpointContents& ckpt);
// The weights to translate with: the average where there is one, else the trained weights.
Seq2Seq restore_translation_model(const CheckpointContents& ckpt, const torch::Device& device);
// Reads the optimiser state (onto the device of each parameter) and the random generators' states.
void restore_optimizer(const CheckpointContents& ckpt, torch::optim::Optimizer& optimizer);
// Moves the optimiser state (Adam's moments, SGD's momentum) to the device of its parameters.
void move_optimizer_state(torch::optim::Optimizer& optimizer);
// Model built from the checkpoint's config with its translation weights (restore_translation_model): all
// `s2s translate` needs.
struct LoadedModel {
  Config config;
  TextCodec codec;
  TrainState state;
  Seq2Seq model{nullptr};
};
LoadedModel load_model(const std::string& path, const torch::Device& device);

}  // namespace s2s
