#include "distributed.h"

#include <cstdlib>
#include <string>

// S2S_WITH_GLOO: CMakeLists.txt found Gloo's headers, which c10d's need (Debian: libgloo-dev). Without
// them the program builds without multi-process training, and asking for it is an error that says so.
#ifdef S2S_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef S2S_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif
#endif

#include "error.h"

namespace s2s {
namespace {

// The value of an integer variable, or `fallback` when it is unset; an error naming it when malformed.
int int_from_env(const char* name, int fallback) {
  const char* text = std::getenv(name);
  if (!text || !*text) return fallback;
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*end != '\0' || v < 0 || v > 1'000'000)
    throw Error(std::string("environment variable ") + name + "=\"" + text + "\" is not a non-negative integer");
  return static_cast<int>(v);
}

}  // namespace

DistributedEnv distributed_env_from_environment() {
  DistributedEnv env;
  env.world_size = int_from_env("WORLD_SIZE", 1);
  if (env.world_size < 1) throw Error("environment variable WORLD_SIZE must be at least 1");
  env.rank = int_from_env("RANK", 0);
  env.local_rank = int_from_env("LOCAL_RANK", env.rank);
  env.local_world_size = int_from_env("LOCAL_WORLD_SIZE", env.world_size);
  if (env.rank >= env.world_size)
    throw Error("environment variable RANK=" + std::to_string(env.rank) + " must be below WORLD_SIZE=" +
                std::to_string(env.world_size));
  if (env.local_world_size < 1) throw Error("environment variable LOCAL_WORLD_SIZE must be at least 1");
  if (!env.active()) return env;
  const char* addr = std::getenv("MASTER_ADDR");
  if (!addr || !*addr)
    throw Error("WORLD_SIZE=" + std::to_string(env.world_size) +
                " but MASTER_ADDR is not set: start the processes with torchrun, or set MASTER_ADDR and MASTER_PORT "
                "(the address and a free port of rank 0)");
  env.master_addr = addr;
  env.master_port = int_from_env("MASTER_PORT", -1);
  if (env.master_port <= 0 || env.master_port > 65535)
    throw Error("WORLD_SIZE=" + std::to_string(env.world_size) + " but MASTER_PORT is " +
                (std::getenv("MASTER_PORT") ? std::string("\"") + std::getenv("MASTER_PORT") + "\", not a port"
                                            : std::string("not set")));
  return env;
}

#ifdef S2S_WITH_GLOO

namespace {

// The first line of an exception from c10d or Gloo (they append long backtraces).
std::string first_line(const std::exception& e) {
  std::string s = e.what();
  const auto nl = s.find('\n');
  return nl == std::string::npos ? s : s.substr(0, nl);
}

bool is_loopback(const std::string& addr) {
  return addr == "localhost" || addr == "::1" || addr.rfind("127.", 0) == 0;
}

}  // namespace

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> gloo;
#ifdef S2S_WITH_NCCL
  c10::intrusive_ptr<c10d::ProcessGroupNCCL> nccl;
#endif
  template <class F>
  auto with_backend(F&& f) {
#ifdef S2S_WITH_NCCL
    if (nccl) return f(*nccl);
#endif
    return f(*gloo);
  }
};

ProcessGroup::ProcessGroup(const DistributedEnv& env, std::chrono::milliseconds timeout, const torch::Device& device)
    : env_(env), timeout_(timeout), impl_(std::make_unique<Impl>()) {
  const std::string where = env.master_addr + ":" + std::to_string(env.master_port);
  try {
    c10d::TCPStoreOptions opts;
    opts.port = static_cast<uint16_t>(env.master_port);
    opts.isServer = env.rank == 0;
    opts.numWorkers = static_cast<size_t>(env.world_size);
    opts.waitWorkers = true;
    opts.timeout = timeout;
    impl_->store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env.rank) + " of " + std::to_string(env.world_size) +
                ": the rendezvous at MASTER_ADDR:MASTER_PORT = " + where + " failed within " +
                std::to_string(timeout.count() / 1000) + " s (training.dist_timeout): " + first_line(e));
  }
  try {
    if (device.is_cuda()) {
#ifdef S2S_WITH_NCCL
      auto opts = c10d::ProcessGroupNCCL::Options::create();
      opts->timeout = timeout;
      impl_->nccl = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl_->store, env.rank, env.world_size, opts);
      backend_ = "nccl";
      return;
#else
      throw Error("training on CUDA across processes needs a LibTorch built with NCCL; this build has only Gloo");
#endif
    }
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (is_loopback(env.master_addr))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    opts->threads = 1;  // one collective at a time per step; the cores belong to LibTorch
    impl_->gloo = c10::make_intrusive<c10d::ProcessGroupGloo>(impl_->store, env.rank, env.world_size, opts);
    backend_ = "gloo";
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env.rank) + ": could not connect the process group (rendezvous " + where +
                "): " + first_line(e));
  }
}

ProcessGroup::~ProcessGroup() = default;

void ProcessGroup::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  if (tensors.empty()) return;
  try {
    impl_->with_backend([&](auto& pg) {
      std::vector<c10::intrusive_ptr<c10d::Work>> works;
      for (auto& t : tensors) {
        std::vector<torch::Tensor> one{t};
        works.push_back(pg.allreduce(one));
      }
      for (auto& w : works) w->wait();
    });
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env_.rank) + ": all-reduce failed: another rank stopped, died or did not "
                "answer within " + std::to_string(timeout_.count() / 1000) + " s (training.dist_timeout): " +
                first_line(e));
  }
}

void ProcessGroup::broadcast(std::vector<torch::Tensor>& tensors, int root) {
  try {
    impl_->with_backend([&](auto& pg) {
      c10d::BroadcastOptions opts;
      opts.rootRank = root;
      for (auto& t : tensors) {
        std::vector<torch::Tensor> one{t};
        pg.broadcast(one, opts)->wait();
      }
    });
  } catch (const std::exception& e) {
    throw Error("rank " + std::to_string(env_.rank) + ": broadcast failed: another rank stopped, died or did not "
                "answer within " + std::to_string(timeout_.count() / 1000) + " s (training.dist_timeout): " +
                first_line(e));
  }
}

#else  // no c10d in this build

struct ProcessGroup::Impl {};

ProcessGroup::ProcessGroup(const DistributedEnv& env, std::chrono::milliseconds timeout, const torch::Device&)
    : env_(env), timeout_(timeout) {
  throw Error("WORLD_SIZE=" + std::to_string(env.world_size) +
              " asks for multi-process training, but this build of s2s has none: Gloo's headers (Debian: "
              "libgloo-dev) were not found when it was configured");
}

ProcessGroup::~ProcessGroup() = default;
void ProcessGroup::all_reduce_sum(std::vector<torch::Tensor>&) {}
void ProcessGroup::broadcast(std::vector<torch::Tensor>&, int) {}

#endif

namespace {

// Consecutive runs of parameters whose total size stays under `bucket_bytes` (a parameter larger than
// that gets a bucket of its own).
std::vector<std::vector<size_t>> make_buckets(const std::vector<torch::Tensor>& params, int64_t bucket_bytes) {
  std::vector<std::vector<size_t>> buckets(1);
  int64_t bytes = 0;
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t b = params[i].numel() * static_cast<int64_t>(params[i].element_size());
    if (!buckets.back().empty() && bytes + b > bucket_bytes) {
      buckets.emplace_back();
      bytes = 0;
    }
    buckets.back().push_back(i);
    bytes += b;
  }
  return buckets;
}

}  // namespace

void all_reduce_gradients(ProcessGroup& group, const std::vector<torch::Tensor>& params, torch::Tensor& extra,
                          int64_t bucket_bytes) {
  torch::NoGradGuard no_grad;
  const auto buckets = make_buckets(params, bucket_bytes);
  std::vector<torch::Tensor> flats;
  for (size_t b = 0; b < buckets.size(); ++b) {
    std::vector<torch::Tensor> pieces;
    for (auto i : buckets[b]) {
      const auto& g = params[i].grad();
      pieces.push_back(g.defined() ? g.reshape({-1}) : torch::zeros({params[i].numel()}, params[i].options()));
    }
    if (b + 1 == buckets.size()) pieces.push_back(extra.reshape({-1}).to(params[0].options()));
    flats.push_back(torch::cat(pieces));
  }
  group.all_reduce_sum(flats);
  for (size_t b = 0; b < buckets.size(); ++b) {
    int64_t offset = 0;
    for (auto i : buckets[b]) {
      auto& p = params[i];
      const auto n = p.numel();
      auto summed = flats[b].narrow(0, offset, n).view_as(p);
      if (p.grad().defined())
        p.mutable_grad().copy_(summed);
      else
        p.mutable_grad() = summed.clone();
      offset += n;
    }
    if (b + 1 == buckets.size()) extra.copy_(flats[b].narrow(0, offset, extra.numel()).view_as(extra));
  }
}

void broadcast_parameters(ProcessGroup& group, const std::vector<torch::Tensor>& params, int64_t bucket_bytes) {
  torch::NoGradGuard no_grad;
  const auto buckets = make_buckets(params, bucket_bytes);
  std::vector<torch::Tensor> flats;
  for (const auto& bucket : buckets) {
    std::vector<torch::Tensor> pieces;
    for (auto i : bucket) pieces.push_back(params[i].detach().reshape({-1}));
    flats.push_back(torch::cat(pieces));
  }
  group.broadcast(flats, 0);
  for (size_t b = 0; b < buckets.size(); ++b) {
    int64_t offset = 0;
    for (auto i : buckets[b]) {
      const auto n = params[i].numel();
      params[i].detach().copy_(flats[b].narrow(0, offset, n).view_as(params[i]));
      offset += n;
    }
  }
}

}  // namespace s2s
