// GPU time per kernel of a few training steps, from LibTorch's Kineto profiler (CUPTI's kernel records):
// where a GPU step's time goes, for `s2s bench --kernel-times` (README, "On a GPU"). The kernels of a
// replayed CUDA graph are recorded one by one, as those of an eager step. A build against a LibTorch
// without CUDA has nothing to profile and stops with an error.
#pragma once
#include <functional>

#include <nlohmann/json.hpp>

namespace s2s {

// Runs `step` `steps` times under the profiler (waiting for the GPU before it stops) and returns
//   {"steps", "kernels_per_step", "gpu_ms_per_step" (the kernels' summed durations), "wall_ms_per_step",
//    "top": [{"name", "calls_per_step", "ms_per_step", "share"}, ...]}
// with the `top` kernels by time, names shortened to their first 100 characters.
nlohmann::json gpu_kernel_times(const std::function<void()>& step, int steps, int top = 25);

// Whether this build can profile GPU kernels (a CUDA LibTorch).
bool gpu_kernel_times_available();

}  // namespace s2s
