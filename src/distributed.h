// Data-parallel training on PyTorch's c10d engine: the process group is Gloo on CPUs and NCCL in CUDA
// builds, set up from the variables that torchrun (or SLURM wrappers that mimic it) export: RANK,
// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT. Without them the program is a
// single process and none of this is used.
#pragma once
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace s2s {

struct DistributedEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  int local_world_size = 1;
  std::string master_addr;
  int master_port = 0;
  bool active() const { return world_size > 1; }
};

// Reads the launcher's variables. Throws s2s::Error naming the variable when one is malformed or
// inconsistent (RANK >= WORLD_SIZE, WORLD_SIZE > 1 without MASTER_ADDR/MASTER_PORT, ...).
DistributedEnv distributed_env_from_environment();

// One process's membership of the group. Collectives throw s2s::Error (naming this rank and the
// timeout) when another rank died, or did not answer within the timeout.
class ProcessGroup {
 public:
  // Connects to the others (rank 0 hosts the TCPStore rendezvous); waits at most `timeout`.
  // `device` picks the backend: NCCL for CUDA (CUDA builds), Gloo otherwise.
  ProcessGroup(const DistributedEnv& env, std::chrono::milliseconds timeout, const torch::Device& device);
  ~ProcessGroup();
  ProcessGroup(const ProcessGroup&) = delete;
  ProcessGroup& operator=(const ProcessGroup&) = delete;

  int rank() const { return env_.rank; }
  int size() const { return env_.world_size; }
  const std::string& backend() const { return backend_; }

  // Sums each tensor across ranks, in place. Contiguous tensors of one dtype and device.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors);
  // Copies rank `root`'s tensors to every rank, in place.
  void broadcast(std::vector<torch::Tensor>& tensors, int root = 0);

 private:
  struct Impl;
  DistributedEnv env_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
  std::unique_ptr<Impl> impl_;
};

// Sums the gradients of `params` across ranks in a few large flat buffers (not one call per parameter)
// with `extra` (a small float tensor of per-step counters) appended to the last one, and writes the
// sums back. Undefined gradients count as zero. `bucket_bytes` bounds a buffer's size.
void all_reduce_gradients(ProcessGroup& group, const std::vector<torch::Tensor>& params, torch::Tensor& extra,
                          int64_t bucket_bytes = 32 << 20);
// Copies rank 0's parameter values to every rank (same bucketing).
void broadcast_parameters(ProcessGroup& group, const std::vector<torch::Tensor>& params,
                          int64_t bucket_bytes = 32 << 20);

}  // namespace s2s
