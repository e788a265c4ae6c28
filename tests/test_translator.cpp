// Pieces of `s2s translate` that need no model.
#include <gtest/gtest.h>

#include "translator.h"

TEST(Translator, UnkReplaceTakesTheSourceWordWithTheHighestWeight) {
  const std::vector<std::string> source = {"Zürich", "is", "big"};
  std::vector<std::string> output = {"<unk>", "ist", "<unk>", "<unk>"};
  // Rows: one per output token; columns: the three source tokens and </s>.
  const std::vector<std::vector<float>> attention = {
      {0.7f, 0.1f, 0.1f, 0.1f},   // -> Zürich
      {0.1f, 0.8f, 0.05f, 0.05f},
      {0.1f, 0.1f, 0.2f, 0.6f},   // </s> has the most weight, but is not a word: -> big
      {0.0f, 0.0f, 0.0f, 1.0f}};  // only </s>: the first source word among equals
  s2s::replace_unknowns(output, attention, source);
  EXPECT_EQ(output, (std::vector<std::string>{"Zürich", "ist", "big", "Zürich"}));
}

TEST(Translator, UnkReplaceWithoutAttentionChangesNothing) {
  std::vector<std::string> output = {"<unk>", "a"};
  s2s::replace_unknowns(output, {}, {"x"});
  EXPECT_EQ(output, (std::vector<std::string>{"<unk>", "a"}));
}
