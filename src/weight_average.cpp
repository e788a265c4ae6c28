#include "weight_average.h"

#include <algorithm>

#include "error.h"
#include "worker_threads.h"

namespace s2s {

double average_decay(double decay, int64_t step) {
  return std::min(decay, (1.0 + static_cast<double>(step)) / (10.0 + static_cast<double>(step)));
}

WeightAverage::WeightAverage(Seq2Seq average, double decay) : average_(std::move(average)), decay_(decay) {
  average_->eval();
  for (auto& p : average_->parameters()) p.set_requires_grad(false);
}

void WeightAverage::update(Seq2Seq& model, int64_t step) {
  torch::NoGradGuard no_grad;
  const double d = average_decay(decay_, step);
  const auto weights = model->parameters();
  auto averages = average_->parameters();
  if (weights.size() != averages.size()) throw Error("weight average: the model has another shape");
  // d avg + (1 - d) w as avg + (1 - d) (w - avg): one pass over each tensor.
  bool plain_floats = true;
  for (size_t i = 0; i < weights.size(); ++i)
    plain_floats &= weights[i].is_cpu() && weights[i].scalar_type() == torch::kFloat && weights[i].is_contiguous() &&
                    averages[i].is_contiguous();
  if (!plain_floats) {
    for (size_t i = 0; i < weights.size(); ++i) averages[i].lerp_(weights[i].detach(), 1.0 - d);
    return;
  }
  // On the CPU the pass is memory-bound: blocks of the tensors split across the worker threads.
  constexpr int64_t kBlock = 1 << 16;
  struct Block {
    size_t tensor;
    int64_t begin, end;
  };
  std::vector<Block> blocks;
  for (size_t i = 0; i < weights.size(); ++i)
    for (int64_t b = 0, n = weights[i].numel(); b < n; b += kBlock) blocks.push_back({i, b, std::min(n, b + kBlock)});
  const float w = static_cast<float>(1.0 - d);
  parallel_ranges(static_cast<int64_t>(blocks.size()), [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) {
      const auto& blk = blocks[static_cast<size_t>(k)];
      const float* p = weights[blk.tensor].data_ptr<float>();
      float* a = averages[blk.tensor].data_ptr<float>();
      for (int64_t j = blk.begin; j < blk.end; ++j) a[j] += w * (p[j] - a[j]);
    }
  });
}

void WeightAverage::swap(Seq2Seq& model) {
  torch::NoGradGuard no_grad;
  auto weights = model->parameters();
  auto averages = average_->parameters();
  for (size_t i = 0; i < weights.size(); ++i) {
    const auto trained = weights[i].detach().clone();
    weights[i].detach().copy_(averages[i]);
    averages[i].copy_(trained);
  }
}

Seq2Seq copy_model(Seq2Seq& model, int64_t src_vocab, int64_t tgt_vocab) {
  auto copy = model_shell(model->config(), src_vocab, tgt_vocab);
  const auto device = model->parameters().front().device();
  copy->to(device);
  torch::NoGradGuard no_grad;
  auto from = model->parameters();
  auto to = copy->parameters();
  for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
  return copy;
}

}  // namespace s2s
