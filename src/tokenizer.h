// Text <-> tokens. One small interface; the word tokenizer here, SentencePiece beside it.
#pragma once
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace s2s {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<std::string> tokenize(const std::string& text) const = 0;
  virtual std::string detokenize(const std::vector<std::string>& tokens) const = 0;
  // tokenize() of every line; SentencePiece does it in one exchange with its helper process.
  virtual std::vector<std::vector<std::string>> tokenize_all(const std::vector<std::string>& lines) const;
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

class SpmProcess;

struct SentencePieceTrainOptions {
  std::string model_type = "unigram";  // "unigram" | "bpe"
  int64_t vocab_size = 8000;           // pieces including <pad> <unk> <s> </s> (a soft limit: fewer if
                                       // the text has too few distinct strings)
  bool lowercase = false;              // train on lowercased text (and lowercase before encoding)
};

// Subword pieces from a SentencePiece model, run by the helper program s2s-spm (spm_process.h). The
// model's bytes are part of to_json(), so a checkpoint carries the whole tokenizer. Pieces are the
// tokens: "▁the", "▁ca", "t"; detokenize() turns them back into normal text.
class SentencePieceTokenizer : public Tokenizer {
 public:
  // `model` is the content of a .model file; `origin` names it in error messages. The helper is
  // started on first use, and a model the library cannot read is reported then.
  SentencePieceTokenizer(std::string model, bool lowercase, std::string origin);
  ~SentencePieceTokenizer() override;
  // Trains a model on `lines` (one sentence each); `origin` names the data in error messages.
  static std::shared_ptr<SentencePieceTokenizer> train(const std::vector<std::string>& lines,
                                                       const SentencePieceTrainOptions& options,
                                                       const std::string& origin);

  std::vector<std::string> tokenize(const std::string& text) const override;
  std::vector<std::vector<std::string>> tokenize_all(const std::vector<std::string>& lines) const override;
  std::string detokenize(const std::vector<std::string>& tokens) const override;
  nlohmann::json to_json() const override;  // {"type": "sentencepiece", "lowercase", "model": base64}
  static std::unique_ptr<SentencePieceTokenizer> from_json(const nlohmann::json& j);

  // The model's pieces in id order, without its control and unknown pieces (<s>, <unk>, ...).
  std::vector<std::string> pieces() const;
  const std::string& model() const { return model_; }

 private:
  SpmProcess& process() const;  // started and loaded on first use

  std::string model_;
  bool lowercase_;
  std::string origin_;
  mutable std::mutex mutex_;
  mutable std::unique_ptr<SpmProcess> process_;
  mutable std::vector<std::string> pieces_;
};

std::unique_ptr<Tokenizer> tokenizer_from_json(const nlohmann::json& j);

}  // namespace s2s
