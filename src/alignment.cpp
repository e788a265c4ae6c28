#include "alignment.h"

#include <algorithm>
#include <set>
#include <sstream>

#include "error.h"

namespace s2s {

AlignmentLinks hard_alignment(const std::vector<std::vector<float>>& attention, size_t source_tokens,
                              size_t target_tokens) {
  AlignmentLinks links;
  for (size_t j = 0; j < std::min(target_tokens, attention.size()); ++j) {
    const auto& row = attention[j];
    const auto n = std::min(row.size(), source_tokens);  // the </s> column is not a candidate
    if (n == 0) continue;
    const auto best = std::max_element(row.begin(), row.begin() + static_cast<std::ptrdiff_t>(n)) - row.begin();
    links.emplace_back(static_cast<int64_t>(best), static_cast<int64_t>(j));
  }
  return links;
}

std::string to_pharaoh(const AlignmentLinks& links) {
  std::string out;
  for (const auto& [i, j] : links) {
    if (!out.empty()) out += ' ';
    out += std::to_string(i) + "-" + std::to_string(j);
  }
  return out;
}

GoldAlignment parse_gold_alignment(const std::string& line, const std::string& where) {
  GoldAlignment gold;
  std::istringstream in(line);
  std::string item;
  while (in >> item) {
    const auto sep = item.find_first_of("-?");
    int64_t i = -1, j = -1;
    size_t used_i = 0, used_j = 0;
    try {
      if (sep != std::string::npos && sep > 0 && sep + 1 < item.size()) {
        i = std::stoll(item.substr(0, sep), &used_i);
        j = std::stoll(item.substr(sep + 1), &used_j);
      }
    } catch (const std::exception&) {
      i = -1;
    }
    if (i < 0 || j < 0 || used_i != sep || used_j != item.size() - sep - 1)
      throw Error(where + ": \"" + item + "\" is not an alignment link (i-j sure, i?j possible; 0-based indices)");
    (item[sep] == '-' ? gold.sure : gold.possible).emplace_back(i, j);
  }
  gold.possible.insert(gold.possible.end(), gold.sure.begin(), gold.sure.end());
  for (auto* links : {&gold.sure, &gold.possible}) {
    std::sort(links->begin(), links->end(), [](const auto& a, const auto& b) {
      return a.second != b.second ? a.second < b.second : a.first < b.first;
    });
    links->erase(std::unique(links->begin(), links->end()), links->end());
  }
  return gold;
}

void AlignmentScore::add(const AlignmentLinks& predicted_links, const GoldAlignment& gold) {
  const std::set<std::pair<int64_t, int64_t>> a(predicted_links.begin(), predicted_links.end());
  const std::set<std::pair<int64_t, int64_t>> s(gold.sure.begin(), gold.sure.end());
  const std::set<std::pair<int64_t, int64_t>> p(gold.possible.begin(), gold.possible.end());
  predicted += static_cast<int64_t>(a.size());
  sure += static_cast<int64_t>(s.size());
  for (const auto& link : a) {
    predicted_and_sure += s.count(link) ? 1 : 0;
    predicted_and_possible += p.count(link) ? 1 : 0;
  }
  std::map<int64_t, std::vector<int64_t>> predicted_by_target, sure_by_target;
  for (const auto& [i, j] : a) predicted_by_target[j].push_back(i);
  for (const auto& [i, j] : s) sure_by_target[j].push_back(i);
  for (const auto& [j, sources] : sure_by_target) {
    const auto it = predicted_by_target.find(j);
    if (sources.size() == 1 && it != predicted_by_target.end() && it->second.size() == 1)
      ++offsets[it->second[0] - sources[0]];
  }
}

double AlignmentScore::aer() const {
  const auto denominator = predicted + sure;
  return denominator == 0 ? 0.0
                          : 1.0 - static_cast<double>(predicted_and_sure + predicted_and_possible) /
                                      static_cast<double>(denominator);
}

double AlignmentScore::precision() const {
  return predicted == 0 ? 0.0 : static_cast<double>(predicted_and_possible) / static_cast<double>(predicted);
}

double AlignmentScore::recall() const {
  return sure == 0 ? 0.0 : static_cast<double>(predicted_and_sure) / static_cast<double>(sure);
}

}  // namespace s2s
