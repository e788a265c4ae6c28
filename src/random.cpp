#include "random.h"

#include <ATen/CPUGeneratorImpl.h>

namespace s2s {
namespace {
thread_local std::optional<at::Generator> current;
}  // namespace

ScopedGenerator::ScopedGenerator(uint64_t seed)
    : generator_(at::detail::createCPUGenerator(seed)), previous_(current) {
  current = generator_;
}

ScopedGenerator::~ScopedGenerator() { current = previous_; }

torch::Tensor dropout(const torch::Tensor& x, double p, bool training) {
  if (!current || !training || p <= 0 || !x.device().is_cpu()) return torch::dropout(x, p, training);
  auto keep = torch::empty_like(x).bernoulli_(1 - p, *current);
  return x * keep.div_(1 - p);
}

torch::Tensor uniform(int64_t n, const torch::Device& device) {
  if (!current || !device.is_cpu()) return torch::rand({n}, torch::TensorOptions().device(device));
  return torch::rand({n}, *current);
}

uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c, uint64_t d) {
  uint64_t h = 0x9E3779B97F4A7C15ULL;
  for (uint64_t v : {a, b, c, d}) {
    h += v + 0x9E3779B97F4A7C15ULL;
    uint64_t z = h;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    h = z ^ (z >> 31);
  }
  return h;
}

}  // namespace s2s
