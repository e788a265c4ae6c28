// Learning-rate schedules against values worked out by hand.
#include <gtest/gtest.h>

#include "lr_schedule.h"

using s2s::LrSchedule;
using s2s::TrainingConfig;

TEST(LrSchedule, ConstantWithWarmup) {
  TrainingConfig t;
  t.learning_rate = 0.01;
  t.warmup_steps = 4;
  LrSchedule s(t);
  EXPECT_DOUBLE_EQ(s.rate(1), 0.0025);  // 0.01 * 1/4
  EXPECT_DOUBLE_EQ(s.rate(2), 0.005);
  EXPECT_DOUBLE_EQ(s.rate(4), 0.01);
  EXPECT_DOUBLE_EQ(s.rate(1000), 0.01);
}

TEST(LrSchedule, InverseSquareRootAfterWarmup) {
  TrainingConfig t;
  t.learning_rate = 0.01;
  t.lr_schedule = "rsqrt";
  t.warmup_steps = 100;
  LrSchedule s(t);
  EXPECT_DOUBLE_EQ(s.rate(50), 0.005);     // linear warm-up
  EXPECT_DOUBLE_EQ(s.rate(100), 0.01);     // peak
  EXPECT_DOUBLE_EQ(s.rate(400), 0.005);    // 0.01 * sqrt(100/400)
  EXPECT_DOUBLE_EQ(s.rate(10000), 0.001);  // 0.01 * sqrt(100/10000)
}

TEST(LrSchedule, PlateauDecaysAfterPatienceAndKeepsItsState) {
  TrainingConfig t;
  t.learning_rate = 0.01;
  t.lr_schedule = "plateau";
  t.lr_decay = 0.5;
  t.lr_patience = 2;
  t.min_learning_rate = 0.002;
  LrSchedule s(t);
  s.on_validation(true);
  s.on_validation(false);
  EXPECT_DOUBLE_EQ(s.rate(10), 0.01);  // one bad validation: not yet
  s.on_validation(false);
  EXPECT_DOUBLE_EQ(s.rate(10), 0.005);  // two: halved
  s.on_validation(true);
  s.on_validation(false);
  EXPECT_DOUBLE_EQ(s.rate(10), 0.005);  // an improvement resets the count
  s.on_validation(false);
  EXPECT_DOUBLE_EQ(s.rate(10), 0.0025);
  LrSchedule resumed(t);
  resumed.load_state(s.state());
  EXPECT_DOUBLE_EQ(resumed.rate(10), 0.0025);
  s.on_validation(false);
  s.on_validation(false);
  EXPECT_DOUBLE_EQ(s.rate(10), 0.002);  // floor
  resumed.on_validation(false);
  resumed.on_validation(false);
  EXPECT_DOUBLE_EQ(resumed.rate(10), s.rate(10));
}
