// Clipping of the global gradient norm and Adam's update as device operations that read nothing back to
// the CPU, so that a CUDA graph records them with the rest of the training step (cuda_graph_update.h).
//
// Outside a graph the step ends with clip_and_step (optimizer_step.h), which reads the gradient norm back
// to decide the clipping factor on the CPU and passes the step's learning rate and bias corrections to
// its kernels as numbers: a graph would keep the numbers of the step it was recorded in. Here the factor
// is computed on the device (min(1, max_norm / (norm + 1e-6)), as clip_grad_norm_ computes it), and the
// numbers that change from step to step (the learning rate over the bias correction of the first moment,
// the square root of the second's) are written before each step into device tensors that the recorded
// operations read. The update is Adam::step's, operation for operation (up to float rounding in another
// order); it reads and writes torch::optim::Adam's own state, so checkpoints and resuming are unchanged.
// On a GPU that saves two waits per step (the loss and the norm read back) and the launches of about 15
// multi-tensor operations.
//
// Built against LibTorch 2.3 or later, with float32 parameters on a GPU, the update after the clipping is
// one multi-tensor kernel instead of ten passes over the parameters: at::_fused_adam_, the kernel of
// PyTorch's Adam(fused=True), with the learning rate and the step count in device tensors written by
// begin_step() and the clipping factor given as its gradient scale (it divides each gradient by
// 1 / factor and stores the result, as the clipping does in place). Its arithmetic is Adam::step's in
// another rounding order (the bias corrections in float32, the gradient divided instead of multiplied).
// set_fused_adam(false) keeps the separate operations, to compare the two.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace s2s {

class GraphAdam {
 public:
  // The step for `optimizer` over `params`, or null with the reason in `why` when it cannot do it: not
  // Adam, weight decay or amsgrad (only Adam's plain update is done here), or not one parameter group
  // holding exactly `params`. Makes Adam's state of every parameter that has none yet (zero moments), so
  // that the operations recorded now find the tensors they will update.
  static std::unique_ptr<GraphAdam> make(torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& params,
                                         double clip_norm, std::string* why);

  // On the CPU, before each step, recorded or not: counts the step in Adam's state and writes this step's
  // numbers (learning rate from the group's options, bias corrections) where apply() reads them. Nothing
  // waits for the device.
  void begin_step();

  // The update from `grads` (one per parameter, same shapes; scaled in place by the clipping factor):
  // operations on the parameters' device only, with no value read back and no number in them that changes
  // from step to step.
  void apply(const std::vector<torch::Tensor>& grads);

  // A copy of the parameters and of the optimizer's state (moments and step counts), and putting it back
  // into the same tensors (a recorded graph keeps their addresses): the benchmark records the graphs of
  // its batches before timing them without updating the model.
  struct Saved {
    std::vector<torch::Tensor> params, exp_avgs, exp_avg_sqs;
    std::vector<int64_t> steps;
  };
  Saved save() const;
  void restore(const Saved& saved);

  bool fused() const { return fused_; }  // the update is at::_fused_adam_ (see above)

 private:
  GraphAdam() = default;
  torch::optim::Adam* adam_ = nullptr;
  std::vector<torch::Tensor> params_, exp_avgs_, exp_avg_sqs_;
  double clip_norm_ = 0, beta1_ = 0, beta2_ = 0, eps_ = 0;
  // [] on the parameters' device: -lr / (1 - beta1^step), sqrt(1 - beta2^step); max_norm
  torch::Tensor neg_step_size_, sqrt_bias2_, max_norm_;
  // fused: [] float32 on the parameters' device: the learning rate and the step count (Adam's state's,
  // which checkpoints keep), read by the kernel; the step count once per parameter, as it takes them
  bool fused_ = false;
  torch::Tensor lr_, step_;
  std::vector<torch::Tensor> steps_;
};

// GraphAdam inside the CUDA graphs (the default), or the optimiser's step after each replay as without
// graphs: for the benchmark, to compare the two.
void set_optimizer_in_graph(bool enabled);
bool optimizer_in_graph();

// GraphAdam's update as at::_fused_adam_ where it can be (the default), or as separate operations: for
// the benchmark and the tests, to compare the two. fused_adam_available(): this build has the kernel.
void set_fused_adam(bool enabled);
bool fused_adam();
bool fused_adam_available();

}  // namespace s2s
