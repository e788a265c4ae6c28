// OpCount (op_count.h): a known sequence of operations gives the counts worked out by hand; views and
// allocations are not counted, a product or reduction counts once, other threads' operations count, and
// nothing is counted once the count has ended.
#include <gtest/gtest.h>

#include <thread>

#include <torch/torch.h>

#include "op_count.h"

namespace s2s {
namespace {

TEST(OpCount, CountsTheOperationsThatDoWork) {
  torch::NoGradGuard no_grad;
  const auto a = torch::randn({8, 6}), b = torch::randn({6, 5}), c = torch::randn({8, 5});
  std::map<std::string, int64_t> counts;
  int64_t total = 0;
  {
    OpCount count;
    auto x = a.t().unsqueeze(0).squeeze(0).t();  // views: nothing
    auto e = torch::empty({3, 3});               // an allocation: nothing
    auto y = torch::mm(x, b);                    // 1 mm
    auto z = torch::addmm(c, a, b);              // 1 addmm (a copy and a product on the CPU)
    auto w = (y + z).tanh_();                    // 1 add, 1 tanh_
    auto s = w.sum(1);                           // 1 sum
    std::thread other([&] { auto u = s * 2; });  // 1 mul, on another thread
    other.join();
    total = count.total();
    counts = count.by_name();
  }
  EXPECT_EQ(total, 6);
  EXPECT_EQ(counts["aten::mm"], 1);
  EXPECT_EQ(counts["aten::addmm"], 1);
  EXPECT_EQ(counts["aten::add"], 1);
  EXPECT_EQ(counts["aten::tanh_"], 1);
  EXPECT_EQ(counts["aten::sum"], 1);
  EXPECT_EQ(counts["aten::mul"], 1);
  EXPECT_EQ(counts.count("aten::copy_"), 0u) << "addmm's own copy is part of it";
}

TEST(OpCount, AutogradsBackwardIsCountedAndACountEndsWithItsScope) {
  const auto x = torch::randn({4, 3}, torch::requires_grad());
  const auto W = torch::randn({3, 2}, torch::requires_grad());
  int64_t forward = 0, both = 0;
  {
    OpCount count;
    auto loss = torch::mm(x, W).tanh().sum();  // mm, tanh, sum
    forward = count.total();
    loss.backward();  // sum's backward: an expand (a view) and a copy into the gradient; tanh_backward; 2 mm
    both = count.total();
  }
  EXPECT_EQ(forward, 3);
  EXPECT_GE(both - forward, 3) << "tanh_backward and the two products of mm's backward";
  {
    OpCount count;
    EXPECT_THROW(OpCount second, std::exception) << "one count at a time";
  }
  OpCount after;  // the earlier counts have ended: this one starts from zero
  EXPECT_EQ(after.total(), 0);
}

}  // namespace
}  // namespace s2s
