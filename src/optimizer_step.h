// The end of a training step once the gradients are in the parameters' .grad: clipping of the global
// gradient norm (training.clip_norm), then the optimiser's update.
//
// For Adam on CPU float32 parameters this is two passes over memory instead of about a dozen: one that
// sums the squared gradients, and one that, element by element, scales the gradient by the clipping
// factor and updates the two moments and the parameter, the update of torch::optim::Adam (LibTorch's C++
// optimiser, whose state it reads and writes, so checkpoints and resuming are unchanged). The unfused
// route (clip_grad_norm_ and Adam::step: mul, add, mul, addcmul, sqrt, div, add, addcdiv, each a pass of
// its own) is kept for SGD and the tests that compare the routes. Adam on other devices (a GPU) takes the
// multi-tensor route: the same operations as LibTorch's, each applied to all parameters in one call
// (_foreach), so a step launches a few kernels for them instead of about seven per parameter tensor.
#pragma once
#include <vector>

#include <torch/torch.h>

namespace s2s {

// Clips the gradients to `clip_norm` (<= 0: no clipping) and applies one optimiser update. The gradients'
// values after the call are unspecified (the next step zeroes them). Returns the gradient norm before
// clipping (0 when not clipping). square_sum >= 0: the sum of the squared gradients, already known
// (Update::grad_square_sum), so the fused route skips its own pass over them.
double clip_and_step(torch::optim::Optimizer& optimizer, const std::vector<torch::Tensor>& params,
                     double clip_norm, double square_sum = -1);

// The Adam state LibTorch keeps for parameter p (nullptr before its first step).
torch::optim::AdamParamState* adam_state(torch::optim::Adam& adam, const torch::Tensor& p);

// Adam::step's bookkeeping for parameter p: its state, made on first use as LibTorch makes it (zero
// moments), with the step counted.
torch::optim::AdamParamState& next_step_state(torch::optim::Adam& adam, const torch::Tensor& p);

// The fused routes on (the default) or off (LibTorch's clip_grad_norm_ and Adam::step).
void set_fused_optimizer(bool enabled);
bool fused_optimizer_enabled();
// The multi-tensor route (LibTorch's _foreach operations: what parameters on a GPU take) for CPU float32
// parameters too, instead of the fused loop: for the tests. Off by default.
void set_multi_tensor_on_cpu(bool enabled);

}  // namespace s2s
