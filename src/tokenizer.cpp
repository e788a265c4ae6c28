#include "tokenizer.h"

#include <cstring>

#include "error.h"
#include "utf8.h"

namespace s2s {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
bool is_punct(char c) { return c > 0 && std::strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", c) != nullptr; }
bool attaches_left(const std::string& t) { return t.size() == 1 && std::strchr(".,!?;:)]}%", t[0]) != nullptr; }
bool attaches_right(const std::string& t) { return t.size() == 1 && std::strchr("([{", t[0]) != nullptr; }

}  // namespace

std::vector<std::string> WordTokenizer::tokenize(const std::string& raw) const {
  const std::string text = options_.lowercase ? utf8::lowercase(raw) : raw;
  std::vector<std::string> tokens;
  std::string current;
  auto flush = [&] {
    if (!current.empty()) tokens.push_back(std::move(current));
    current.clear();
  };
  for (char c : text) {
    if (is_space(c)) {
      flush();
    } else if (options_.split_punctuation && is_punct(c)) {
      flush();
      tokens.emplace_back(1, c);
    } else {
      current += c;
    }
  }
  flush();
  return tokens;
}

std::string WordTokenizer::detokenize(const std::vector<std::string>& tokens) const {
  std::string out;
  bool glue_next = false;
  for (const auto& t : tokens) {
    const bool glue = options_.split_punctuation && (attaches_left(t) || glue_next);
    if (!out.empty() && !glue) out += ' ';
    out += t;
    glue_next = options_.split_punctuation && attaches_right(t);
  }
  return out;
}

std::vector<std::vector<std::string>> Tokenizer::tokenize_all(const std::vector<std::string>& lines) const {
  std::vector<std::vector<std::string>> out;
  out.reserve(lines.size());
  for (const auto& line : lines) out.push_back(tokenize(line));
  return out;
}

nlohmann::json WordTokenizer::to_json() const {
  return {{"type", "word"}, {"lowercase", options_.lowercase}, {"split_punctuation", options_.split_punctuation}};
}

std::unique_ptr<Tokenizer> tokenizer_from_json(const nlohmann::json& j) {
  const auto type = j.value("type", std::string());
  if (type == "word") {
    WordTokenizerOptions o;
    o.lowercase = j.value("lowercase", false);
    o.split_punctuation = j.value("split_punctuation", false);
    return std::make_unique<WordTokenizer>(o);
  }
  if (type == "sentencepiece") return SentencePieceTokenizer::from_json(j);
  throw Error("unknown tokenizer type \"" + type + "\" in the checkpoint");
}

}  // namespace s2s
