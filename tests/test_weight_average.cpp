// Tests of the moving average of the weights (src/weight_average.h): the recursion and its decay schedule
// computed by hand, the in-place exchange used for validation, and that making the copy draws no random
// numbers (training's random stream is the same with or without the average).
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "config.h"
#include "model.h"
#include "weight_average.h"

namespace s2s {
namespace {

ModelConfig small_config() {
  ModelConfig m;
  m.embedding_size = 4;
  m.hidden_size = 5;
  m.attention = "bahdanau";
  return m;
}

void fill_all(Seq2Seq& model, double value) {
  torch::NoGradGuard no_grad;
  for (auto& p : model->parameters()) p.fill_(value);
}

TEST(WeightAverage, DecayIsTheSmallerOfTheSettingAndTheWarmUp) {
  EXPECT_DOUBLE_EQ(average_decay(0.999, 1), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(average_decay(0.999, 90), 91.0 / 100.0);
  EXPECT_DOUBLE_EQ(average_decay(0.5, 100), 0.5);
  EXPECT_DOUBLE_EQ(average_decay(0.9, 80), 0.9);  // 81/90 = 0.9 as well
}

// Weights set to 1, 2, 3, ... at updates 1, 2, 3, ... from 0: the average follows the recursion by hand.
TEST(WeightAverage, FollowsTheRecursionByHand) {
  torch::manual_seed(1);
  Seq2Seq model(small_config(), 11, 13);
  fill_all(model, 0.0);
  WeightAverage average(copy_model(model, 11, 13), 0.6);
  double expected = 0;
  for (int64_t step = 1; step <= 12; ++step) {
    fill_all(model, static_cast<double>(step));
    average.update(model, step);
    const double d = std::min(0.6, (1.0 + step) / (10.0 + step));
    expected = d * expected + (1 - d) * static_cast<double>(step);
    for (const auto& p : average.average()->parameters())
      ASSERT_NEAR(p.min().item<double>(), expected, 1e-4 * expected) << "step " << step;
    for (const auto& p : average.average()->parameters()) ASSERT_NEAR(p.max().item<double>(), expected, 1e-4 * expected);
  }
  // The model's own weights are untouched by the update.
  for (const auto& p : model->parameters()) EXPECT_EQ(p.min().item<double>(), 12.0);
}

TEST(WeightAverage, SwapExchangesTheWeightsAndTwiceRestoresThem) {
  torch::manual_seed(2);
  Seq2Seq model(small_config(), 11, 13);
  std::vector<torch::Tensor> trained, storages;
  for (const auto& p : model->parameters()) {
    trained.push_back(p.detach().clone());
    storages.push_back(p);
  }
  WeightAverage average(copy_model(model, 11, 13), 0.9);
  fill_all(average.average(), 0.25);
  average.swap(model);
  auto params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::equal(params[i], torch::full_like(params[i], 0.25)));
    EXPECT_TRUE(torch::equal(average.average()->parameters()[i], trained[i]));
    EXPECT_EQ(params[i].data_ptr(), storages[i].data_ptr()) << "the model's tensors must keep their storage";
  }
  average.swap(model);
  params = model->parameters();
  for (size_t i = 0; i < params.size(); ++i) {
    EXPECT_TRUE(torch::equal(params[i], trained[i]));
    EXPECT_TRUE(torch::equal(average.average()->parameters()[i], torch::full_like(params[i], 0.25)));
  }
}

TEST(WeightAverage, TheCopyDrawsNoRandomNumbers) {
  torch::manual_seed(3);
  Seq2Seq model(small_config(), 11, 13);
  torch::manual_seed(4);
  const auto without = torch::rand({8});
  torch::manual_seed(4);
  auto copy = copy_model(model, 11, 13);
  const auto with = torch::rand({8});
  EXPECT_TRUE(torch::equal(without, with));
  auto a = model->parameters(), b = copy->parameters();
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) EXPECT_TRUE(torch::equal(a[i], b[i]));
}

}  // namespace
}  // namespace s2s
