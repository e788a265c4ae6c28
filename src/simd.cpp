#include "simd.h"

#include <atomic>

namespace s2s::simd {
namespace {
std::atomic<bool> allowed{true};
}

bool avx2() {
#ifdef S2S_SIMD_AVX2
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return supported && allowed.load(std::memory_order_relaxed);
#else
  return false;
#endif
}

void allow_avx2(bool value) { allowed.store(value); }

}  // namespace s2s::simd
