#include "lr_schedule.h"

#include <algorithm>
#include <cmath>

namespace s2s {

double LrSchedule::rate(int64_t step) const {
  const double base = config_.learning_rate;
  const auto warmup = static_cast<double>(config_.warmup_steps);
  const auto s = static_cast<double>(std::max<int64_t>(step, 1));
  const double warm = warmup > 0 ? std::min(1.0, s / warmup) : 1.0;
  if (config_.lr_schedule == "rsqrt") return base * warm * std::sqrt(std::max(warmup, 1.0) / std::max(s, warmup));
  if (config_.lr_schedule == "plateau") return std::max(config_.min_learning_rate, base * scale_) * warm;
  return base * warm;
}

void LrSchedule::on_validation(bool improved) {
  if (config_.lr_schedule != "plateau") return;
  if (improved) {
    bad_ = 0;
    return;
  }
  if (++bad_ >= config_.lr_patience) {
    scale_ *= config_.lr_decay;
    bad_ = 0;
  }
}

void LrSchedule::load_state(const nlohmann::json& j) {
  scale_ = j.value("scale", 1.0);
  bad_ = j.value("bad", int64_t{0});
}

}  // namespace s2s
