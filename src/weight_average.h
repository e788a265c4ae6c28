// An exponential moving average of a model's weights (Polyak averaging, in the form of Marian's
// --exponential-smoothing and OpenNMT-py's -average_decay): after update n,
//   avg_n = d_n avg_{n-1} + (1 - d_n) w_n,   d_n = min(decay, (1 + n) / (10 + n)),   avg_0 = w_0,
// the second term of d_n (TensorFlow's ExponentialMovingAverage with num_updates) letting the first
// updates move the average quickly. Training (training.ema_decay) validates and keeps best.pt by the
// average, writes it into every checkpoint beside the trained weights, and translation uses it.
#pragma once
#include <vector>

#include <torch/torch.h>

#include "model.h"

namespace s2s {

// The decay of update `step` (1-based).
double average_decay(double decay, int64_t step);

class WeightAverage {
 public:
  // `average` holds the average (its own tensors, on the model's device), e.g. a copy of the model.
  WeightAverage(Seq2Seq average, double decay);
  // After update `step`: fold the model's current weights in.
  void update(Seq2Seq& model, int64_t step);
  // Exchange the model's weights with the average's, in place (the tensors keep their storage, so a
  // recorded CUDA graph still sees them); a second call restores both.
  void swap(Seq2Seq& model);
  Seq2Seq& average() { return average_; }
  double decay() const { return decay_; }

 private:
  Seq2Seq average_;
  double decay_;
};

// A new model of the same shape with a copy of `model`'s weights, on the same device.
Seq2Seq copy_model(Seq2Seq& model, int64_t src_vocab, int64_t tgt_vocab);

}  // namespace s2s
