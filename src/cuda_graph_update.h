// The training step on a GPU as CUDA graphs (training.cuda_graphs).
//
// A step of the recurrent model is about 800 small kernels for rnn+bahdanau (every decoder position runs
// the cell, the attention and their backward), each launched by the CPU: at hidden 512 and batch 256 an
// H200 spent 28 ms per step and stood idle half of it. A CUDA graph records the kernels of one step once and
// replays them with one launch.
//
// A graph fixes every shape, so batches are padded (pad_batch, data.h) to a multiple of
// cuda_graph_length_step in each length and of 8 sentences; batches of nearby lengths then share one
// graph. Padding changes nothing that is computed for the real sentences. A shape's first batch runs
// eagerly; its second is run eagerly once more on the capture stream (warming it up) and recorded; later
// ones replay. Every run of a shape, eager or replayed, is the same sequence of kernels on the same
// inputs, so they give the same results and draw the same dropout masks from LibTorch's CUDA generator
// (whose graph-safe state advances the same way in both): a run resumed from a checkpoint, which starts
// with fresh graphs, continues exactly as an uninterrupted one.
//
// With the optimizer (run's `optimizer`), the graph also records the clipping and Adam's update
// (graph_adam.h), so a replayed step waits for the device once, to read the loss back; with `defer_loss`
// that wait comes one step later, after the next step is launched (the trainer and the benchmark).
//
// Graphs share one memory pool (they run one at a time, and the only tensors that outlive a run, the
// inputs, the gradients and the loss, are allocated outside it), so a graph costs little more than its
// list of kernels; at most `max_graphs` shapes are recorded, later new shapes run eagerly. Batches are
// sorted by length inside pools (data.h), so even unpadded lengths repeat: Multi30k's 113 batches of 256
// sentences an epoch have 22 shapes, 25 over three epochs (64 sentences: 29 and 42); padded to multiples
// of 4, 8 and 9, at the cost of 16% padded cells instead of 8%.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "config.h"
#include "data.h"
#include "model.h"
#include "update.h"

namespace s2s {

class CudaGraphUpdate {
 public:
  CudaGraphUpdate(int64_t length_step, int64_t max_graphs = 256);
  ~CudaGraphUpdate();
  CudaGraphUpdate(const CudaGraphUpdate&) = delete;
  CudaGraphUpdate& operator=(const CudaGraphUpdate&) = delete;

  // Whether this build can record CUDA graphs (built against a CUDA LibTorch).
  static bool available();

  // compute_update for one batch (`batch` on the CPU, unpadded) on a CUDA device: leaves the gradient of
  // the mean token loss in the parameters' .grad. With `optimizer` (the same one at every call), the
  // clipping (t.clip_norm) and the optimizer's update are done too, recorded in the graphs, when
  // GraphAdam can do them (graph_adam.h: Adam without weight decay or amsgrad); Update::stepped says
  // whether they were, and the caller steps the optimizer itself when not.
  // With `defer_loss`, it returns once the step is launched, its loss pending (Update::pending): the
  // batch's copies to the GPU and the loss's copy back do not wait for the GPU either, so the CPU can
  // prepare the next step while the GPU runs this one.
  Update run(Seq2Seq& model, const std::vector<torch::Tensor>& params, const Batch& batch, const TrainingConfig& t,
             const torch::Device& device, torch::optim::Optimizer* optimizer = nullptr, bool defer_loss = false);

  // Records the graphs of these batches' shapes now, without updating the model (or the optimizer's
  // state): the benchmark's way of timing the steady state that a long run reaches after its first few
  // hundred steps. LibTorch's CUDA generator is put back afterwards, so the dropout masks of the steps that
  // follow are unchanged.
  void prepare(Seq2Seq& model, const std::vector<torch::Tensor>& params, const std::vector<Batch>& batches,
               const TrainingConfig& t, const torch::Device& device, torch::optim::Optimizer* optimizer = nullptr);

  // The padded shape a batch runs in: {rows, src_len, tgt_len}.
  std::vector<int64_t> shape_of(const Batch& batch) const;
  int64_t graphs() const;   // recorded so far
  int64_t replays() const;  // steps that replayed a graph
  int64_t eager() const;    // steps that ran eagerly
  bool optimizer_recorded() const;  // the runs include the optimizer's step (GraphAdam)
  bool optimizer_fused() const;     // and its update is one fused kernel (GraphAdam::fused)
  // The GPU's time of each replay so far, in ms (CUDA events around the replay; a deferred step's once its
  // loss is read): against the wall time of a step, what the step spends outside the graph (batch copies,
  // clipping and Adam when not recorded, the loss read back, the CPU's work while the GPU waits).
  const std::vector<double>& replay_gpu_ms() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int64_t length_step_;
};

// The work a graph records, on a padded batch already on the device: forward, the mean token loss and
// its gradients, written into `grads` (one tensor per parameter, a zero where the loss does not reach)
// and `loss` ([]). Nothing in it reads a value back to the CPU, which would end the recording. It runs on
// any device (the tests run it on the CPU).
void graph_step_body(Seq2Seq& model, const std::vector<torch::Tensor>& params, const Batch& padded,
                     const TrainingConfig& t, std::vector<torch::Tensor>& grads, torch::Tensor& loss);

// The trainer's and the benchmark's CudaGraphUpdate for training.cuda_graphs, or null when it is off or
// cannot apply (a CPU device, or several batches per update: warned about); throws s2s::Error when the
// build has no CUDA.
std::unique_ptr<CudaGraphUpdate> make_graph_update(const TrainingConfig& t, const torch::Device& device,
                                                   bool one_process);

}  // namespace s2s
