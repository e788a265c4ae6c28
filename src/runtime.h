// Process-wide settings: threads, BLAS detection, device choice, logging.
#pragma once
#include <string>

#include <torch/torch.h>

namespace s2s {

// OpenBLAS 0.3.21 (Debian bookworm) does not recognise recent Xeons and falls back to its Prescott
// (SSE3) kernels: 39 GFLOP/s instead of 184 for a 1024^3 product on this project's 2-core machines.
// OpenBLAS picks its kernels when it is loaded, before main(), so when that happened on a CPU with
// AVX-512 or AVX2 this sets OPENBLAS_CORETYPE and re-executes the program once. A user's own
// OPENBLAS_CORETYPE is always respected. Call first thing in main().
void select_openblas_kernels(char** argv);
// Keeps freed tensor memory in the process instead of returning it to the kernel after every
// step (glibc hands blocks over 128 KiB back with munmap, and the next step faults them in again).
// The mmap threshold is 32 MiB, the most that the threads' own arenas (heaps of 64 MiB) can serve:
// with a higher one, larger blocks on those threads were mapped and unmapped every step anyway. Measured
// with 2 shard threads: ~2,400 page faults per training step before, ~340 after.
void tune_allocator();
// Which BLAS libtorch's matrix products go through ("OpenBLAS 0.3.21 ...", "reference BLAS (slow)", ...).
std::string blas_description();
// Sets LibTorch's intra-op threads (0 = all cores) and limits OpenBLAS's own pool to one thread so the
// two pools do not oversubscribe the cores; logs the layout and warns about a slow reference BLAS.
void configure_threads(int64_t threads, const std::string& tag);
// "auto" picks cuda when available; "cuda" without CUDA is an error naming the config key.
torch::Device resolve_device(const std::string& name);
// training.tf32: on a GPU, whether float32 matrix products may use TF32 tensor cores (LibTorch's default:
// no). Process-wide; logged, and a warning where it cannot apply (the CPU).
void configure_matmul_precision(bool tf32, const torch::Device& device, const std::string& tag);
// Logging to stderr, with the level from S2S_LOG_LEVEL (info by default).
void setup_logging();

}  // namespace s2s
