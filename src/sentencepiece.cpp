// SentencePieceTokenizer (declared in tokenizer.h): the model's bytes live here, the library runs in the
// helper process of spm_process.h.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "error.h"
#include "spm_process.h"
#include "tokenizer.h"
#include "utf8.h"

namespace s2s {
namespace {

constexpr size_t kLinesPerRequest = 4000;  // encode in batches: few exchanges, bounded messages

const char kBase64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string base64_encode(const std::string& bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    const size_t n = std::min<size_t>(3, bytes.size() - i);
    uint32_t v = 0;
    for (size_t k = 0; k < 3; ++k) v = (v << 8) | (k < n ? static_cast<uint8_t>(bytes[i + k]) : 0u);
    for (size_t k = 0; k < 4; ++k) out += k <= n ? kBase64[(v >> (18 - 6 * k)) & 63] : '=';
  }
  return out;
}

std::string base64_decode(const std::string& text, const std::string& origin) {
  auto bad = [&] { return Error(origin + ": the tokenizer model is not valid base64 (damaged checkpoint?)"); };
  if (text.size() % 4 != 0) throw bad();
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t v = 0;
    int pad = 0;
    for (size_t k = 0; k < 4; ++k) {
      const char c = text[i + k];
      uint32_t d = 0;
      if (c == '=' && i + 4 == text.size() && k >= 2) {
        ++pad;
      } else if (pad > 0) {
        throw bad();
      } else if (const char* p = std::strchr(kBase64, c); c != '\0' && p) {
        d = static_cast<uint32_t>(p - kBase64);
      } else {
        throw bad();
      }
      v = (v << 6) | d;
    }
    for (int k = 0; k < 3 - pad; ++k) out += static_cast<char>((v >> (16 - 8 * k)) & 0xFF);
  }
  return out;
}

size_t parse_count(const std::string& s, const std::string& context) {
  if (s.empty() || s.size() > 12 || s.find_first_not_of("0123456789") != std::string::npos)
    throw Error(context + ": the SentencePiece helper answered a bad piece count \"" + s + "\"");
  return std::stoul(s);
}

}  // namespace

SentencePieceTokenizer::SentencePieceTokenizer(std::string model, bool lowercase, std::string origin)
    : model_(std::move(model)), lowercase_(lowercase), origin_(std::move(origin)) {
  if (model_.empty()) throw Error(origin_ + ": the SentencePiece model is empty");
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

SpmProcess& SentencePieceTokenizer::process() const {
  std::lock_guard<std::mutex> lock(mutex_);
  if (!process_) {
    process_ = std::make_unique<SpmProcess>();
    try {
      pieces_ = process_->call({"load", model_}, origin_);
    } catch (const Error& e) {
      process_->disable(e.what());  // later calls repeat this error instead of starting another helper
      throw;
    }
  }
  return *process_;
}

std::shared_ptr<SentencePieceTokenizer> SentencePieceTokenizer::train(const std::vector<std::string>& lines,
                                                                      const SentencePieceTrainOptions& options,
                                                                      const std::string& origin) {
  std::vector<std::string> request = {"train"};
  const std::vector<std::string> settings = {
      "model_type=" + options.model_type,
      "vocab_size=" + std::to_string(options.vocab_size),
      "hard_vocab_limit=false",   // a small corpus gets a smaller vocabulary instead of an error
      "character_coverage=1.0",   // every character of the training text gets a piece
      "pad_id=0", "unk_id=1", "bos_id=2", "eos_id=3",  // the ids of Vocabulary's specials
      "minloglevel=2",            // the library's progress lines would drown s2s's log
  };
  request.push_back(std::to_string(settings.size()));
  request.insert(request.end(), settings.begin(), settings.end());
  for (const auto& line : lines)
    if (!line.empty()) request.push_back(options.lowercase ? utf8::lowercase(line) : line);
  if (request.size() == settings.size() + 2) throw Error(origin + ": no text to train a SentencePiece model on");

  auto process = std::make_unique<SpmProcess>();
  auto answer = process->call(request, "training a SentencePiece model on " + origin, /*timeout_s=*/0);
  if (answer.size() != 1) throw Error(origin + ": the SentencePiece helper answered training with garbage");
  auto tokenizer = std::make_shared<SentencePieceTokenizer>(std::move(answer[0]), options.lowercase,
                                                            "the SentencePiece model trained on " + origin);
  tokenizer->pieces_ = process->call({"load", tokenizer->model_}, tokenizer->origin_);
  tokenizer->process_ = std::move(process);
  return tokenizer;
}

std::vector<std::string> SentencePieceTokenizer::pieces() const {
  process();
  std::lock_guard<std::mutex> lock(mutex_);
  return pieces_;
}

std::vector<std::vector<std::string>> SentencePieceTokenizer::tokenize_all(const std::vector<std::string>& lines) const {
  auto& p = process();
  std::vector<std::vector<std::string>> out;
  out.reserve(lines.size());
  for (size_t start = 0; start < lines.size(); start += kLinesPerRequest) {
    const size_t end = std::min(lines.size(), start + kLinesPerRequest);
    std::vector<std::string> request = {"encode"};
    for (size_t i = start; i < end; ++i) request.push_back(lowercase_ ? utf8::lowercase(lines[i]) : lines[i]);
    const auto answer = p.call(request, origin_);
    size_t at = 0;
    for (size_t i = start; i < end; ++i) {
      if (at >= answer.size()) throw Error(origin_ + ": the SentencePiece helper answered too few lines");
      const size_t n = parse_count(answer[at++], origin_);
      if (n > answer.size() - at) throw Error(origin_ + ": the SentencePiece helper answered too few pieces");
      out.emplace_back(answer.begin() + static_cast<std::ptrdiff_t>(at), answer.begin() + static_cast<std::ptrdiff_t>(at + n));
      at += n;
    }
    if (at != answer.size()) throw Error(origin_ + ": the SentencePiece helper answered more than was asked");
  }
  return out;
}

std::vector<std::string> SentencePieceTokenizer::tokenize(const std::string& text) const {
  return tokenize_all({text}).front();
}

std::string SentencePieceTokenizer::detokenize(const std::vector<std::string>& tokens) const {
  std::vector<std::string> request = {"decode", std::to_string(tokens.size())};
  request.insert(request.end(), tokens.begin(), tokens.end());
  const auto answer = process().call(request, origin_);
  if (answer.size() != 1) throw Error(origin_ + ": the SentencePiece helper answered decoding with garbage");
  return answer[0];
}

nlohmann::json SentencePieceTokenizer::to_json() const {
  return {{"type", "sentencepiece"}, {"lowercase", lowercase_}, {"model", base64_encode(model_)}};
}

std::unique_ptr<SentencePieceTokenizer> SentencePieceTokenizer::from_json(const nlohmann::json& j) {
  const std::string origin = "the checkpoint's SentencePiece tokenizer";
  if (!j.contains("model") || !j.at("model").is_string()) throw Error(origin + " has no model");
  return std::make_unique<SentencePieceTokenizer>(base64_decode(j.at("model").get<std::string>(), origin),
                                                  j.value("lowercase", false), origin);
}

}  // namespace s2s
