// The one-line progress display of `s2s train` on a terminal: step, epoch, loss, tokens/s and the time
// to the next validation, redrawn in place. In a file or a pipe it draws nothing (the periodic log lines
// carry the same numbers), so logs never contain control characters.
#pragma once
#include <chrono>
#include <cstdint>

namespace s2s {

class ProgressLine {
 public:
  // `allowed` false (a secondary process of a multi-process run) draws nothing.
  explicit ProgressLine(bool allowed = true);
  struct Values {
    int64_t step, epoch;
    double loss, tokens_per_second, seconds_to_validation;
  };
  void update(const Values& v);  // redraws at most every 0.25 s
  void clear();                  // call before logging a line

 private:
  bool enabled_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_;
};

}  // namespace s2s
