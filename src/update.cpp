#include "update.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <functional>

#include "cuda_graph_update.h"
#include "distributed.h"
#include "random.h"
#include "signals.h"
#include "worker_threads.h"

namespace s2s {
namespace {

double safe_count(int64_t n) { return static_cast<double>(std::max<int64_t>(n, 1)); }

struct ShardResult {
  std::vector<torch::Tensor> grads;  // d(summed token loss)/d(param), undefined where unused
  double loss_sum = 0;
  int64_t tokens = 0, padded_cells = 0, real_cells = 0;
  std::exception_ptr error;
};

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

// One parameter's share of the pass that adds up the shards' gradients: out = ((out +) in[0] + in[1] +
// ...) / divisor, element by element (the parts added in order, so the result does not depend on which
// shard finished first). The parts are float32 CPU tensors of out's shape; out is contiguous.
struct Combine {
  torch::Tensor target;
  std::vector<torch::Tensor> parts;
  bool accumulate = false;
  int64_t first_block = 0;  // its blocks' place among all blocks of the pass
};

constexpr int64_t kCombineBlock = 4096;  // 16 KiB per operand: one pass per part over a block that stays in L1/L2

int64_t combine_blocks(const Combine& c) { return (c.target.numel() + kCombineBlock - 1) / kCombineBlock; }

// Block `block` of c, divided by `divisor`; returns the sum of the squares of its results, in double:
// while the block is in cache, so that clipping needs no pass over the gradients of its own.
double combine_block(const Combine& c, int64_t block, float divisor) {
  const int64_t n = c.target.numel();
  const int64_t b = block * kCombineBlock, e = std::min(n, b + kCombineBlock);
  float* __restrict o = c.target.data_ptr<float>();
  const float* __restrict first = c.parts[0].data_ptr<float>();
  if (c.accumulate)
    for (int64_t j = b; j < e; ++j) o[j] += first[j];
  else
    for (int64_t j = b; j < e; ++j) o[j] = first[j];
  for (size_t k = 1; k < c.parts.size(); ++k) {
    const float* __restrict part = c.parts[k].data_ptr<float>();
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
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// All the combines in one pass over memory, their blocks split between the threads (worker_threads.h).
// Returns the sum of the squares of the results: per parameter the blocks in order, then the parameters
// in order (the same at any thread count).
double combine_all(std::vector<Combine>& combines, float divisor) {
  int64_t blocks = 0;
  for (auto& c : combines) {
    c.first_block = blocks;
    blocks += combine_blocks(c);
  }
  std::vector<double> squares(static_cast<size_t>(blocks), 0.0);
  parallel_ranges(blocks, [&](int64_t begin, int64_t end) {
    // the combine that holds block `begin`, then onwards
    size_t c = std::upper_bound(combines.begin(), combines.end(), begin,
                                [](int64_t b, const Combine& x) { return b < x.first_block; }) -
               combines.begin() - 1;
    for (int64_t block = begin; block < end; ++block) {
      while (block >= combines[c].first_block + combine_blocks(combines[c])) ++c;
      squares[static_cast<size_t>(block)] = combine_block(combines[c], block - combines[c].first_block, divisor);
    }
  });
  double total = 0;
  for (const auto& c : combines) {
    double sum = 0;
    for (int64_t b = 0; b < combine_blocks(c); ++b) sum += squares[static_cast<size_t>(c.first_block + b)];
    total += sum;
  }
  return total;
}

// Adds the shards' gradients of each parameter into its .grad (accumulate[i]: .grad already holds this
// update's sum so far; otherwise it is overwritten, or made), divided by `divisor`. Before, each shard's
// add into a zero-filled .grad and the division were passes of their own over all parameters. Returns the
// sum of the squares of the .grad values it wrote, or -1 when some went the slow way.
double add_gradients(const std::vector<torch::Tensor>& params, const std::vector<ShardResult>& results,
                     std::vector<char>& accumulate, double divisor) {
  torch::NoGradGuard no_grad;
  bool all_summed = true;  // every .grad written went through combine_all
  std::vector<Combine> combines;
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
      bool add = accumulate[i] != 0;
      if (!grad.defined() || !grad.is_contiguous() || grad.sizes() != p.sizes() || grad.is_view()) {
        if (add) parts.insert(parts.begin(), grad.contiguous().view_as(p));
        grad = torch::empty_like(p, torch::MemoryFormat::Contiguous);
        add = false;
      }
      if (p.numel() > 0) combines.push_back({grad, std::move(parts), add, 0});
    } else {
      auto sum = accumulate[i] ? grad + parts[0] : parts[0].clone();
      for (size_t k = 1; k < parts.size(); ++k) sum.add_(parts[k]);
      if (divisor != 1) sum.div_(divisor);
      grad = sum;
      all_summed = false;
    }
    accumulate[i] = 1;
  }
  const double squares = combine_all(combines, static_cast<float>(divisor));
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
    return options.graphs->run(model, params, make_batch(examples, batches[0]), t, device, options.optimizer,
                                options.defer_loss);
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
    worker_threads(static_cast<int>(parts.size())).run(static_cast<int>(parts.size()), task);
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
