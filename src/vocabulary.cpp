#include "vocabulary.h"

#include <algorithm>

#include "error.h"

namespace s2s {

const std::vector<std::string>& Vocabulary::specials() {
  static const std::vector<std::string> s = {"<pad>", "<unk>", "<s>", "</s>"};
  return s;
}

Vocabulary::Vocabulary() {
  for (const auto& s : specials()) add(s);
}

void Vocabulary::add(const std::string& token) {
  if (stoi_.count(token)) return;
  stoi_.emplace(token, size());
  itos_.push_back(token);
}

Vocabulary Vocabulary::build(const std::map<std::string, int64_t>& counts, int64_t min_freq, int64_t max_size) {
  std::vector<std::pair<std::string, int64_t>> items;
  for (const auto& [token, count] : counts)
    if (count >= min_freq) items.emplace_back(token, count);
  // std::map is sorted by token, so a stable sort by count keeps ties alphabetical.
  std::stable_sort(items.begin(), items.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  Vocabulary v;
  for (const auto& [token, count] : items) {
    if (max_size > 0 && v.size() - static_cast<int64_t>(specials().size()) >= max_size) break;
    v.add(token);
  }
  return v;
}

int64_t Vocabulary::id(const std::string& token) const {
  auto it = stoi_.find(token);
  return it == stoi_.end() ? kUnk : it->second;
}

const std::string& Vocabulary::token(int64_t id) const {
  if (id < 0 || id >= size()) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
  return itos_[id];
}

std::vector<int64_t> Vocabulary::encode(const std::vector<std::string>& tokens) const {
  std::vector<int64_t> ids;
  ids.reserve(tokens.size());
  for (const auto& t : tokens) ids.push_back(id(t));
  return ids;
}

std::vector<std::string> Vocabulary::decode(const std::vector<int64_t>& ids) const {
  std::vector<std::string> out;
  for (int64_t i : ids) {
    if (i == kEos) break;
    if (i == kPad || i == kBos) continue;
    out.push_back(token(i));
  }
  return out;
}

nlohmann::json Vocabulary::to_json() const { return itos_; }

Vocabulary Vocabulary::from_json(const nlohmann::json& j) {
  if (!j.is_array()) throw Error("vocabulary: expected a JSON array of tokens");
  Vocabulary v;
  const auto& sp = specials();
  for (size_t i = 0; i < j.size(); ++i) {
    const auto token = j[i].get<std::string>();
    if (i < sp.size()) {
      if (token != sp[i]) throw Error("vocabulary: entry " + std::to_string(i) + " must be " + sp[i]);
      continue;
    }
    v.add(token);
  }
  return v;
}

}  // namespace s2s
