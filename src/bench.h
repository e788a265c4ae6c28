// `s2s bench`: speed of this machine and of this program, in one run, as one JSON file and a table.
//
// The parts, each measured in a child process of its own (so that each has its own peak resident
// memory and its own thread layout):
//   ceiling    float32 matrix-product rate through LibTorch (torch::mm) for a large square product
//              and for the shapes the model multiplies, with 1 BLAS thread and with one per core;
//   train      target tokens/s of the training step (forward, loss, backward, clipping, optimiser),
//              median of several timed intervals after a warm-up, with the floating-point
//              operations counted from the model's shapes (training_flops) and so the GFLOP/s achieved;
//   translate  test-set sentences/s, greedy and beam 5.
// The benchmark calls the same functions as `s2s train` and `s2s translate`; it only times them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.h"

namespace s2s {

struct BenchOptions {
  std::string part = "all";  // all | ceiling | train | translate (all runs the others as child processes)
  std::string config = "configs/multi30k_de_en.json";
  std::string checkpoint = "runs/multi30k_de_en/best.pt";  // translate; random weights if missing (said in the output)
  std::string output;        // JSON file; default bench/results-<host>.json (all) or stdout (one part)
  // Training variants "cell+attention" (rnn+bahdanau, rnn+qkv, gru+bahdanau, ...).
  std::vector<std::string> variants{"rnn+bahdanau", "rnn+qkv", "gru+bahdanau"};
  // Thread layouts "LibTorch/BLAS" for the first variant; "default" is what `s2s train` chooses.
  // ":ops" or ":batch" after a layout sets training.cpu_parallel (how the threads share a step).
  std::vector<std::string> layouts{"default", "cores/1:ops", "1/1", "cores/cores:ops"};
  int64_t batch_size = 64;
  int64_t warmup_steps = 10;
  int64_t interval_steps = 10;
  int64_t intervals = 5;
  int64_t translate_repeats = 3;  // greedy; beam 5 is timed max(1, repeats - 1) times
  int64_t threads = 0;            // LibTorch threads of a part; 0 = all cores (BLAS threads: S2S_BLAS_THREADS)
  std::string variant;            // train part: the one variant to measure
  std::string cpu_parallel;       // train part: training.cpu_parallel ("batch" | "ops"); empty = the config's
  std::string profile;            // train part: write a Chrome trace of the timed steps (the calling thread's ops)
  // How the attention step is computed: "fused" (the default: attention.h) or "expressions" (LibTorch's
  // tensor expressions, differentiated by autograd), to compare the two on one build.
  std::string attention_step = "fused";
  // "off": this project's CPU kernels (the attention step's, the packed products, the output layer's and the
  // loss's row blocks) switched off, so the CPU takes the route a GPU takes: for counting a GPU's
  // operations on the CPU (count_ops).
  std::string cpu_kernels = "on";
  // With CUDA graphs: "on" records the clipping and Adam's update in the graphs (graph_adam.h), "off" runs
  // them after each replay, to compare the two.
  std::string optimizer_in_graph = "on";
  // With CUDA graphs: "on" reads each step's loss after the next step is launched (the trainer's way), "off"
  // waits for it at the end of its own step, to compare the two.
  std::string defer_loss = "on";
  // With the optimizer in the graphs: "on" makes Adam's update one fused kernel where the build has it
  // (LibTorch >= 2.3, float32 on a GPU; graph_adam.h), "off" keeps the separate operations.
  std::string fused_adam = "on";
  bool count_ops = false;  // train part: count the LibTorch operations of one step (op_count.h)
  // train part on a GPU: the GPU time per kernel of a few more steps, replayed (with graphs) and eager
  // (gpu_kernel_times.h)
  bool kernel_times = false;
  std::string device = "cpu";     // cpu | cuda | cuda:N | auto: where the ceiling, training and translation run
  std::vector<std::string> sets;  // config overrides KEY=VALUE for every part (e.g. model.hidden_size=512)
};
int run_bench(const BenchOptions& options);

// Forward multiply-adds of one teacher-forced batch of `batch` sentences padded to `src_len` source and
// `tgt_len` target tokens, counted from the model's matrix shapes (see bench.cpp for the terms).
double forward_multiply_adds(const ModelConfig& m, int64_t tgt_vocab, int64_t batch, int64_t src_len, int64_t tgt_len);
// Floating-point operations of one training step: 2 per multiply-add, backward twice the forward.
double training_flops(const ModelConfig& m, int64_t tgt_vocab, int64_t batch, int64_t src_len, int64_t tgt_len);

}  // namespace s2s
