#include "update.h"

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include <ATen/Parallel.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "cuda_graph_update.h"
#include "distributed.h"
#include "random.h"
#include "signals.h"

namespace s2s {
namespace {

double safe_count(int64_t n) { return static_cast<double>(std::max<int64_t>(n, 1)); }

struct ShardResult {
  std::vector<torch::Tensor> grads;  // d(summed token loss)/d(param), undefined where unused
  double loss_sum = 0;
  int64_t tokens = 0, padded_cells = 0, real_cells = 0;
  std::exception_ptr error;
};

// Threads that live as long as the process and run the shards. They are made once: LibTorch sets up
// every new thread that runs an operation (and rebuilds a thread pool of its own for it), which costs
// more than a step's shard when done per step. Each thread runs its operations without splitting them
// further: the cores are taken by the shards side by side.
class ShardThreads {
 public:
  explicit ShardThreads(int n) {
    for (int i = 0; i < n; ++i) threads_.emplace_back([this, i] { loop(i); });
  }
  ~ShardThreads() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      quit_ = true;
    }
    wake_.notify_all();
    for (auto& t : threads_) t.join();
  }
  int size() const { return static_cast<int>(threads_.size()); }
  // task(i) for i in [0, n) on threads 0..n-1 (n <= size()); returns when all have finished.
  void run(int n, const std::function<void(int)>& task) {
    std::unique_lock<std::mutex> lock(mutex_);
    task_ = &task;
    tasks_ = n;
    pending_ = n;
    ++generation_;
    wake_.notify_all();
    done_.wait(lock, [&] { return pending_ == 0; });
    task_ = nullptr;
  }

 private:
  void loop(int index) {
    at::get_num_threads();  // LibTorch's per-thread set-up first, or it would undo what follows
#ifdef _OPENMP
    omp_set_num_threads(1);  // this thread's OpenMP teams only; the main thread keeps its setting
#else
    at::set_num_threads(1);
#endif
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      wake_.wait(lock, [&] { return quit_ || generation_ != seen; });
      if (quit_) return;
      seen = generation_;
      if (index >= tasks_) continue;
      const auto* task = task_;
      lock.unlock();
      (*task)(index);  // run_shard catches everything
      lock.lock();
      if (--pending_ == 0) done_.notify_all();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* task_ = nullptr;
  int tasks_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool quit_ = false;
};

ShardThreads& shard_threads(int n) {
  static std::unique_ptr<ShardThreads> pool;
  if (!pool || pool->size() < n) {
    pool.reset();
    pool = std::make_unique<ShardThreads>(n);
  }
  return *pool;
}

// One shard, on one of the shard threads.
void run_shard(Seq2Seq& model, const std::vector<torch::Tensor>& params, const Batch& batch, const TrainingConfig& t,
               uint64_t seed, ShardResult& r) {
  try {
    ScopedGenerator generator(seed);
    auto out = model->forward(batch, t.scheduled_sampling);
    auto loss = sequence_loss(out.logits, batch.tgt_out, t.label_smoothing);
    const double mean = loss.loss.item<double>();
    r.tokens = loss.tokens;
    r.loss_sum = mean * static_cast<double>(loss.tokens);
    r.padded_cells = batch.padded_tokens;
    r.real_cells = batch.real_tokens;
    if (std::isfinite(mean))
      r.grads = torch::autograd::grad({loss.loss * static_cast<double>(loss.tokens)}, params, /*grad_outputs=*/{},
                                      /*retain_graph=*/false, /*create_graph=*/false, /*allow_unused=*/true);
  } catch (...) {
    r.error = std::current_exception();
  }
}

// target = ((target +) parts[0] + parts[1] + ...) / divisor, element by element, in one pass over memory
// (the parts added in order, so the result does not depend on which shard finished first). The parts are
// float32 CPU tensors of target's shape; target is contiguous. Returns the sum of the squares of the
// results, in double, summed per block and the blocks in order (the same at any thread count): while a
// block is in cache, so that clipping needs no pass over the gradients of its own.
double combine_float(torch::Tensor& target, bool accumulate, const std::vector<torch::Tensor>& parts, float divisor) {
  std::vector<const float*> in;
  for (const auto& g : parts) in.push_back(g.data_ptr<float>());
  float* const out = target.data_ptr<float>();
  constexpr int64_t kBlock = 4096;  // 16 KiB per operand: one pass per part over a block that stays in L1/L2
  const int64_t n = target.numel();
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  std::vector<double> squares(static_cast<size_t>(blocks), 0.0);
  at::parallel_for(0, blocks, 1, [&](int64_t first, int64_t last) {
    for (int64_t block = first; block < last; ++block) {
      const int64_t b = block * kBlock, e = std::min(n, b + kBlock);
      float* __restrict o = out;
      const float* __restrict first = in[0];
      if (accumulate)
        for (int64_t j = b; j < e; ++j) o[j] += first[j];
      else
        for (int64_t j = b; j < e; ++j) o[j] = first[j];
      for (size_t k = 1; k < in.size(); ++k) {
        const float* __restrict part = in[k];
        for (int64_t j = b; j < e; ++j) o[j] += part[j];
      }
      if (divisor != 1.0f)
        for (int64_t j = b; j < e; ++j) o[j] /= divisor;
      // 8 partial sums (vectorisable, and shorter chains than one), added pairwise at the end
      double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
      int64_t j = b;
      for (; j + 8 <= e; j += 8)
        for (int l = 0; l < 8; ++l) s[l] += static_cast<double>(o[j + l]) * static_cast<double>(o[j + l]);
      for (; j < e; ++j) s[0] += static_cast<double>(o[j]) * static_cast<double>(o[j]);
      squares[static_cast<size_t>(block)] = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    }
  });
  double total = 0;
  for (double x : squares) total += x;
  return total;
}

// Adds the shards' gradients of each parameter into its .grad (accumulate[i]: .grad already holds this
// update's sum so far; otherwise it is overwritten, or made), divided by `divisor`. Before, each shard's
// add into a zero-filled .grad and the division were passes of their own over all parameters. Returns the
// sum of the squares of the .grad values it wrote, or -1 when some went the slow way.
double add_gradients(const std::vector<torch::Tensor>& params, const std::vector<ShardResult>& results,
                     std::vector<char>& accumulate, double divisor) {
  torch::NoGradGuard no_grad;
  double squares = 0;
  bool all_summed = true;  // every .grad written went through combine_float
  for (size_t i = 0; i < params.size(); ++i) {
    std::vector<torch::Tensor> parts;
    for (const auto& r : results)
      if (i < r.grads.size() && r.grads[i].defined()) parts.push_back(r.grads[i]);
    auto p = params[i];
    if (parts.empty()) continue;
    auto& grad = p.mutable_grad();
    bool fast = p.is_cpu() && p.scalar_type() == torch::kFloat;
    for (const auto& g : parts) fast = fast && g.is_cpu() && g.scalar_type() == torch::kFloat && g.is_contiguous();
    if (fast) {
      for (auto& g : parts) g = g.view_as(p);
      if (!grad.defined() || !grad.is_contiguous() || grad.sizes() != p.sizes() || grad.is_view()) {
        if (accumulate[i]) parts.insert(parts.begin(), grad.contiguous().view_as(p));
        grad = torch::empty_like(p, torch::MemoryFormat::Contiguous);
        squares += combine_float(grad, false, parts, static_cast<float>(divisor));
      } else {
        squares += combine_float(grad, accumulate[i] != 0, parts, static_cast<float>(divisor));
      }
    } else {
      auto sum = accumulate[i] ? grad + parts[0] : parts[0].clone();
      for (size_t k = 1; k < parts.size(); ++k) sum.add_(parts[k]);
      if (divisor != 1) sum.div_(divisor);
      grad = sum;
      all_summed = false;
    }
    accumulate[i] = 1;
  }
  return all_summed ? squares : -1;
}

}  // namespace

std::vector<std::vector<int64_t>> split_batch(const std::vector<int64_t>& indices, int64_t shards) {
  const auto n = std::max<int64_t>(1, std::min<int64_t>(shards, static_cast<int64_t>(indices.size())));
  std::vector<std::vector<int64_t>> parts(n);
  for (size_t r = 0; r < indices.size(); ++r) parts[r % n].push_back(indices[r]);
  return parts;
}

int64_t update_shards(const TrainingConfig& t, const torch::Device& device) {
  if (!device.is_cpu() || t.cpu_parallel != "batch") return 1;
  return std::max<int64_t>(1, at::get_num_threads());
}

Update compute_update(Seq2Seq& model, const std::vector<torch::Tensor>& params, const std::vector<Example>& examples,
                      const std::vector<std::vector<int64_t>>& batches, const TrainingConfig& t,
                      const torch::Device& device, const UpdateOptions& options, ProcessGroup* group) {
  // accumulate[i]: params[i].grad holds this update's sum so far (anything else in it is stale)
  std::vector<char> accumulate(params.size(), 0);
  auto backward_into_grads = [&](const torch::Tensor& loss) {
    for (size_t i = 0; i < params.size(); ++i)
      if (!accumulate[i]) params[i].mutable_grad().reset();  // backward takes the new gradient over
    loss.backward();
    for (size_t i = 0; i < params.size(); ++i) accumulate[i] = params[i].grad().defined();
  };
  // Parameters that nothing reached get a zero gradient, as after zero_grad() and backward.
  auto zero_the_rest = [&] {
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < params.size(); ++i) {
      if (accumulate[i]) continue;
      auto& g = params[i].mutable_grad();
      if (g.defined())
        g.zero_();
      else
        g = torch::zeros_like(params[i]);
    }
  };

  if (options.graphs && !group && batches.size() == 1)
    return options.graphs->run(model, params, make_batch(examples, batches[0]), t, device);
  if (!group && batches.size() == 1 && options.shards <= 1) {
    const auto batch = make_batch(examples, batches[0]).to(device);
    auto out = model->forward(batch, t.scheduled_sampling);
    auto loss = sequence_loss(out.logits, batch.tgt_out, t.label_smoothing);
    Update u;
    u.loss = loss.loss.item<double>();
    u.tokens = batch.tgt_tokens;
    u.padded_cells = batch.padded_tokens;
    u.real_cells = batch.real_tokens;
    if (std::isfinite(u.loss)) backward_into_grads(loss.loss);
    zero_the_rest();
    return u;
  }

  // Gradients of the summed token losses, over the batches and their shards, then over the ranks;
  // divided by the total number of target tokens at the end (or, with one batch of shards and no other
  // ranks, by the batch's count as the shards' gradients are added up).
  Update u;
  double loss_sum = 0;
  bool divided = false;
  for (size_t k = 0; k < batches.size(); ++k) {
    const auto parts = split_batch(batches[k], options.shards);
    if (parts.size() == 1) {
      const auto batch = make_batch(examples, batches[k]).to(device);
      auto out = model->forward(batch, t.scheduled_sampling);
      auto loss = sequence_loss(out.logits, batch.tgt_out, t.label_smoothing);
      const double mean = loss.loss.item<double>();
      loss_sum += mean * static_cast<double>(loss.tokens);
      u.tokens += loss.tokens;
      u.padded_cells += batch.padded_tokens;
      u.real_cells += batch.real_tokens;
      if (std::isfinite(mean)) backward_into_grads(loss.loss * static_cast<double>(loss.tokens));
      continue;
    }
    std::vector<Batch> shard_batches;
    for (const auto& part : parts) shard_batches.push_back(make_batch(examples, part).to(device));
    std::vector<ShardResult> results(parts.size());
    const std::function<void(int)> task = [&](int s) {
      run_shard(model, params, shard_batches[s], t, mix_seed(options.seed, k, static_cast<uint64_t>(s)), results[s]);
    };
    shard_threads(static_cast<int>(parts.size())).run(static_cast<int>(parts.size()), task);
    for (const auto& r : results)
      if (r.error) std::rethrow_exception(r.error);
    int64_t batch_tokens = 0;
    for (const auto& r : results) {
      loss_sum += r.loss_sum;
      batch_tokens += r.tokens;
      u.padded_cells += r.padded_cells;
      u.real_cells += r.real_cells;
    }
    u.tokens += batch_tokens;
    divided = !group && batches.size() == 1;
    const double squares = add_gradients(params, results, accumulate, divided ? safe_count(batch_tokens) : 1.0);
    // Final values only when nothing changes them after: one batch, no other ranks, no later division.
    // Parameters that no shard reached get zeros below, which add nothing.
    if (divided) u.grad_square_sum = squares;
  }
  zero_the_rest();
  if (group) {
    auto extra = torch::tensor({static_cast<float>(u.tokens), static_cast<float>(loss_sum),
                                stop_requested() ? 1.0f : 0.0f});
    all_reduce_gradients(*group, params, extra);
    u.tokens = static_cast<int64_t>(std::llround(extra[0].item<double>()));
    loss_sum = extra[1].item<double>();
    u.stop_requested = extra[2].item<double>() > 0;
  }
  u.loss = loss_sum / safe_count(u.tokens);
  if (!divided) {
    torch::NoGradGuard no_grad;
    for (auto& p : params)
      if (p.grad().defined()) p.mutable_grad().div_(safe_count(u.tokens));
  }
  return u;
}

}  // namespace s2s
