#include "bench.h"

#include <dlfcn.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <numeric>
#include <iostream>
#include <sstream>
#include <thread>

#include <spdlog/spdlog.h>
#include <torch/torch.h>
#include <torch/csrc/autograd/profiler_legacy.h>
#include <torch/version.h>

#include "attention.h"
#include "checkpoint.h"
#include "cuda_graph_update.h"
#include "data.h"
#include "directories.h"
#include "encoder.h"
#include "error.h"
#include "gpu_kernel_times.h"
#include "graph_adam.h"
#include "metrics.h"
#include "model.h"
#include "op_count.h"
#include "optimizer_step.h"
#include "packed_gemm.h"
#include "rnn_cell.h"
#include "row_parallel.h"
#include "runtime.h"
#include "translator.h"
#include "random.h"
#include "update.h"

namespace s2s {
namespace fs = std::filesystem;

// ---------------------------------------------------------------------------------------------------
// Floating-point operations counted from the shapes (multiply-adds of the matrix and vector products;
// element-wise functions, the loss, embedding look-ups and the optimiser update are not counted).
// G = gates (rnn 1, gru 3, lstm 4), H hidden, E embedding, A attention size, D = encoder directions,
// C = context size (bahdanau: D*H, qkv: A), V target vocabulary, S/T padded source/target lengths.
//   encoder, per source token, layer and direction:  G*H*(input) + G*H*H     (input = E, then D*H)
//   bridge s_0 = tanh(W_bridge h + b), per sentence:   H*D*H                   (when present)
//   attention memory, per source token:                A*D*H (bahdanau W_h h_i; qkv: W_K and W_V, twice)
//   attention, per query (T steps + the c_0 query):    A*H (W_s s_j or W_Q s_j) + S*A (scores) + S*C (context)
//   decoder state, per target token:                   G*H*E + G*H*C + G*H*H
//   deep output, per target token:                     deep*(H + C + E)       (output = "deep")
//   output layer, per target token:                    V*(H, or the deep/tied size)
// Training = forward + backward; the backward of each product computes the gradients of both of its
// factors, two products of the same size, so a step is 3 x 2 x multiply-adds floating-point operations.
double forward_multiply_adds(const ModelConfig& m, int64_t tgt_vocab, int64_t batch, int64_t src_len,
                             int64_t tgt_len) {
  const double G = static_cast<double>(gate_count(cell_type_from_string(m.cell)));
  const double H = static_cast<double>(m.hidden_size), E = static_cast<double>(m.embedding_size);
  const double A = static_cast<double>(m.attention_size > 0 ? m.attention_size : m.hidden_size);
  const double D = m.bidirectional ? 2 : 1, enc = D * H;
  const double B = static_cast<double>(batch), S = static_cast<double>(src_len), T = static_cast<double>(tgt_len);
  const double V = static_cast<double>(tgt_vocab);
  double macs = 0;
  for (int64_t l = 0; l < m.encoder_layers; ++l) macs += D * B * S * (G * H * (l == 0 ? E : enc) + G * H * H);
  if (m.bidirectional || enc != H) macs += B * H * enc;
  double C = 0;
  if (m.attention == "bahdanau") {
    C = enc;
    macs += B * S * A * enc;
  } else if (m.attention == "qkv") {
    C = A;
    macs += 2 * B * S * A * enc;
  }
  if (C > 0) macs += B * (T + 1) * (A * H + S * A + S * C);
  macs += B * T * (G * H * E + G * H * C + G * H * H);
  double out_in = H;
  if (m.output == "deep") {
    out_in = m.tied_embeddings ? E : H;
    macs += B * T * out_in * (H + C + E);
  } else if (m.tied_embeddings) {
    out_in = E;
  }
  macs += B * T * V * out_in;
  return macs;
}

double training_flops(const ModelConfig& m, int64_t tgt_vocab, int64_t batch, int64_t src_len, int64_t tgt_len) {
  return 3 * 2 * forward_multiply_adds(m, tgt_vocab, batch, src_len, tgt_len);
}

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int cores() { return static_cast<int>(std::max(1u, std::thread::hardware_concurrency())); }

double peak_rss_mib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

int blas_threads() {
  using GetFn = int (*)();
  if (auto fn = reinterpret_cast<GetFn>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"))) return fn();
  return 0;
}

void set_blas_threads(int n) {
  using SetFn = void (*)(int);
  if (auto fn = reinterpret_cast<SetFn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(n);
}

std::string read_first_match(const std::string& path, const std::string& key) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0) {
      auto colon = line.find(':');
      auto v = colon == std::string::npos ? line : line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}

std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

std::string hostname() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  return name;
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// The GPU's name as the driver's tool gives it ("" when there is none to ask).
std::string gpu_name(const torch::Device& device) {
  if (!device.is_cuda()) return "";
  const std::string cmd = "nvidia-smi --query-gpu=name --format=csv,noheader -i " +
                          std::to_string(device.has_index() ? device.index() : 0) + " 2>/dev/null";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[256];
    while (fgets(buf, sizeof(buf), p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

// Waits for the device's queued work, so that a clock read after it counts that work.
void sync(const torch::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

nlohmann::json machine_json(const torch::Device& device) {
  const auto gpu = gpu_name(device);
  return {{"host", hostname()},
          {"cpu", read_first_match("/proc/cpuinfo", "model name")},
          {"cores", cores()},
          {"memory", read_first_match("/proc/meminfo", "MemTotal")},
          {"device", device.is_cuda() ? device.str() + (gpu.empty() ? "" : " (" + gpu + ")") : "cpu"},
          {"libtorch", TORCH_VERSION},
          {"blas", blas_description()},
          {"openblas_coretype", std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : ""}};
}

nlohmann::json threads_json() {
  return {{"libtorch", torch::get_num_threads()}, {"blas", blas_threads()}};
}

void require_file(const std::string& path, const std::string& what) {
  if (path.empty() || !fs::exists(path))
    throw Error("bench: " + what + " \"" + path + "\" not found. The benchmark measures Multi30k De->En: run "
                "scripts/get_multi30k.sh first (or pass --config with other data)");
}

// --- ceiling ---------------------------------------------------------------------------------------

// GFLOP/s of c = a b^T with a [m, k] and b [n, k] (b transposed, as every layer here multiplies by W^T).
double gemm_gflops(int64_t m, int64_t k, int64_t n, const torch::Device& device) {
  torch::NoGradGuard no_grad;
  const auto on = torch::TensorOptions().device(device);
  auto a = torch::randn({m, k}, on), b = torch::randn({n, k}, on), c = torch::empty({m, n}, on);
  torch::mm_out(c, a, b.t());
  sync(device);
  const double flops = 2.0 * static_cast<double>(m) * static_cast<double>(k) * static_cast<double>(n);
  // Enough repetitions for ~50 ms per sample, 5 samples, median.
  auto t0 = Clock::now();
  int reps = 0;
  while (seconds_since(t0) < 0.05 || reps < 1) {
    torch::mm_out(c, a, b.t());
    sync(device);
    ++reps;
  }
  std::vector<double> rates;
  for (int s = 0; s < 5; ++s) {
    t0 = Clock::now();
    for (int r = 0; r < reps; ++r) torch::mm_out(c, a, b.t());
    sync(device);
    rates.push_back(flops * reps / seconds_since(t0) / 1e9);
  }
  return median(rates);
}

nlohmann::json run_ceiling(const BenchOptions& o) {
  configure_threads(o.threads, "bench");
  const auto device = resolve_device(o.device);
  const Config config = load_config(o.config, o.sets);
  const auto& d = config.data;
  require_file(d.train_src, "data.train_src");
  auto codec = TextCodec::build(d, read_parallel(d.train_src, d.train_tgt));
  const auto& m = config.model;
  const int64_t B = o.batch_size, H = m.hidden_size, E = m.embedding_size;
  const int64_t A = m.attention_size > 0 ? m.attention_size : H, D = m.bidirectional ? 2 : 1;
  const int64_t V = codec.tgt_vocab.size(), BL = B * 15;  // 15: about the mean padded length of a batch
  struct Shape {
    std::string name;
    int64_t m, k, n;
  };
  std::vector<Shape> shapes{
      {"square 1024", 1024, 1024, 1024},
      {"square 2048", 2048, 2048, 2048},
      {"output layer [B*T,H] x [H,V]", BL, H, V},
      {"output layer backward dW [V,B*T] x [B*T,H]", V, BL, H},
      {"input projection [B*L,E] x [E,H]", BL, E, H},
      {"input projection gru [B*L,E] x [E,3H]", BL, E, 3 * H},
      {"attention keys [B*S,DH] x [DH,A]", BL, D * H, A},
      {"recurrent step [B,H] x [H,H]", B, H, H},
      {"recurrent step gru [B,H] x [H,3H]", B, H, 3 * H},
      {"decoder context [B,DH] x [DH,H]", B, D * H, H},
  };
  if (device.is_cuda()) {  // a GPU needs larger products to be busy
    shapes.insert(shapes.begin() + 2, {{"square 4096", 4096, 4096, 4096}, {"square 8192", 8192, 8192, 8192}});
  }
  nlohmann::json out{{"tgt_vocab", V}, {"batch", B}, {"libtorch_threads", torch::get_num_threads()}, {"products", nlohmann::json::array()}};
  double best_square = 0, best_square_1 = 0;
  std::vector<int> blas_counts{1};
  if (cores() > 1 && device.is_cpu()) blas_counts.push_back(cores());
  for (int bt : blas_counts) {
    if (device.is_cpu()) set_blas_threads(bt);
    for (const auto& s : shapes) {
      const double g = gemm_gflops(s.m, s.k, s.n, device);
      out["products"].push_back({{"name", s.name}, {"m", s.m}, {"k", s.k}, {"n", s.n}, {"blas_threads", bt}, {"gflops", g}});
      if (s.name.rfind("square", 0) == 0) {
        best_square = std::max(best_square, g);
        if (bt == 1) best_square_1 = std::max(best_square_1, g);
      }
      spdlog::info("[bench] {:<45} {}: {:7.1f} GFLOP/s", s.name,
                   device.is_cpu() ? "BLAS threads " + std::to_string(bt) : device.str(), g);
    }
  }
  out["ceiling_gflops"] = best_square;              // the machine: all cores (or the GPU) in one large product
  out["ceiling_one_thread_gflops"] = best_square_1;  // one core (on a GPU: the same as ceiling_gflops)
  out["device"] = device.str();
  return out;
}

// --- training --------------------------------------------------------------------------------------

std::pair<std::string, std::string> split_variant(const std::string& v) {
  const auto plus = v.find('+');
  if (plus == std::string::npos) throw Error("bench: variant \"" + v + "\" is not cell+attention (e.g. rnn+bahdanau)");
  return {v.substr(0, plus), v.substr(plus + 1)};
}

// --attention-step and --cpu-kernels, for this process.
void apply_route_switches(const BenchOptions& o) {
  set_fused_attention(o.attention_step == "fused");
  set_attention_kernels(o.cpu_kernels == "on");
  PackedMatrix::allow(o.cpu_kernels == "on");
  set_row_kernels(o.cpu_kernels == "on");
  set_batched_directions_on_cpu(o.cpu_kernels == "off");
  set_optimizer_in_graph(o.optimizer_in_graph == "on");
  set_fused_adam(o.fused_adam == "on");
}

nlohmann::json run_train(const BenchOptions& o) {
  const auto [cell, attention] = split_variant(o.variant.empty() ? o.variants.at(0) : o.variant);
  auto overrides = o.sets;
  for (const auto& kv : {"model.cell=" + cell, "model.attention=" + attention,
                         "training.batch_size=" + std::to_string(o.batch_size), std::string("training.batch_type=sentences")})
    overrides.push_back(kv);
  Config config = load_config(o.config, overrides);
  if (!o.cpu_parallel.empty()) config.training.cpu_parallel = o.cpu_parallel;
  apply_route_switches(o);
  const auto& d = config.data;
  const auto& t = config.training;
  require_file(d.train_src, "data.train_src");
  require_file(d.train_tgt, "data.train_tgt");
  configure_threads(o.threads, "bench");
  const auto device = resolve_device(o.device);
  configure_matmul_precision(t.tf32, device, "bench");
  if (o.kernel_times && !(device.is_cuda() && gpu_kernel_times_available()))
    throw Error("bench --kernel-times: needs --device cuda and a build against a LibTorch with CUDA");

  const auto text = read_parallel(d.train_src, d.train_tgt);
  const auto codec = TextCodec::build(d, text);
  const auto examples = encode_corpus(text, codec, d, /*filter=*/true, nullptr);
  const int64_t V = codec.tgt_vocab.size();

  // The training step of trainer.cpp (update.h): same model, loss, clipping, optimiser and thread layout
  // (its learning-rate schedule is left out: it sets a number, it does not change the work).
  torch::manual_seed(t.seed);
  Seq2Seq model(config.model, codec.src_vocab.size(), V);
  model->to(device);
  model->train();
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  if (t.optimizer == "sgd")
    optimizer = std::make_unique<torch::optim::SGD>(model->parameters(),
                                                    torch::optim::SGDOptions(t.learning_rate).momentum(t.momentum));
  else
    optimizer = std::make_unique<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(t.learning_rate));
  const auto params = model->parameters();
  UpdateOptions update_options;
  update_options.shards = update_shards(t, device);
  const auto batches = epoch_batches(examples, BatchingOptions{t.batch_size, t.batch_type, static_cast<uint64_t>(t.seed)}, 0);
  const int64_t total = o.warmup_steps + o.intervals * o.interval_steps;
  if (total > static_cast<int64_t>(batches.size()))
    throw Error("bench: " + std::to_string(total) + " steps asked for, the epoch has " + std::to_string(batches.size()));
  // training.cuda_graphs: every shape of the timed steps is recorded before the clock starts, as a long
  // run has them after its first few hundred steps (the recording's cost is reported on its own).
  const auto graphs = make_graph_update(t, device, /*one_process=*/true);
  update_options.graphs = graphs.get();
  update_options.optimizer = optimizer.get();
  update_options.defer_loss = o.defer_loss == "on";  // the trainer's way: read after the next step is launched
  double record_seconds = 0;
  if (graphs) {
    std::vector<Batch> timed;
    for (int64_t step = 0; step < total; ++step) timed.push_back(make_batch(examples, batches[step]));
    const auto t0 = Clock::now();
    graphs->prepare(model, params, timed, t, device, optimizer.get());
    record_seconds = seconds_since(t0);
  }
  // Floating-point operations of a batch as computed: each shard with its own padded lengths.
  auto batch_flops = [&](const std::vector<int64_t>& indices) {
    double f = 0;
    for (const auto& part : split_batch(indices, update_options.shards)) {
      const auto b = make_batch(examples, part);
      f += training_flops(config.model, V, b.src.size(0), b.src.size(1), b.tgt_in.size(1));
    }
    return f;
  };

  // --profile: LibTorch's profiler records the timed steps' operations of this thread (a Chrome trace);
  // it slows them down, so the rates of a profiled run are not comparable.
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
  std::vector<double> tok_rates, flop_rates, step_ms, losses;
  // each timed step's parts as the host sees them (no extra synchronisation): computing the update
  // (forward, loss, backward; on a GPU without graphs it ends by reading the loss back, so it waits for the
  // GPU); clipping and the optimiser (on a GPU: the gradient norm read back and the update's launches; with
  // graphs, recorded in them: nothing); with graphs, the wait for the step before's loss, read once this
  // step is launched
  std::vector<double> update_ms, optimizer_ms, wait_ms;
  size_t timed_replays_from = 0;  // graphs: the first timed step's replay
  double tokens = 0;
  int64_t padded = 0, real = 0;
  if (o.warmup_steps == 0 && !o.profile.empty())
    profile = std::make_unique<torch::autograd::profiler::RecordProfile>(o.profile);
  std::optional<Update> waiting;  // the step before, its loss still pending (graphs)
  auto read_waiting = [&] {
    if (waiting) losses.push_back(waiting->finish());
    waiting.reset();
  };
  auto t_interval = Clock::now();
  for (int64_t step = 0; step < total; ++step) {
    update_options.seed = mix_seed(static_cast<uint64_t>(t.seed), 0, static_cast<uint64_t>(step));
    const auto t_update = Clock::now();
    auto u = compute_update(model, params, examples, {batches[step]}, t, device, update_options, nullptr);
    const auto t_optimizer = Clock::now();
    if (!u.stepped) clip_and_step(*optimizer, params, t.clip_norm, u.grad_square_sum);
    const auto t_wait = Clock::now();
    read_waiting();  // now that this step is launched
    if (step >= o.warmup_steps) {
      update_ms.push_back(1000 * std::chrono::duration<double>(t_optimizer - t_update).count());
      optimizer_ms.push_back(1000 * std::chrono::duration<double>(t_wait - t_optimizer).count());
      wait_ms.push_back(1000 * seconds_since(t_wait));
    }
    const int64_t step_tokens = u.tokens, step_padded = u.padded_cells, step_real = u.real_cells;
    if (u.pending)
      waiting = std::move(u);
    else
      losses.push_back(u.loss);
    if (step < o.warmup_steps) {
      read_waiting();  // its replay's time is the warm-up's
      if (graphs) timed_replays_from = graphs->replay_gpu_ms().size();
      if (step + 1 == o.warmup_steps && !o.profile.empty())
        profile = std::make_unique<torch::autograd::profiler::RecordProfile>(o.profile);
      sync(device);
      t_interval = Clock::now();
      continue;
    }
    tokens += static_cast<double>(step_tokens);
    padded += step_padded;
    real += step_real;
    if ((step + 1 - o.warmup_steps) % o.interval_steps == 0) {
      sync(device);
      const double dt = seconds_since(t_interval);
      step_ms.push_back(1000 * dt / static_cast<double>(o.interval_steps));
      // Counted after the clock is read: it is bookkeeping, not training.
      double interval_flops = 0;
      for (int64_t k = step + 1 - o.interval_steps; k <= step; ++k) interval_flops += batch_flops(batches[k]);
      tok_rates.push_back(tokens / dt);
      flop_rates.push_back(interval_flops / dt / 1e9);
      tokens = 0;
      sync(device);
      t_interval = Clock::now();
    }
  }
  read_waiting();
  profile.reset();  // writes the trace
  auto timed_replays_gpu_ms = [&] {  // the GPU times of the timed steps' replays
    const auto& all = graphs->replay_gpu_ms();
    return std::vector<double>(all.begin() + static_cast<std::ptrdiff_t>(std::min(timed_replays_from, all.size())),
                               all.end());
  };
  auto mean = [](const std::vector<double>& v) {
    return v.empty() ? 0.0 : std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  };
  // --count-ops: the operations of one more step on the first timed batch, run eagerly (a recorded step
  // replays as one launch), on every shard's thread; the update is not applied.
  nlohmann::json ops;
  if (o.count_ops) {
    auto eager = update_options;
    eager.graphs = nullptr;
    const auto& indices = batches[o.warmup_steps];
    OpCount count;
    compute_update(model, params, examples, {indices}, t, device, eager, nullptr);
    sync(device);
    const auto b = make_batch(examples, indices);
    ops = {{"total", count.total()},
           {"by_name", count.by_name()},
           {"batch", {{"sentences", b.src.size(0)}, {"src_len", b.src.size(1)}, {"tgt_len", b.tgt_in.size(1)}}}};
    spdlog::info("[bench] one training step of {}+{} ({} sentences, {} + {} tokens): {} LibTorch operations", cell,
                 attention, b.src.size(0), b.src.size(1), b.tgt_in.size(1), count.total());
  }
  // --kernel-times: where a GPU step's time goes, kernel by kernel, over 3 more steps of the timed batches
  // (the model goes on training: this comes after everything above is measured).
  nlohmann::json kernels;
  if (o.kernel_times) {
    auto three_steps = [&](const UpdateOptions& options) {
      int64_t k = 0;
      return [&, options, k]() mutable {
        const auto& indices = batches[o.warmup_steps + (k++ % o.interval_steps)];
        const auto u = compute_update(model, params, examples, {indices}, t, device, options, nullptr);
        if (!u.stepped) clip_and_step(*optimizer, params, t.clip_norm, u.grad_square_sum);
      };
    };
    auto eager = update_options;
    eager.graphs = nullptr;
    if (graphs) kernels["replayed"] = gpu_kernel_times(three_steps(update_options), 3);
    kernels["eager"] = gpu_kernel_times(three_steps(eager), 3);
    spdlog::info("[bench] GPU kernels per step: {}", kernels.dump());
  }
  // FLOPs per target token of the timed batches (padding included: it is computed).
  double all_flops = 0, all_tokens = 0;
  for (int64_t step = o.warmup_steps; step < total; ++step) {
    all_flops += batch_flops(batches[step]);
    all_tokens += static_cast<double>(make_batch(examples, batches[step]).tgt_tokens);
  }
  return {{"variant", cell + "+" + attention},
          {"device", device.str()},
          {"threads", threads_json()},
          {"cpu_parallel", t.cpu_parallel},
          {"attention_step", o.attention_step},
          {"cpu_kernels", o.cpu_kernels},
          {"ops_per_step", ops},
          {"kernel_times", kernels},
          {"shards", update_options.shards},
          {"embedding", config.model.embedding_size},
          {"hidden", config.model.hidden_size},
          {"bidirectional", config.model.bidirectional},
          {"batch", t.batch_size},
          {"src_vocab", codec.src_vocab.size()},
          {"tgt_vocab", V},
          {"parameters", model->parameter_count()},
          {"warmup_steps", o.warmup_steps},
          {"interval_steps", o.interval_steps},
          {"tgt_tokens_per_sec", median(tok_rates)},
          {"tgt_tokens_per_sec_intervals", tok_rates},
          {"ms_per_step", median(step_ms)},
          {"update_ms", median(update_ms)},
          {"optimizer_ms", median(optimizer_ms)},
          {"wait_ms", median(wait_ms)},
          {"gflops", median(flop_rates)},
          {"flops_per_tgt_token", all_flops / std::max(all_tokens, 1.0)},
          {"padding", 1.0 - static_cast<double>(real) / std::max<int64_t>(padded, 1)},
          {"cuda_graphs", graphs ? nlohmann::json{{"length_step", t.cuda_graph_length_step},
                                                  {"recorded", graphs->graphs()},
                                                  {"record_seconds", record_seconds},
                                                  {"replayed_steps", graphs->replays()},
                                                  {"eager_steps", graphs->eager()},
                                                  // the median replay, and the mean (ms_per_step is a mean
                                                  // over each interval's batches, whose lengths differ)
                                                  {"replay_gpu_ms", median(timed_replays_gpu_ms())},
                                                  {"replay_gpu_ms_mean", mean(timed_replays_gpu_ms())}}
                                 : nlohmann::json(false)},
          {"tf32", t.tf32 && device.is_cuda()},
          {"optimizer_in_graph", graphs && graphs->optimizer_recorded()},
          {"fused_adam", graphs && graphs->optimizer_fused()},
          {"defer_loss", graphs && update_options.defer_loss},
          {"first_loss", losses.front()},
          {"last_loss", losses.back()},
          {"losses", losses},
          {"peak_rss_mib", peak_rss_mib()}};
}

// --- translation -----------------------------------------------------------------------------------

uint64_t fnv1a(const std::vector<std::string>& lines) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& l : lines) {
    for (unsigned char ch : l) h = (h ^ ch) * 1099511628211ull;
    h = (h ^ '\n') * 1099511628211ull;
  }
  return h;
}

nlohmann::json run_translate_part(const BenchOptions& o) {
  configure_threads(o.threads, "bench");
  apply_route_switches(o);
  const auto device = resolve_device(o.device);
  const Config config = load_config(o.config, o.sets);
  const auto& d = config.data;
  require_file(d.test_src, "data.test_src");
  require_file(d.test_tgt, "data.test_tgt");
  LoadedModel loaded;
  std::string weights;
  if (!o.checkpoint.empty() && fs::exists(o.checkpoint)) {
    loaded = load_model(o.checkpoint, device);
    weights = "checkpoint " + o.checkpoint + " (step " + std::to_string(loaded.state.step) + ")";
  } else {
    require_file(d.train_src, "data.train_src");
    spdlog::warn("[bench] checkpoint \"{}\" not found: translating with random weights (outputs run to the length "
                 "limit, so this is slower than a trained model)",
                 o.checkpoint);
    loaded.config = config;
    loaded.codec = TextCodec::build(d, read_parallel(d.train_src, d.train_tgt));
    torch::manual_seed(config.training.seed);
    loaded.model = Seq2Seq(config.model, loaded.codec.src_vocab.size(), loaded.codec.tgt_vocab.size());
    loaded.model->to(device);
    weights = "random (no checkpoint)";
  }
  const auto text = read_parallel(d.test_src, d.test_tgt);
  nlohmann::json out{{"weights", weights},
                     {"model", {{"cell", loaded.config.model.cell}, {"attention", loaded.config.model.attention},
                                {"embedding", loaded.config.model.embedding_size},
                                {"hidden", loaded.config.model.hidden_size},
                                {"bidirectional", loaded.config.model.bidirectional},
                                {"tgt_vocab", loaded.codec.tgt_vocab.size()}}},
                     {"test_set", d.test_src},
                     {"sentences", text.src.size()},
                     {"batch", o.batch_size},
                     {"device", device.str()},
                     {"attention_step", o.attention_step},
                     {"cpu_kernels", o.cpu_kernels},
                     {"threads", threads_json()}};
  for (int64_t beam : {int64_t{1}, int64_t{5}}) {
    TranslatorOptions to;
    to.batch_size = o.batch_size;
    to.search.beam_size = beam;
    Translator translator(loaded, device, to);
    const int64_t repeats = beam == 1 ? std::max<int64_t>(1, o.translate_repeats)
                                      : std::max<int64_t>(1, o.translate_repeats - 1);
    std::vector<double> rates;
    std::vector<std::string> hyps;
    for (int64_t r = 0; r < repeats; ++r) {
      const auto t0 = Clock::now();
      const auto results = translator.translate(text.src);
      rates.push_back(static_cast<double>(text.src.size()) / seconds_since(t0));
      if (r == 0)
        for (const auto& x : results) hyps.push_back(x.outputs.empty() ? "" : x.outputs[0].text);
    }
    std::ostringstream hash;
    hash << std::hex << std::setw(16) << std::setfill('0') << fnv1a(hyps);
    out[beam == 1 ? "greedy" : "beam5"] = {{"beam", beam},
                                           {"sentences_per_sec", median(rates)},
                                           {"sentences_per_sec_runs", rates},
                                           {"bleu", corpus_bleu(hyps, text.tgt, BleuOptions{}).score},
                                           {"output_hash", hash.str()}};
    spdlog::info("[bench] beam {}: {:.1f} sentences/s", beam, median(rates));
  }
  out["peak_rss_mib"] = peak_rss_mib();
  return out;
}

// --- the whole run -----------------------------------------------------------------------------------

std::string quote(const std::string& s) { return "'" + s + "'"; }

std::string self_path() {
  std::error_code ec;
  auto p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) throw Error("bench: cannot find this program's path (/proc/self/exe)");
  return p.string();
}

struct Layout {
  std::string label;         // as asked ("default", "1/1", "cores/1:ops", ...)
  int64_t libtorch = 0;      // --threads
  int blas = -1;             // S2S_BLAS_THREADS; -1: not set (the program's default)
  std::string cpu_parallel;  // training.cpu_parallel; empty: the config's
};

Layout parse_layout(const std::string& s) {
  if (s == "default") return {s, 0, -1, ""};
  auto bad = [&]() {
    return Error("bench: layout \"" + s + "\" is not LIBTORCH/BLAS[:batch|:ops] (e.g. 2/1, cores/1:ops) or default");
  };
  const auto colon = s.find(':');
  const std::string threads = s.substr(0, colon);
  const std::string mode = colon == std::string::npos ? "" : s.substr(colon + 1);
  if (!mode.empty() && mode != "batch" && mode != "ops") throw bad();
  const auto slash = threads.find('/');
  if (slash == std::string::npos) throw bad();
  auto num = [&](const std::string& x) {
    if (x == "cores") return cores();
    try {
      const int n = std::stoi(x);
      if (n > 0) return n;
    } catch (const std::exception&) {
    }
    throw bad();
  };
  return {s, num(threads.substr(0, slash)), num(threads.substr(slash + 1)), mode};
}

// Runs `s2s bench --part ...` as a child process and returns the JSON it wrote.
nlohmann::json run_child(const BenchOptions& o, const std::string& part, const Layout& layout,
                         const std::string& variant, const fs::path& dir, int index) {
  const auto file = dir / ("part-" + std::to_string(index) + ".json");
  std::ostringstream cmd;
  cmd << "env " << (layout.blas < 0 ? std::string("-u S2S_BLAS_THREADS") : "S2S_BLAS_THREADS=" + std::to_string(layout.blas))
      << " " << quote(self_path()) << " bench --part " << part << " --config " << quote(o.config)
      << " --checkpoint " << quote(o.checkpoint) << " --threads " << layout.libtorch << " --batch-size " << o.batch_size
      << " --warmup-steps " << o.warmup_steps << " --interval-steps " << o.interval_steps << " --intervals "
      << o.intervals << " --translate-repeats " << o.translate_repeats << " --device " << quote(o.device)
      << " --attention-step " << o.attention_step << " --cpu-kernels " << o.cpu_kernels
      << " --optimizer-in-graph " << o.optimizer_in_graph << " --defer-loss " << o.defer_loss
      << " --fused-adam " << o.fused_adam << " --output " << quote(file.string());
  for (const auto& kv : o.sets) cmd << " --set " << quote(kv);
  if (!variant.empty()) cmd << " --variant " << quote(variant);
  if (!layout.cpu_parallel.empty()) cmd << " --cpu-parallel " << layout.cpu_parallel;
  spdlog::info("[bench] part {} {} (threads LibTorch/BLAS: {})", part, variant, layout.label);
  const int rc = std::system(cmd.str().c_str());
  if (rc != 0) throw Error("bench: the " + part + " part failed (" + cmd.str() + ")");
  std::ifstream in(file);
  return nlohmann::json::parse(in);
}

std::string fmt(double v, int precision) {
  std::ostringstream s;
  s << std::fixed << std::setprecision(precision) << v;
  return s.str();
}

void print_table(const nlohmann::json& r, std::ostream& os) {
  const auto& m = r["machine"];
  os << "machine: " << m["cpu"].get<std::string>() << ", " << m["cores"] << " cores; LibTorch "
     << m["libtorch"].get<std::string>() << "; BLAS " << m["blas"].get<std::string>() << "; device "
     << m["device"].get<std::string>() << "\n";
  os << "load average before/after: " << r["load_before"].get<std::string>() << " / "
     << r["load_after"].get<std::string>() << "\n";
  const double ceiling = r["ceiling"]["ceiling_gflops"].get<double>();
  os << "matrix-product ceiling (largest square, all cores or the GPU): " << fmt(ceiling, 1) << " GFLOP/s; one core "
     << fmt(r["ceiling"]["ceiling_one_thread_gflops"].get<double>(), 1) << " GFLOP/s\n\n";
  os << "training (batch " << r["options"]["batch_size"] << ", median of " << r["options"]["intervals"] << " x "
     << r["options"]["interval_steps"] << " steps after " << r["options"]["warmup_steps"] << ")\n";
  os << "  variant                threads(LT/BLAS) split  tgt tok/s   ms/step   MFLOP/tok   GFLOP/s  of ceiling  peak RSS MiB\n";
  for (const auto& t : r["train"]) {
    const bool graphs = t.value("cuda_graphs", nlohmann::json(false)).is_object();
    os << "  " << std::left << std::setw(23) << t["variant"].get<std::string>() + (graphs ? " graphs" : "")
       << std::right << std::setw(8)
       << t["threads"]["libtorch"].get<int>() << "/" << std::left << std::setw(9) << t["threads"]["blas"].get<int>()
       << std::left << std::setw(6) << t.value("cpu_parallel", std::string("ops")) << std::right << std::setw(10)
       << fmt(t["tgt_tokens_per_sec"].get<double>(), 0) << std::setw(10) << fmt(t.value("ms_per_step", 0.0), 1)
       << std::setw(12)
       << fmt(t["flops_per_tgt_token"].get<double>() / 1e6, 2) << std::setw(10) << fmt(t["gflops"].get<double>(), 1)
       << std::setw(11) << fmt(100 * t["gflops"].get<double>() / ceiling, 1) << "%" << std::setw(13)
       << fmt(t["peak_rss_mib"].get<double>(), 0) << "\n";
  }
  const auto& tr = r["translate"];
  os << "\ntranslation of " << tr["test_set"].get<std::string>() << " (" << tr["sentences"] << " sentences, batch "
     << tr["batch"] << ", " << tr["weights"].get<std::string>() << ")\n";
  for (const char* k : {"greedy", "beam5"})
    os << "  " << std::left << std::setw(7) << k << std::right << std::setw(8)
       << fmt(tr[k]["sentences_per_sec"].get<double>(), 1) << " sentences/s  BLEU " << fmt(tr[k]["bleu"].get<double>(), 2)
       << "\n";
  os << "  peak RSS " << fmt(tr["peak_rss_mib"].get<double>(), 0) << " MiB\n";
}

int run_all(const BenchOptions& o) {
  const auto t0 = Clock::now();
  const auto device = resolve_device(o.device);
  nlohmann::json r{{"date", utc_now()}, {"machine", machine_json(device)}, {"load_before", load_average()}};
  r["options"] = {{"config", o.config}, {"checkpoint", o.checkpoint}, {"batch_size", o.batch_size},
                  {"device", o.device}, {"set", o.sets},
                  {"warmup_steps", o.warmup_steps}, {"interval_steps", o.interval_steps},
                  {"intervals", o.intervals}, {"translate_repeats", o.translate_repeats},
                  {"variants", o.variants}, {"layouts", o.layouts}};
  char tmpl[] = "/tmp/s2s-bench-XXXXXX";
  if (!mkdtemp(tmpl)) throw Error("bench: cannot create a temporary folder in /tmp");
  const fs::path dir(tmpl);
  int index = 0;
  const Layout all_cores{"cores/cores", 0, cores(), ""};
  r["ceiling"] = run_child(o, "ceiling", all_cores, "", dir, index++);
  r["train"] = nlohmann::json::array();
  const Layout program_default{"default", 0, -1, ""};
  for (const auto& v : o.variants) r["train"].push_back(run_child(o, "train", program_default, v, dir, index++));
  if (!device.is_cpu()) {  // on a GPU, each variant again with its step as CUDA graphs (training.cuda_graphs)
    auto graphs = o;
    graphs.sets.push_back("training.cuda_graphs=true");
    for (const auto& v : o.variants) r["train"].push_back(run_child(graphs, "train", program_default, v, dir, index++));
  }
  for (const auto& l : o.layouts) {
    // thread layouts are a CPU matter: on a GPU the CPU threads only launch its work
    if (l == "default" || o.variants.empty() || !device.is_cpu()) continue;
    auto entry = run_child(o, "train", parse_layout(l), o.variants.front(), dir, index++);
    entry["layout"] = l;
    r["train"].push_back(entry);
  }
  r["translate"] = run_child(o, "translate", program_default, "", dir, index++);
  r["load_after"] = load_average();
  r["seconds"] = seconds_since(t0);
  // the part files and the folder, by name (not fs::remove_all: libtorch.so of the CUDA LibTorch 2.11 on the
  // lent GPU machine exports its own copy of that function, and calling it crashed there)
  for (int i = 0; i < index; ++i) std::remove((dir / ("part-" + std::to_string(i) + ".json")).c_str());
  ::rmdir(dir.c_str());

  auto path = o.output.empty() ? "bench/results-" + hostname() + ".json" : o.output;
  if (fs::path(path).has_parent_path()) ensure_directory(fs::path(path).parent_path().string(), "--output's folder");
  std::ofstream f(path);
  f << r.dump(2) << "\n";
  if (!f) throw Error(path + ": cannot write");
  print_table(r, std::cout);
  std::cout << "\nwritten to " << path << " (" << fmt(seconds_since(t0), 0) << " s)\n";
  return 0;
}

}  // namespace

int run_bench(const BenchOptions& options) {
  if (options.part == "all") return run_all(options);
  nlohmann::json j;
  if (options.part == "ceiling") j = run_ceiling(options);
  else if (options.part == "train") j = run_train(options);
  else if (options.part == "translate") j = run_translate_part(options);
  else throw Error("bench: --part must be all, ceiling, train or translate, not \"" + options.part + "\"");
  if (options.output.empty()) {
    std::cout << j.dump(2) << "\n";
  } else {
    std::ofstream f(options.output);
    f << j.dump(2) << "\n";
    if (!f) throw Error(options.output + ": cannot write");
  }
  return 0;
}

}  // namespace s2s
