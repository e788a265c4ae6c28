// Word alignments from attention weights and their error rate, on small cases worked out by hand.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "alignment.h"
#include "error.h"

namespace s2s {
namespace {

TEST(Alignment, EachTargetTokenTakesItsMostAttendedRealSourceToken) {
  // Rows: target tokens, then the </s> prediction; columns: 3 source tokens, then the source's </s>.
  const std::vector<std::vector<float>> attention{
      {0.1f, 0.6f, 0.2f, 0.1f},    // -> 1
      {0.3f, 0.1f, 0.1f, 0.5f},    // </s> column is highest; of the real tokens, 0
      {0.4f, 0.1f, 0.4f, 0.1f},    // tie: the first, 0
      {0.0f, 0.0f, 0.9f, 0.1f},    // -> 2
      {0.0f, 0.0f, 0.0f, 1.0f},    // the </s> row: not a target token
  };
  const auto links = hard_alignment(attention, 3, 4);
  const AlignmentLinks expected{{1, 0}, {0, 1}, {0, 2}, {2, 3}};
  EXPECT_EQ(links, expected);
  EXPECT_EQ(to_pharaoh(links), "1-0 0-1 0-2 2-3");
  EXPECT_EQ(to_pharaoh(hard_alignment(attention, 3, 0)), "");
  EXPECT_EQ(to_pharaoh(hard_alignment(attention, 0, 4)), "");  // an empty source: nothing to align to
}

TEST(Alignment, GoldLinksAreSureOrPossible) {
  const auto gold = parse_gold_alignment("3-1 0-0 1?2  0-0", "gold.txt:7");
  const AlignmentLinks sure{{0, 0}, {3, 1}}, possible{{0, 0}, {3, 1}, {1, 2}};
  EXPECT_EQ(gold.sure, sure);
  EXPECT_EQ(gold.possible, possible);
  EXPECT_TRUE(parse_gold_alignment("", "g:1").sure.empty());
  for (const std::string bad : {"1-", "-1-2", "a-b", "1:2", "1-2-3", "1-x"}) {
    try {
      parse_gold_alignment("0-0 " + bad, "gold.txt:7");
      ADD_FAILURE() << "\"" << bad << "\" was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("gold.txt:7"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
    }
  }
}

// Och & Ney (2003): AER = 1 - (|A & S| + |A & P|) / (|A| + |S|).
TEST(Alignment, ErrorRatePrecisionAndRecallByHand) {
  AlignmentScore score;
  // A = {0-0, 1-1, 2-1}; S = {0-0, 1-2}; P = S + {2-1}: |A&S| = 1, |A&P| = 2, |A| = 3, |S| = 2.
  score.add({{0, 0}, {1, 1}, {2, 1}}, parse_gold_alignment("0-0 1-2 2?1", "g:1"));
  EXPECT_DOUBLE_EQ(score.aer(), 1.0 - 3.0 / 5.0);
  EXPECT_DOUBLE_EQ(score.precision(), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(score.recall(), 1.0 / 2.0);
  // A second sentence adds to the corpus totals: A = {0-0, 1-1}, S = {0-0, 1-1, 2-2}: 2 of 2 right.
  score.add({{0, 0}, {1, 1}}, parse_gold_alignment("0-0 1-1 2-2", "g:2"));
  EXPECT_DOUBLE_EQ(score.aer(), 1.0 - (3.0 + 4.0) / (5.0 + 5.0));
  EXPECT_DOUBLE_EQ(score.precision(), 4.0 / 5.0);
  EXPECT_DOUBLE_EQ(score.recall(), 3.0 / 5.0);

  // With sure links only, AER is 1 - F1.
  AlignmentScore sure_only;
  sure_only.add({{0, 0}, {1, 1}, {2, 2}, {3, 2}}, parse_gold_alignment("0-0 1-1 2-3", "g:1"));
  const double p = 2.0 / 4.0, r = 2.0 / 3.0;
  EXPECT_DOUBLE_EQ(sure_only.aer(), 1.0 - 2 * p * r / (p + r));

  AlignmentScore perfect;
  perfect.add({{2, 0}, {0, 1}}, parse_gold_alignment("0-1 2-0", "g:1"));
  EXPECT_DOUBLE_EQ(perfect.aer(), 0.0);
  EXPECT_DOUBLE_EQ(AlignmentScore{}.aer(), 0.0);  // nothing to compare
}

// Offsets: only target tokens with exactly one sure link and one predicted link count.
TEST(Alignment, OffsetsFromTheTrueSourceToken) {
  AlignmentScore score;
  // Target 0: predicted 3, sure 2 -> +1. Target 1: predicted 0, sure 2 -> -2. Target 2: two sure links,
  // not counted. Target 3: no predicted link, not counted. Target 4: sure 1 and possible 2, predicted 1 -> 0.
  score.add({{3, 0}, {0, 1}, {1, 2}, {1, 4}}, parse_gold_alignment("2-0 2-1 1-2 2-2 0-3 1-4 2?4", "g:1"));
  const std::map<int64_t, int64_t> expected{{-2, 1}, {0, 1}, {1, 1}};
  EXPECT_EQ(score.offsets, expected);
  score.add({{4, 0}}, parse_gold_alignment("3-0", "g:2"));
  EXPECT_EQ(score.offsets.at(1), 2);
}

}  // namespace
}  // namespace s2s
