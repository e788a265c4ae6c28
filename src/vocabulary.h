// Token <-> id maps with the four special tokens at fixed ids.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>

namespace s2s {

class Vocabulary {
 public:
  static constexpr int64_t kPad = 0, kUnk = 1, kBos = 2, kEos = 3;
  static const std::vector<std::string>& specials();  // "<pad>", "<unk>", "<s>", "</s>"

  Vocabulary();  // specials only
  // Most frequent first (ties broken alphabetically, so the result does not depend on input order);
  // tokens rarer than min_freq dropped; at most max_size regular tokens (0 = no limit).
  static Vocabulary build(const std::map<std::string, int64_t>& counts, int64_t min_freq, int64_t max_size);

  int64_t size() const { return static_cast<int64_t>(itos_.size()); }
  int64_t id(const std::string& token) const;  // kUnk when unknown
  const std::string& token(int64_t id) const;
  std::vector<int64_t> encode(const std::vector<std::string>& tokens) const;
  // Stops at </s>; skips <pad> and <s>.
  std::vector<std::string> decode(const std::vector<int64_t>& ids) const;

  nlohmann::json to_json() const;
  static Vocabulary from_json(const nlohmann::json& j);

 private:
  void add(const std::string& token);
  std::vector<std::string> itos_;
  std::unordered_map<std::string, int64_t> stoi_;
};

}  // namespace s2s
