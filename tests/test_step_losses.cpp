// StepLosses (step_losses.h): a pending loss (CUDA graphs, Update::pending) is read one step late, when the
// next step is added or on settle(), and a loss that is not finite stops the run with its own step's number.
// Pending losses are made here by hand: on a GPU they are reads of a copy still on its way back.
#include <cmath>
#include <limits>
#include <vector>

#include <gtest/gtest.h>

#include "step_losses.h"

namespace s2s {
namespace {

Update known(double loss) {
  Update u;
  u.loss = loss;
  return u;
}

// A pending loss that counts how often it was read.
Update pending(double loss, std::vector<int>& reads, size_t slot) {
  Update u;
  u.pending = [loss, &reads, slot] {
    ++reads[slot];
    return loss;
  };
  return u;
}

TEST(StepLosses, KnownLossesAreCountedAtOnce) {
  StepLosses l;
  l.add(known(2.0), 1);
  l.add(known(4.0), 2);
  EXPECT_FALSE(l.waiting());
  EXPECT_EQ(l.counted(), 2);
  EXPECT_DOUBLE_EQ(l.mean(), 3.0);
  l.reset();
  EXPECT_EQ(l.counted(), 0);
  EXPECT_EQ(l.mean(), 0.0);
}

TEST(StepLosses, APendingLossIsReadOnceWhenTheNextStepIsAddedOrOnSettle) {
  std::vector<int> reads(3, 0);
  StepLosses l;
  l.add(pending(1.0, reads, 0), 1);
  EXPECT_EQ(reads[0], 0) << "read before the next step was launched";
  EXPECT_TRUE(l.waiting());
  EXPECT_EQ(l.counted(), 0);
  l.add(pending(3.0, reads, 1), 2);
  EXPECT_EQ(reads[0], 1);
  EXPECT_EQ(reads[1], 0);
  EXPECT_EQ(l.counted(), 1);
  EXPECT_DOUBLE_EQ(l.mean(), 1.0);
  // an interval ends: its last step is settled first, then the next interval starts empty
  l.settle();
  EXPECT_EQ(reads[1], 1);
  EXPECT_FALSE(l.waiting());
  EXPECT_DOUBLE_EQ(l.mean(), 2.0);
  l.reset();
  l.settle();  // nothing kept: nothing read again
  l.add(known(5.0), 3);
  EXPECT_EQ(reads[0], 1);
  EXPECT_EQ(reads[1], 1);
  EXPECT_DOUBLE_EQ(l.mean(), 5.0);
}

TEST(StepLosses, AKeptStepSurvivesReset) {
  std::vector<int> reads(1, 0);
  StepLosses l;
  l.add(known(9.0), 1);
  l.add(pending(1.5, reads, 0), 2);
  l.reset();  // (the trainer settles before it resets; a kept step is not lost if it does not)
  EXPECT_TRUE(l.waiting());
  l.settle();
  EXPECT_EQ(l.counted(), 1);
  EXPECT_DOUBLE_EQ(l.mean(), 1.5);
}

TEST(StepLosses, ANonFiniteLossNamesItsStep) {
  const double nan = std::numeric_limits<double>::quiet_NaN(), inf = std::numeric_limits<double>::infinity();
  {
    StepLosses l;
    l.add(known(1.0), 1);
    try {
      l.add(known(inf), 2);
      FAIL() << "no error";
    } catch (const NonFiniteLoss& e) {
      EXPECT_EQ(e.step, 2);
      EXPECT_TRUE(std::isinf(e.loss));
      EXPECT_STREQ(e.what(), "the loss became inf at step 2");
    }
  }
  {
    // pending: found when the next step is added, and named as the step that gave it
    std::vector<int> reads(2, 0);
    StepLosses l;
    l.add(pending(nan, reads, 0), 7);
    try {
      l.add(pending(1.0, reads, 1), 8);
      FAIL() << "no error";
    } catch (const NonFiniteLoss& e) {
      EXPECT_EQ(e.step, 7);
      EXPECT_TRUE(std::isnan(e.loss));
    }
    EXPECT_EQ(reads[1], 0);
  }
  {
    std::vector<int> reads(1, 0);
    StepLosses l;
    l.add(pending(-inf, reads, 0), 3);
    EXPECT_THROW(l.settle(), NonFiniteLoss);
  }
}

}  // namespace
}  // namespace s2s
