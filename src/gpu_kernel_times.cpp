#include "gpu_kernel_times.h"

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "error.h"

#ifdef S2S_WITH_CUDA
#include <torch/csrc/autograd/profiler_kineto.h>
#include <torch/cuda.h>
#endif

namespace s2s {

#ifdef S2S_WITH_CUDA
bool gpu_kernel_times_available() { return true; }

nlohmann::json gpu_kernel_times(const std::function<void()>& step, int steps, int top) {
  namespace prof = torch::profiler::impl;
  namespace kin = torch::autograd::profiler;
  const prof::ProfilerConfig config(prof::ProfilerState::KINETO);
  const std::set<prof::ActivityType> activities{prof::ActivityType::CUDA};
  kin::prepareProfiler(config, activities);
  kin::enableProfiler(config, activities);
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < steps; ++i) step();
  torch::cuda::synchronize();
  const double wall_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  const auto result = kin::disableProfiler();

  struct Sum {
    int64_t calls = 0;
    double ns = 0;
  };
  std::map<std::string, Sum> by_name;
  double total_ns = 0;
  int64_t kernels = 0;
  for (const auto& e : result->events()) {
    if (e.deviceType() != c10::DeviceType::CUDA) continue;
    const auto name = e.name().substr(0, 100);
    const double ns = static_cast<double>(e.durationNs());
    by_name[name].calls += 1;
    by_name[name].ns += ns;
    total_ns += ns;
    ++kernels;
  }
  std::vector<std::pair<std::string, Sum>> sorted(by_name.begin(), by_name.end());
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second.ns > b.second.ns; });
  nlohmann::json list = nlohmann::json::array();
  for (size_t i = 0; i < sorted.size() && static_cast<int>(i) < top; ++i)
    list.push_back({{"name", sorted[i].first},
                    {"calls_per_step", static_cast<double>(sorted[i].second.calls) / steps},
                    {"ms_per_step", sorted[i].second.ns / 1e6 / steps},
                    {"share", sorted[i].second.ns / std::max(total_ns, 1.0)}});
  return {{"steps", steps},
          {"kernels_per_step", static_cast<double>(kernels) / steps},
          {"gpu_ms_per_step", total_ns / 1e6 / steps},
          {"wall_ms_per_step", wall_ms / steps},
          {"distinct_kernels", by_name.size()},
          {"top", list}};
}
#else
bool gpu_kernel_times_available() { return false; }

nlohmann::json gpu_kernel_times(const std::function<void()>&, int, int) {
  throw Error("kernel times need a build against a LibTorch with CUDA (this one has none)");
}
#endif

}  // namespace s2s
