#include "runtime.h"

#include <dlfcn.h>
#include <malloc.h>
#include <unistd.h>

#include <cstdlib>
#include <thread>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "error.h"

namespace s2s {

void select_openblas_kernels(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("S2S_OPENBLAS_CHECKED")) return;
  using CoreFn = char* (*)();
  auto corename = reinterpret_cast<CoreFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"));
  if (!corename) return;  // not OpenBLAS
  const std::string core = corename();
  if (core != "Prescott" && core != "Core2" && core != "Nehalem" && core != "Sandybridge") return;
  const char* better = __builtin_cpu_supports("avx512f") ? "SkylakeX" : __builtin_cpu_supports("avx2") ? "Haswell" : nullptr;
  if (!better) return;
  setenv("OPENBLAS_CORETYPE", better, 1);
  setenv("S2S_OPENBLAS_CHECKED", "1", 1);  // never loop
  execv("/proc/self/exe", argv);
  // execv only returns on failure: carry on with the slow kernels.
}

void tune_allocator() {
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
}

std::string blas_description() {
  using ConfigFn = char* (*)();
  if (auto fn = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    std::string d = fn();
    if (auto core = reinterpret_cast<ConfigFn>(dlsym(RTLD_DEFAULT, "openblas_get_corename"))) d += ", kernels " + std::string(core());
    return d;
  }
  if (dlsym(RTLD_DEFAULT, "mkl_get_max_threads")) return "Intel MKL";
  if (dlsym(RTLD_DEFAULT, "bli_info_get_version_str")) return "BLIS";
  return "reference BLAS (slow)";
}

void configure_threads(int64_t threads, const std::string& tag) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  const int n = threads > 0 ? static_cast<int>(threads) : cores;
  torch::set_num_threads(n);
  // LibTorch splits work across its own threads; OpenBLAS spinning up its own pool inside each call
  // would put 2n threads on n cores (measured 2x slower), so OpenBLAS gets one thread per caller.
  using SetThreadsFn = void (*)(int);
  std::string blas_threads = "n/a";
  if (auto fn = reinterpret_cast<SetThreadsFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) {
    const char* env = std::getenv("S2S_BLAS_THREADS");
    const int bt = env ? std::atoi(env) : 1;
    fn(bt);
    blas_threads = std::to_string(bt);
  }
  const auto blas = blas_description();
  spdlog::info("[{}] threads: {} LibTorch intra-op (of {} cores), BLAS threads per call: {}, BLAS: {}", tag,
               torch::get_num_threads(), cores, blas_threads, blas);
  if (blas.rfind("reference", 0) == 0)
    spdlog::warn("[{}] LibTorch uses the reference BLAS, about 15x slower than OpenBLAS; install it with "
                 "`apt-get install libopenblas0-pthread`",
                 tag);
}

torch::Device resolve_device(const std::string& name) {
  if (name == "auto") return torch::cuda::is_available() ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  if (name == "cpu") return torch::kCPU;
  if (name.rfind("cuda", 0) == 0) {
    if (!torch::cuda::is_available())
      throw Error("device \"" + name + "\": CUDA is not available (this build or this machine has no GPU); use \"cpu\"");
    try {
      return torch::Device(name);
    } catch (const c10::Error&) {
      throw Error("device \"" + name + "\" is not a valid device name (expected cuda or cuda:N)");
    }
  }
  throw Error("device \"" + name + "\" is not one of auto, cpu, cuda, cuda:N");
}

void configure_matmul_precision(bool tf32, const torch::Device& device, const std::string& tag) {
  at::globalContext().setAllowTF32CuBLAS(tf32 && device.is_cuda());
  if (!tf32) return;
  if (device.is_cuda())
    spdlog::info("[{}] training.tf32: float32 matrix products on the GPU use TF32 tensor cores", tag);
  else
    spdlog::warn("[{}] training.tf32 applies to GPUs only; on {} the products stay float32", tag, device.str());
}

void setup_logging() {
  auto logger = spdlog::stderr_color_mt("s2s");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%^[%Y-%m-%d %H:%M:%S.%e] [%l]%$ %v");
  if (const char* level = std::getenv("S2S_LOG_LEVEL")) spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace s2s
