// Random draws of a training forward pass: dropout masks and scheduled sampling's coin flips.
// By default they come from LibTorch's global generator, exactly as torch::dropout's do. Threads that
// compute the shards of one batch side by side (update.h) would interleave their draws on that one
// generator in an order that changes from run to run; so each shard's thread installs a generator of its
// own, seeded from (run seed, step, batch, shard), and a run stays repeatable and resumable.
#pragma once
#include <cstdint>
#include <optional>

#include <torch/torch.h>

namespace s2s {

// While alive, this thread's draws come from a CPU generator seeded with `seed`.
class ScopedGenerator {
 public:
  explicit ScopedGenerator(uint64_t seed);
  ~ScopedGenerator();
  ScopedGenerator(const ScopedGenerator&) = delete;
  ScopedGenerator& operator=(const ScopedGenerator&) = delete;

 private:
  at::Generator generator_;
  std::optional<at::Generator> previous_;
};

// Inverted dropout (what torch::dropout computes): x * bernoulli(1 - p) / (1 - p) while training.
torch::Tensor dropout(const torch::Tensor& x, double p, bool training);
// Uniform [0, 1) draws of shape [n] on `device`.
torch::Tensor uniform(int64_t n, const torch::Device& device);
// A well-mixed 64-bit value from several (splitmix64 over the parts), for per-shard seeds.
uint64_t mix_seed(uint64_t a, uint64_t b, uint64_t c = 0, uint64_t d = 0);

}  // namespace s2s
