// The gradients of one optimiser update. Three ways of computing them give the same update, up to the
// order of floating-point sums:
//  - one batch: backward of the mean loss per target token (the plain case);
//  - several batches (gradient accumulation; one rank's share of a multi-process update): gradients of
//    the summed token losses, summed over the batches (and, through the process group, the ranks), then
//    divided by the number of target tokens of all of them;
//  - shards: on the CPU, each batch's sentences are dealt to `shards` threads that each run forward and
//    backward on their part with one intra-op thread, side by side; their gradients are summed in shard
//    order (so the result does not depend on which thread finishes first). The recurrent steps are many
//    small operations that LibTorch's intra-op threads hardly split; whole sentences per thread keep
//    every core busy.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include <torch/torch.h>

#include "config.h"
#include "data.h"
#include "model.h"

namespace s2s {

class ProcessGroup;
class CudaGraphUpdate;

// One optimiser update's figures, the same on every rank.
struct Update {
  double loss = 0;              // per target token (with `pending`: once finish() has read it)
  int64_t tokens = 0;           // target tokens (all ranks)
  int64_t padded_cells = 0;     // this rank's batches: source and target cells with padding
  int64_t real_cells = 0;       // ... and without
  bool stop_requested = false;  // some rank got SIGINT/SIGTERM (multi-process runs)
  // The sum of the squares of every .grad value left by the update, when it was summed in passing (the
  // shards' gradients added up on one process: the clipping norm then needs no pass of its own); < 0 when
  // not known.
  double grad_square_sum = -1;
  // The optimizer's step (clipping included) was already applied with the update (UpdateOptions::optimizer
  // and CUDA graphs): the caller must not step it again. The gradients left in .grad are then clipped.
  bool stepped = false;
  // The loss is still on its way back from the GPU (UpdateOptions::defer_loss): the step was launched and
  // nothing waited for it. finish() waits for it and sets `loss`. A caller that reads it one step late (after
  // launching the next step) keeps the GPU busy while the CPU prepares the next batch.
  std::function<double()> pending;
  double finish() {
    if (pending) {
      loss = pending();
      pending = nullptr;
    }
    return loss;
  }
};

struct UpdateOptions {
  int64_t shards = 1;  // threads per batch (CPU); 1 = the batch as a whole
  uint64_t seed = 0;   // this update's random stream for the shards' dropout (see random.h)
  CudaGraphUpdate* graphs = nullptr;  // GPU, one batch, no process group: the step as CUDA graphs
  // With graphs: the run's optimizer, for the graphs to record its step too (CudaGraphUpdate::run)
  torch::optim::Optimizer* optimizer = nullptr;
  // With graphs: return before the step is done, its loss pending (Update::pending), so that the caller
  // can prepare the next step while the GPU runs this one
  bool defer_loss = false;
};

// Forward and backward of `batches` (index lists into `examples`; may be empty on a rank that has none
// this update). Leaves in the parameters' .grad the gradient of the mean token loss over all batches of
// the update (all ranks when `group` is given). Whatever .grad held before is replaced, so the caller need
// not zero it; a parameter that the loss does not reach gets a zero gradient.
Update compute_update(Seq2Seq& model, const std::vector<torch::Tensor>& params, const std::vector<Example>& examples,
                      const std::vector<std::vector<int64_t>>& batches, const TrainingConfig& t,
                      const torch::Device& device, const UpdateOptions& options, ProcessGroup* group);

// The sentences of a batch dealt round-robin into `shards` parts (batches are sorted by length, so the
// parts get similar numbers of tokens); fewer parts when the batch has fewer sentences.
std::vector<std::vector<int64_t>> split_batch(const std::vector<int64_t>& indices, int64_t shards);

// How many shards the training step uses on `device` with the config's training.cpu_parallel.
int64_t update_shards(const TrainingConfig& t, const torch::Device& device);

}  // namespace s2s
