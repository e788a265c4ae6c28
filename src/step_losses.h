// The training losses of one log interval, where a step's loss may still be on its way back from the GPU
// (Update::pending, CUDA graphs with UpdateOptions::defer_loss). Such a step is kept and its loss read when
// the next step is added, after that step was launched: the CPU prepares a step while the GPU runs the one
// before, and the GPU does not wait for the CPU between steps. The trainer settles the kept step before
// anything that must not follow an unchecked loss: a log line, validation, a checkpoint, the end.
#pragma once
#include <cstdint>
#include <optional>

#include "error.h"
#include "update.h"

namespace s2s {

// A loss that is NaN or infinite, and the step (counted from 1) that gave it.
class NonFiniteLoss : public Error {
 public:
  NonFiniteLoss(double loss, int64_t step);
  double loss;
  int64_t step;
};

class StepLosses {
 public:
  // Step `step`'s update. The step kept before is settled first. A loss already known is checked and
  // counted now, a pending one kept. Throws NonFiniteLoss (the kept step's or this one's).
  void add(Update update, int64_t step);
  // Reads the kept step's loss, if any (waiting for it), checks and counts it. Throws NonFiniteLoss.
  void settle();
  bool waiting() const { return kept_.has_value(); }
  int64_t counted() const { return counted_; }
  double mean() const;  // of the losses counted since reset(); 0 when none
  void reset();         // a new interval; a kept step stays kept

 private:
  void count(double loss, int64_t step);
  std::optional<Update> kept_;
  int64_t kept_step_ = 0;
  double sum_ = 0;
  int64_t counted_ = 0;
};

}  // namespace s2s
