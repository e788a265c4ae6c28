// StepWeight (src/step_weight.h): a weight's gradient made once per sequence from the steps' recorded
// inputs and output gradients must equal what autograd makes step by step. Checked on its own (every kind
// of added term, a step whose output gets no gradient, a step that does not fit the recording, other uses
// of the same weight) and through the whole model (every cell and attention, teacher forcing and
// scheduled sampling), against the plain per-step products.
#include <gtest/gtest.h>

#include <numeric>
#include <optional>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "data.h"
#include "model.h"
#include "packed_gemm.h"
#include "step_weight.h"
#include "varied_batch.h"

namespace s2s {
namespace {

class Deferred {  // the switch for one scope
 public:
  explicit Deferred(bool on) { set_deferred_step_weights(on); }
  ~Deferred() { set_deferred_step_weights(true); }
};

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

struct Grads {
  torch::Tensor loss, w, x0, c, bias, h0;
};

// A small recurrence in float64 with every kind of step: c = a [rows, N] tensor, a bias [N], nothing;
// a step whose output is not used; a step with fewer rows (not recorded: a plain product); and a plain
// use of the weight outside the steps. `slots`: the steps the StepWeight is made for (the recurrence makes
// steps + 1 recordable products: with fewer slots the last ones are plain products, with more some stay
// unused).
Grads run_recurrence(bool deferred, int64_t steps, int64_t slots) {
  Deferred scope(deferred);
  torch::manual_seed(3);
  const auto opt = torch::TensorOptions().dtype(torch::kDouble).requires_grad(true);
  const int64_t rows = 3, N = 4;
  auto w = torch::randn({N, N}, opt), x0 = torch::randn({rows, N}, opt), c = torch::randn({steps, rows, N}, opt),
       bias = torch::randn({N}, opt), h0 = torch::randn({rows - 1, N}, opt);
  StepWeight sw(w, slots, rows);
  EXPECT_EQ(sw.deferred(), deferred && slots >= 2);
  auto h = x0;
  torch::Tensor total = torch::zeros({}, torch::kDouble);
  for (int64_t j = 0; j < steps; ++j) {
    torch::Tensor y;
    switch (j % 3) {
      case 0: y = sw.addmm(c[j], h); break;
      case 1: y = sw.addmm(bias, h); break;
      default: y = sw.addmm({}, h); break;
    }
    if (j == 1) {
      (void)sw.addmm(c[j], y.tanh());  // an output that the loss never sees: its slot stays zero
    }
    h = torch::tanh(y);
    total = total + (h * h).sum() * (j + 1);
  }
  total = total + sw.addmm({}, h0).sum();  // one more step than recorded rows allow: a plain product
  total = total + torch::mm(x0, w.t()).pow(2).sum();  // the weight used outside the steps
  total.backward();
  return {total.detach(), w.grad(), x0.grad(), c.grad(), bias.grad(), h0.grad()};
}

TEST(StepWeight, GradientsEqualThePerStepProducts) {
  for (int64_t steps : {2, 5, 7})
    for (int64_t slots : {steps - 1, steps + 1, steps + 3}) {
      const auto plain = run_recurrence(false, steps, slots), deferred = run_recurrence(true, steps, slots);
      const auto where = std::to_string(steps) + " steps, " + std::to_string(slots) + " slots";
      ASSERT_GT(plain.w.abs().max().item<double>(), 1e-3) << where;
      EXPECT_LE(max_diff(deferred.loss, plain.loss), 1e-12) << where;
      EXPECT_LE(max_diff(deferred.w, plain.w), 1e-12 * std::max(1.0, plain.w.abs().max().item<double>())) << where;
      EXPECT_LE(max_diff(deferred.x0, plain.x0), 1e-12) << where;
      EXPECT_LE(max_diff(deferred.c, plain.c), 1e-12) << where;
      EXPECT_LE(max_diff(deferred.bias, plain.bias), 1e-12) << where;
      EXPECT_LE(max_diff(deferred.h0, plain.h0), 1e-12) << where;
    }
}

TEST(StepWeight, PlainWithoutGradientOrWhenSwitchedOff) {
  auto w = torch::randn({4, 3}, torch::requires_grad());
  {
    torch::NoGradGuard no_grad;
    EXPECT_FALSE(StepWeight(w, 5, 2).deferred());
  }
  EXPECT_FALSE(StepWeight(w.detach(), 5, 2).deferred());
  EXPECT_FALSE(StepWeight(w, 1, 2).deferred());  // one step: nothing to gather
  Deferred off(false);
  EXPECT_FALSE(StepWeight(w, 5, 2).deferred());
}

// The recording holds the steps' inputs without their autograd history: a graph that is dropped without a
// backward pass (an exception mid-step, a forward whose loss is not used) frees them.
TEST(StepWeight, ADroppedGraphFreesTheRecordedInputs) {
  auto w = torch::randn({4, 4}, torch::requires_grad());
  std::optional<c10::weak_intrusive_ptr<c10::StorageImpl>> recorded;  // the first step's output's memory
  {
    StepWeight sw(w, 3, 2);
    ASSERT_TRUE(sw.deferred());
    auto h = torch::tanh(sw.addmm({}, torch::randn({2, 4}, torch::requires_grad())));
    recorded.emplace(h.storage().getWeakStorageImpl());
    for (int j = 0; j < 2; ++j) h = torch::tanh(sw.addmm({}, h));  // records the first step's output
    EXPECT_FALSE(recorded->expired());
  }
  EXPECT_TRUE(recorded->expired());
}

// ---------------------------------------------------------------------------------------------
// Through the model, in float32: deferred against plain per-step products

ModelConfig config_for(const std::string& cell, const std::string& attention) {
  ModelConfig c;
  c.cell = cell;
  c.attention = attention;
  c.embedding_size = 6;
  c.hidden_size = 10;
  c.attention_size = 7;
  c.bidirectional = true;
  c.encoder_layers = 2;
  c.dropout = 0.0;
  c.init_range = 0.5;
  return c;
}

Batch test_batch(int64_t vocab) { return testing::varied_batch(vocab, 9, 8); }  // source 1-8 words

std::vector<torch::Tensor> model_gradients(const ModelConfig& cfg, bool deferred, double sampling) {
  Deferred scope(deferred);
  torch::manual_seed(11);
  Seq2Seq model(cfg, 17, 15);
  model->train();
  const auto batch = test_batch(15);
  torch::manual_seed(5);  // the same sampling draws
  auto loss = sequence_loss(model->forward(batch, sampling).logits, batch.tgt_out, 0.1).loss;
  loss.backward();
  std::vector<torch::Tensor> grads;
  for (const auto& p : model->parameters()) grads.push_back(p.grad().clone());
  return grads;
}

// Deferred with the steps' products from packed weights (where the processor has AVX-512F) and with
// LibTorch's products (elsewhere), both against plain per-step products.
TEST(StepWeight, ModelGradientsEqualThePlainProducts) {
  const auto packings = PackedMatrix::available() ? std::vector<bool>{true, false} : std::vector<bool>{false};
  for (bool packed : packings) {
    PackedMatrix::allow(packed);
    for (const std::string cell : {"rnn", "gru", "lstm"})
      for (const std::string attention : {"bahdanau", "qkv", "none"})
        for (double sampling : {0.0, 0.5}) {
          const auto cfg = config_for(cell, attention);
          const auto plain = model_gradients(cfg, false, sampling), deferred = model_gradients(cfg, true, sampling);
          ASSERT_EQ(plain.size(), deferred.size());
          for (size_t i = 0; i < plain.size(); ++i) {
            const double scale = std::max(1.0, plain[i].abs().max().item<double>());
            EXPECT_LE(max_diff(deferred[i], plain[i]), 2e-6 * scale)
                << cell << "+" << attention << " sampling " << sampling << " parameter " << i
                << (packed ? " packed" : " unpacked");
          }
        }
  }
  PackedMatrix::allow(true);
}

}  // namespace
}  // namespace s2s
