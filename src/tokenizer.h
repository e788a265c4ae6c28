// Text <-> tokens. One small interface; the word tokenizer here, SentencePiece beside it.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace s2s {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<std::string> tokenize(const std::string& text) const = 0;
  virtual std::string detokenize(const std::vector<std::string>& tokens) const = 0;
  // Everything needed to rebuild this tokenizer (stored in checkpoints).
  virtual nlohmann::json to_json() const = 0;
};

struct WordTokenizerOptions {
  bool lowercase = false;
  bool split_punctuation = false;  // "dog." -> "dog ."
};

// Whitespace tokens, optionally lowercased and with punctuation split off words.
class WordTokenizer : public Tokenizer {
 public:
  explicit WordTokenizer(WordTokenizerOptions options = {}) : options_(options) {}
  std::vector<std::string> tokenize(const std::string& text) const override;
  std::string detokenize(const std::vector<std::string>& tokens) const override;
  nlohmann::json to_json() const override;

 private:
  WordTokenizerOptions options_;
};

std::unique_ptr<Tokenizer> tokenizer_from_json(const nlohmann::json& j);

}  // namespace s2s
