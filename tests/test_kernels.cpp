// The hand-written CPU kernels against the LibTorch expressions they replace: the fused attention step
// (attention_kernels.h, through the model: values and every parameter's gradient, both attentions, masks of
// several lengths) and the softmax cross-entropy (softmax_kernels.h, against float64 log_softmax). Each runs
// on the AVX2 path (where the machine has it) and on the portable loops, with sizes that leave tails
// shorter than a vector.
#include <gtest/gtest.h>

#include <numeric>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "attention.h"
#include "data.h"
#include "model.h"
#include "row_parallel.h"
#include "simd.h"
#include "varied_batch.h"

namespace s2s {
namespace {

// Sets the kernel path and the attention switches for one scope, restoring the defaults after.
// kernels false: the fused step by LibTorch's operations (a GPU's route) instead of the CPU kernels.
class KernelPath {
 public:
  KernelPath(bool avx2, bool fused, bool kernels = true) {
    simd::allow_avx2(avx2);
    set_fused_attention(fused);
    set_attention_kernels(kernels);
  }
  ~KernelPath() {
    simd::allow_avx2(true);
    set_fused_attention(true);
    set_attention_kernels(true);
    set_row_kernels(true);
  }
};

class Threads {
 public:
  explicit Threads(int n) : before_(torch::get_num_threads()) { torch::set_num_threads(n); }
  ~Threads() { torch::set_num_threads(before_); }

 private:
  int before_;
};

std::vector<bool> paths() { return simd::avx2() ? std::vector<bool>{true, false} : std::vector<bool>{false}; }

// max |a - b| <= tol * max(1, max |b|)
void expect_close(const torch::Tensor& a, const torch::Tensor& b, double tol, const std::string& what) {
  ASSERT_EQ(a.sizes(), b.sizes()) << what;
  const double err = (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
  const double scale = std::max(1.0, b.abs().max().item<double>());
  EXPECT_LE(err, tol * scale) << what << ": max difference " << err << " (scale " << scale << ")";
}

ModelConfig config_for(const std::string& cell, const std::string& attention, int64_t hidden, int64_t attention_size) {
  ModelConfig c;
  c.cell = cell;
  c.attention = attention;
  c.embedding_size = 6;
  c.hidden_size = hidden;
  c.attention_size = attention_size;
  c.dropout = 0.0;
  c.init_range = 0.5;
  return c;
}

Batch test_batch(int64_t vocab) { return testing::varied_batch(vocab, 13, 12); }  // source 1-12 words

struct ForwardBackward {
  torch::Tensor logits, weights;
  std::vector<torch::Tensor> grads;
};

// A loss that weighs every logit and every attention weight differently, so both outputs carry gradient.
ForwardBackward run(Seq2Seq& model, const Batch& batch) {
  model->zero_grad();
  auto out = model->forward(batch);
  torch::manual_seed(5);
  auto loss = (out.logits * torch::randn(out.logits.sizes())).sum() +
              (out.weights * torch::randn(out.weights.sizes())).sum();
  loss.backward();
  ForwardBackward r{out.logits.detach(), out.weights.detach(), {}};
  for (const auto& p : model->parameters()) r.grads.push_back(p.grad().clone());
  return r;
}

TEST(FusedAttention, SameValuesAndGradientsAsTheTensorExpressions) {
  const int64_t vocab = 17;
  const auto batch = test_batch(vocab);
  // hidden 7 (bahdanau context 14, not a multiple of 8) and attention 13 / 19; and full vectors: 16 / 32
  for (const auto& [hidden, attention_size] : std::vector<std::pair<int64_t, int64_t>>{{7, 13}, {16, 32}, {5, 3}}) {
    for (const std::string attention : {"bahdanau", "qkv"}) {
      for (const std::string cell : {"rnn", "gru"}) {
        auto cfg = config_for(cell, attention, hidden, attention_size);
        cfg.qkv_scaled = hidden == 16;
        torch::manual_seed(3);
        Seq2Seq model(cfg, vocab, vocab);
        ForwardBackward reference;
        {
          KernelPath path(true, /*fused=*/false);
          reference = run(model, batch);
        }
        for (bool avx2 : paths()) {
          SCOPED_TRACE(cell + "+" + attention + " hidden " + std::to_string(hidden) + " attention " +
                       std::to_string(attention_size) + (avx2 ? " avx2" : " portable"));
          KernelPath path(avx2, /*fused=*/true);
          const auto fused = run(model, batch);
          expect_close(fused.logits, reference.logits, 1e-5, "logits");
          expect_close(fused.weights, reference.weights, 1e-6, "attention weights");
          EXPECT_TRUE(fused.weights.masked_select(reference.weights.eq(0)).eq(0).all().item<bool>())
              << "padding must get weight exactly 0";
          const auto names = model->named_parameters().keys();
          for (size_t i = 0; i < names.size(); ++i)
            expect_close(fused.grads[i], reference.grads[i], 2e-5, "dL/d" + names[i]);
        }
      }
    }
  }
}

// The fused step by LibTorch's operations, the route on a GPU (and for types other than float32), run
// here on the CPU: the values and every gradient of the expressions differentiated by autograd, in
// float32 (kernels switched off) and float64 (where the kernels never apply).
TEST(FusedAttention, LibTorchRouteGivesTheExpressionsValuesAndGradients) {
  const int64_t vocab = 17;
  const auto batch = test_batch(vocab);
  for (const auto dtype : {torch::kFloat, torch::kDouble}) {
    const double tol = dtype == torch::kDouble ? 1e-12 : 2e-5;
    for (const std::string attention : {"bahdanau", "qkv"}) {
      for (const std::string cell : {"rnn", "lstm"}) {
        auto cfg = config_for(cell, attention, 7, 13);
        cfg.qkv_scaled = cell == "rnn";
        torch::manual_seed(8);
        Seq2Seq model(cfg, vocab, vocab);
        model->to(dtype);
        SCOPED_TRACE(cell + "+" + attention + (dtype == torch::kDouble ? " float64" : " float32"));
        ForwardBackward reference, route;
        {
          KernelPath path(true, /*fused=*/false);
          reference = run(model, batch);
        }
        {
          KernelPath path(true, /*fused=*/true, /*kernels=*/false);
          route = run(model, batch);
        }
        expect_close(route.logits, reference.logits, tol, "logits");
        expect_close(route.weights, reference.weights, tol, "attention weights");
        EXPECT_TRUE(route.weights.masked_select(reference.weights.eq(0)).eq(0).all().item<bool>())
            << "padding must get weight exactly 0";
        const auto names = model->named_parameters().keys();
        for (size_t i = 0; i < names.size(); ++i)
          expect_close(route.grads[i], reference.grads[i], tol, "dL/d" + names[i]);
        // search, without gradient
        torch::NoGradGuard no_grad;
        model->eval();
        KernelPath path(true, /*fused=*/true, /*kernels=*/false);
        const auto searched = model->forward(batch).weights;
        set_fused_attention(false);
        expect_close(searched, model->forward(batch).weights, tol, "weights without gradient");
      }
    }
  }
}

// The attention module alone, over a few steps: the memory made for the CPU kernels (totals) or for
// LibTorch's route (recorded shares), and its steps run by the kernels or by LibTorch's operations,
// including the mixed case of a memory made for the kernels stepped without them (the kernels switched
// off in between): every gradient equals autograd's expressions.
TEST(FusedAttention, EveryMemoryAndStepRouteGivesTheExpressionsGradients) {
  const int64_t B = 3, S = 5, H = 6, A = 7, steps = 4;
  for (const std::string kind : {"bahdanau", "qkv"}) {
    ModelConfig cfg = config_for("rnn", kind, H, A);
    torch::manual_seed(9);
    auto attention = make_attention(cfg, H, H);
    {
      torch::NoGradGuard no_grad;
      for (auto& p : attention->parameters()) p.uniform_(-0.5, 0.5);  // the model initialises them, not the module
    }
    const auto states = torch::randn({B, S, H});
    auto mask = torch::ones({B, S}, torch::kBool);
    mask.index_put_({0, torch::indexing::Slice(3)}, false);
    mask.index_put_({2, torch::indexing::Slice(1)}, false);
    const auto queries = torch::randn({steps, B, H});
    const auto r_context = torch::randn({steps, B, attention->context_size()}), r_weights = torch::randn({steps, B, S});
    // (memory made with kernels, steps with kernels); fused off: the expressions
    auto run = [&](bool fused, bool memory_kernels, bool step_kernels) {
      set_fused_attention(fused);
      set_attention_kernels(memory_kernels);
      attention->zero_grad();
      auto h = states.clone().requires_grad_();
      auto q = queries.clone().requires_grad_();
      auto memory = attention->prepare(h, mask);
      set_attention_kernels(step_kernels);
      torch::Tensor loss = torch::zeros({});
      for (int64_t j = 0; j < steps; ++j) {
        auto r = attention->forward(q[j], memory);
        loss = loss + (r.context * r_context[j]).sum() + (r.weights * r_weights[j]).sum();
      }
      loss.backward();
      std::vector<torch::Tensor> grads{h.grad(), q.grad()};
      for (const auto& p : attention->parameters())  // copies: zero_grad() zeroes the same tensors in place
        grads.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
      set_fused_attention(true);
      set_attention_kernels(true);
      return grads;
    };
    const auto reference = run(false, true, true);
    for (const auto& [memory_kernels, step_kernels] : std::vector<std::pair<bool, bool>>{{true, true}, {false, false}, {true, false}}) {
      SCOPED_TRACE(kind + (memory_kernels ? " memory for the kernels" : " recorded memory") +
                   (step_kernels ? ", kernel steps" : ", LibTorch's steps"));
      const auto grads = run(true, memory_kernels, step_kernels);
      ASSERT_EQ(grads.size(), reference.size());
      for (size_t i = 0; i < grads.size(); ++i) expect_close(grads[i], reference[i], 2e-5, "gradient " + std::to_string(i));
    }
  }
}

TEST(FusedAttention, BitIdenticalWithOneOrTwoThreads) {
  const int64_t vocab = 17;
  const auto batch = test_batch(vocab);
  torch::manual_seed(4);
  Seq2Seq model(config_for("rnn", "bahdanau", 16, 24), vocab, vocab);
  ForwardBackward one, two;
  {
    Threads t(1);
    one = run(model, batch);
  }
  {
    Threads t(2);
    two = run(model, batch);
  }
  EXPECT_TRUE(one.logits.equal(two.logits));
  for (size_t i = 0; i < one.grads.size(); ++i) EXPECT_TRUE(one.grads[i].equal(two.grads[i])) << "parameter " << i;
}

TEST(FusedAttention, SearchWithoutGradientGivesTheSameWeights) {
  const int64_t vocab = 17;
  const auto batch = test_batch(vocab);
  torch::manual_seed(6);
  Seq2Seq model(config_for("gru", "bahdanau", 7, 13), vocab, vocab);
  model->eval();
  torch::NoGradGuard no_grad;
  torch::Tensor reference;
  {
    KernelPath path(true, /*fused=*/false);
    reference = model->forward(batch).weights;
  }
  for (bool avx2 : paths()) {
    KernelPath path(avx2, /*fused=*/true);
    expect_close(model->forward(batch).weights, reference, 1e-6, avx2 ? "avx2" : "portable");
  }
}

TEST(FusedCrossEntropy, MatchesFloat64LogSoftmaxInValueAndGradient) {
  torch::manual_seed(7);
  const int64_t pad = 0;
  for (int64_t V : {5, 8, 6198}) {
    const int64_t N = 37;
    auto targets = torch::randint(1, V, {N}, torch::kInt64);
    targets.index_put_({torch::arange(0, N, 6)}, pad);
    const auto real = targets.ne(pad);
    const auto logits64 = (4 * torch::randn({N, V}, torch::kDouble)).requires_grad_();
    const auto row_weights = torch::rand({N}, torch::kDouble);
    for (double smoothing : {0.0, 0.1}) {
      auto logp = torch::log_softmax(logits64, 1);
      auto nll = (-logp.gather(1, targets.unsqueeze(1)).squeeze(1)).masked_fill(real.logical_not(), 0);
      auto ref = (1 - smoothing) * nll + smoothing * (-logp.mean(1)).masked_fill(real.logical_not(), 0);
      auto ref_grad = torch::autograd::grad({(ref * row_weights).sum()}, {logits64})[0];
      // the kernels (AVX2 and portable), and LibTorch's log_softmax route of other devices (a GPU's)
      std::vector<int> routes{0};
      if (simd::avx2()) routes.push_back(1);
      routes.push_back(2);
      for (int route : routes) {
        const bool avx2 = route == 1;
        SCOPED_TRACE("V " + std::to_string(V) + " smoothing " + std::to_string(smoothing) +
                     (route == 2 ? " log_softmax route" : avx2 ? " avx2" : " portable"));
        KernelPath path(avx2, true);
        set_row_kernels(route != 2);
        auto logits = logits64.detach().to(torch::kFloat).requires_grad_();
        auto r = cross_entropy_rows(logits, targets, smoothing, pad);
        expect_close(r.loss, ref.detach(), 2e-6, "loss rows");
        expect_close(r.nll, nll.detach(), 2e-6, "nll rows");
        (r.loss * row_weights.to(torch::kFloat)).sum().backward();
        expect_close(logits.grad(), ref_grad, 1e-6, "dL/dlogits");
        EXPECT_TRUE(logits.grad().index_select(0, torch::arange(0, N, 6)).eq(0).all().item<bool>())
            << "padding rows must get no gradient";
      }
    }
  }
}

}  // namespace
}  // namespace s2s
