#include "step_losses.h"

#include <cmath>
#include <sstream>

namespace s2s {
namespace {

std::string non_finite_message(double loss, int64_t step) {
  std::ostringstream os;
  os << "the loss became " << loss << " at step " << step;
  return os.str();
}

}  // namespace

NonFiniteLoss::NonFiniteLoss(double loss_, int64_t step_)
    : Error(non_finite_message(loss_, step_)), loss(loss_), step(step_) {}

void StepLosses::add(Update update, int64_t step) {
  settle();
  if (update.pending) {
    kept_ = std::move(update);
    kept_step_ = step;
  } else {
    count(update.loss, step);
  }
}

void StepLosses::settle() {
  if (!kept_) return;
  const double loss = kept_->finish();
  const int64_t step = kept_step_;
  kept_.reset();
  count(loss, step);
}

void StepLosses::count(double loss, int64_t step) {
  if (!std::isfinite(loss)) throw NonFiniteLoss(loss, step);
  sum_ += loss;
  ++counted_;
}

double StepLosses::mean() const { return counted_ ? sum_ / static_cast<double>(counted_) : 0.0; }

void StepLosses::reset() {
  sum_ = 0;
  counted_ = 0;
}

}  // namespace s2s
