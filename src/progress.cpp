#include "progress.h"

#include <unistd.h>

#include <cstdio>

namespace s2s {

ProgressLine::ProgressLine(bool allowed) : enabled_(allowed && isatty(STDERR_FILENO) == 1), last_(std::chrono::steady_clock::now()) {}

void ProgressLine::update(const Values& v) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (shown_ && now - last_ < std::chrono::milliseconds(250)) return;
  last_ = now;
  std::fprintf(stderr, "\r\033[K  step %lld | epoch %lld | loss %.4f | %.0f tgt tok/s | next validation in %.0f s",
               static_cast<long long>(v.step), static_cast<long long>(v.epoch), v.loss, v.tokens_per_second,
               v.seconds_to_validation);
  std::fflush(stderr);
  shown_ = true;
}

void ProgressLine::clear() {
  if (!enabled_ || !shown_) return;
  std::fputs("\r\033[K", stderr);
  std::fflush(stderr);
  shown_ = false;
}

}  // namespace s2s
