// A weight that every step of a recurrence multiplies by (the cell's W_hh, the decoder's W_c, the
// attention's query projection), with its gradient made once per sequence instead of once per step.
//
// Left to autograd, each step's product y_j = x_j W^T adds dL/dW += dy_j^T x_j in the backward pass: one
// [N x rows] x [rows x K] product per step, with rows = the batch (32-64 sentences), too few for the
// matrix kernels to run near their speed, and one add into the running total. A StepWeight keeps each
// step's x_j as the forward pass runs and each step's dy_j as the backward pass runs (references to the
// tensors, not copies: on a GPU a copy per step and weight was a kernel launch); the weight's own
// backward node runs after all the steps' (they take its output as input), joins them and makes
//   dL/dW = [dy_1; ...; dy_T]^T [x_1; ...; x_T]
// in one product over all steps. The kept x_j must not be changed in place before the backward pass
// (nothing in the model does). A step whose input needs no gradient (a zero initial state) gets no dL/dx. The steps' dL/dx_j = dy_j W are still made step by step: the recurrence
// needs them in order.
//
// Without a backward pass (search, no grad) or when switched off, each step is a plain product.
//
// Where the processor has AVX-512F (packed_gemm.h), the recorded steps' products, x_j W^T forward and
// dy_j W backward, multiply by copies of W^T and W packed once per sequence instead of once per step; so
// do a search's steps (no grad).
#pragma once
#include <cstdint>
#include <memory>

#include <torch/torch.h>

#include "packed_gemm.h"

namespace s2s {

struct StepRecording;  // step_weight.cpp

class StepWeight {
 public:
  StepWeight() = default;
  // weight [N, K], or a stack of D weights [D, N, K] (the products batched); at most `steps` products,
  // each of `rows` rows.
  StepWeight(const torch::Tensor& weight, int64_t steps, int64_t rows);
  // c + x W^T for the next step: x [rows, K]; c [rows, N], or [N] (a bias), or undefined. With a stack:
  // x [D, rows, K]; c [D, rows, N], or [D, 1, N], or undefined.
  torch::Tensor addmm(const torch::Tensor& c, const torch::Tensor& x);
  bool deferred() const { return recording_ != nullptr; }

 private:
  torch::Tensor weight_;                      // the weight as the steps see it (deferred: the recording node's output)
  std::shared_ptr<StepRecording> recording_;  // deferred: the steps' inputs and output gradients
  int64_t steps_ = 0, rows_ = 0;              // deferred: at most steps_ products of rows_ rows
  PackedMatrix forward_, backward_;  // float32 with AVX-512F: W^T (deferred or no grad) and W (deferred) packed
  int64_t next_ = 0;
};

// Used whenever a backward pass follows, unless switched off here (the tests compare the two).
void set_deferred_step_weights(bool enabled);
bool deferred_step_weights_enabled();

}  // namespace s2s
