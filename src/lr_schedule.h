// Learning-rate schedules: constant, warm-up then inverse square root, and reduce-on-plateau of the
// validation score; every schedule can start with a linear warm-up.
#pragma once
#include <cstdint>

#include <nlohmann/json.hpp>

#include "config.h"

namespace s2s {

class LrSchedule {
 public:
  explicit LrSchedule(const TrainingConfig& config) : config_(config) {}
  // The rate for update number `step` (1-based).
  double rate(int64_t step) const;
  // After each validation; "plateau" multiplies the rate by lr_decay after lr_patience validations
  // without improvement (never below min_learning_rate).
  void on_validation(bool improved);
  // What a checkpoint must keep to continue the schedule exactly.
  nlohmann::json state() const { return {{"scale", scale_}, {"bad", bad_}}; }
  void load_state(const nlohmann::json& j);

 private:
  TrainingConfig config_;
  double scale_ = 1.0;  // plateau decay applied so far
  int64_t bad_ = 0;     // validations without improvement since the last decay
};

}  // namespace s2s
