// The two routes of a bidirectional encoder layer (encoder.h): the directions one after the other (the
// CPU's) and both directions in one loop with batched products (a GPU's) must give the same states,
// final states and gradients, for every cell, one and two layers, in float64 and float32. The batched
// route runs with and without per-sequence weight gradients (step_weight.h: batched for a stack of
// weights); the reference, without. The sequential route is the one that the
// hand-computed and finite-difference tests (test_model.cpp) check.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <torch/torch.h>

#include "encoder.h"
#include "model.h"
#include "op_count.h"
#include "step_weight.h"
#include "varied_batch.h"

namespace s2s {
namespace {

struct Routes {  // the switches for one scope
  Routes(bool batched, bool deferred) {
    set_batched_directions_on_cpu(batched);
    set_deferred_step_weights(deferred);
  }
  ~Routes() {
    set_batched_directions_on_cpu(false);
    set_deferred_step_weights(true);
  }
};

struct Encoded {
  std::vector<torch::Tensor> outputs;  // states, final, final memory (lstm)
  std::vector<torch::Tensor> grads;    // every encoder parameter's, the embedding's included
  int64_t operations = 0;              // LibTorch operations of the forward pass
};

Encoded encode(const std::string& cell, int64_t layers, torch::Dtype dtype, bool batched, bool deferred) {
  Routes routes(batched, deferred);
  ModelConfig cfg;
  cfg.cell = cell;
  cfg.attention = "bahdanau";
  cfg.embedding_size = 5;
  cfg.hidden_size = 6;
  cfg.attention_size = 4;
  cfg.bidirectional = true;
  cfg.encoder_layers = layers;
  cfg.dropout = 0.0;
  cfg.init_range = 0.5;
  torch::manual_seed(7);
  Seq2Seq model(cfg, 13, 11);
  model->to(dtype);
  model->train();
  const auto batch = testing::varied_batch(13, 7, 6);  // source lengths 2-7: every row padded differently
  EncoderOutput out;
  Encoded e;
  {
    OpCount count;
    out = model->encode(batch.src, batch.src_lengths);
    e.operations = count.total();
  }
  e.outputs = {out.states, out.final};
  if (out.final_memory.defined()) e.outputs.push_back(out.final_memory);
  // A loss that weighs every output element differently, the same in both routes.
  auto loss = torch::zeros({}, out.states.options());
  torch::manual_seed(3);
  for (const auto& o : e.outputs) loss = loss + (o * torch::randn(o.sizes(), o.options())).sum();
  loss.backward();
  for (const auto& p : model->encoder->parameters()) e.grads.push_back(p.grad().clone());
  return e;
}

double max_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

TEST(BatchedDirections, GiveTheSequentialStatesAndGradients) {
  for (const std::string cell : {"rnn", "gru", "lstm"})
    for (int64_t layers : {1, 2})
      for (auto dtype : {torch::kDouble, torch::kFloat})
        for (bool deferred : {true, false}) {
          const double tol = dtype == torch::kDouble ? 1e-12 : 2e-6;
          SCOPED_TRACE(cell + ", " + std::to_string(layers) + " layers, " +
                       (dtype == torch::kDouble ? "float64" : "float32") + (deferred ? ", deferred" : ", plain"));
          // the reference: the directions one after the other, each step's products left to autograd
          const auto sequential = encode(cell, layers, dtype, false, false);
          const auto batched = encode(cell, layers, dtype, true, deferred);
          // the switch takes the other route: fewer operations (each step one product for both directions)
          EXPECT_LT(batched.operations, sequential.operations);
          ASSERT_EQ(batched.outputs.size(), sequential.outputs.size());
          for (size_t i = 0; i < sequential.outputs.size(); ++i) {
            ASSERT_EQ(batched.outputs[i].sizes(), sequential.outputs[i].sizes()) << "output " << i;
            EXPECT_LE(max_diff(batched.outputs[i], sequential.outputs[i]), tol) << "output " << i;
          }
          ASSERT_EQ(batched.grads.size(), sequential.grads.size());
          for (size_t i = 0; i < sequential.grads.size(); ++i) {
            ASSERT_GT(sequential.grads[i].abs().max().item<double>(), 1e-4) << "parameter " << i;
            const double scale = std::max(1.0, sequential.grads[i].abs().max().item<double>());
            EXPECT_LE(max_diff(batched.grads[i], sequential.grads[i]), tol * scale) << "parameter " << i;
          }
        }
}

}  // namespace
}  // namespace s2s
