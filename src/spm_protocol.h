// The message format between s2s and its SentencePiece helper program (src/tools/spm_helper.cpp).
// Header-only and free of LibTorch, because the helper must not link LibTorch (see CMakeLists.txt).
//
// A message is a list of byte strings, framed so that any bytes (model files, pieces) pass unchanged:
//
//   S2SPM <count>\n  then, for each string:  <length>\n<bytes>
//
// Requests (first string = command)                   Answers ("ok", ...) or ("error", message)
//   load   <serialized model>                          ok  <piece>...        (id order; control and unknown
//                                                                             pieces left out)
//   encode <line>...                                   ok  then per line: <piece count> <piece>...
//   decode then per sentence: <piece count> <piece>... ok  <text>...
//   train  <option count> <key=value>... <sentence>... ok  <serialized model>
//
// Both sides send a whole message and only then read the answer, and the helper reads a whole request
// before it answers, so neither can block the other however large a message is.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace s2s::spm_protocol {

class ProtocolError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

constexpr const char* kMagic = "S2SPM";
constexpr uint64_t kMaxCount = 100'000'000;    // strings in one message
constexpr uint64_t kMaxLength = 1ULL << 31;    // bytes in one string

inline std::string frame(const std::vector<std::string>& parts) {
  std::string out = std::string(kMagic) + " " + std::to_string(parts.size()) + "\n";
  for (const auto& p : parts) {
    out += std::to_string(p.size());
    out += '\n';
    out += p;
  }
  return out;
}

// Reads one message through `read_some(char* buffer, size_t capacity)`, which returns the number of
// bytes read and 0 at the end of the stream. Returns false when the stream ends before a message
// starts (the other side closed it); throws ProtocolError for anything malformed or cut short.
template <class ReadSome>
class MessageReader {
 public:
  explicit MessageReader(ReadSome read_some) : read_some_(std::move(read_some)) {}

  bool read(std::vector<std::string>& parts) {
    parts.clear();
    std::string header;
    if (!read_line(header, /*eof_ok=*/true)) return false;
    const std::string magic = std::string(kMagic) + " ";
    if (header.compare(0, magic.size(), magic) != 0)
      throw ProtocolError("a message must start with \"" + magic + "\", got \"" + printable(header) + "\"");
    const uint64_t count = parse_number(header.substr(magic.size()), kMaxCount, "string count");
    parts.reserve(static_cast<size_t>(std::min<uint64_t>(count, 1'000'000)));
    for (uint64_t i = 0; i < count; ++i) {
      std::string line;
      read_line(line, /*eof_ok=*/false);
      const uint64_t length = parse_number(line, kMaxLength, "string length");
      std::string bytes(static_cast<size_t>(length), '\0');
      read_exact(bytes.data(), bytes.size());
      parts.push_back(std::move(bytes));
    }
    return true;
  }

 private:
  static std::string printable(const std::string& s) {
    std::string out;
    for (char c : s.substr(0, 40)) out += (c >= 32 && c < 127) ? c : '?';
    return out;
  }

  static uint64_t parse_number(const std::string& text, uint64_t max, const char* what) {
    if (text.empty() || text.size() > 20) throw ProtocolError(std::string("bad ") + what + " \"" + printable(text) + "\"");
    uint64_t value = 0;
    for (char c : text) {
      if (c < '0' || c > '9') throw ProtocolError(std::string("bad ") + what + " \"" + printable(text) + "\"");
      value = value * 10 + static_cast<uint64_t>(c - '0');
      if (value > max) throw ProtocolError(std::string(what) + " " + printable(text) + " is too large");
    }
    return value;
  }

  bool fill() {
    pos_ = 0;
    len_ = read_some_(buffer_, sizeof(buffer_));
    return len_ > 0;
  }

  // A line of at most 64 bytes (headers and lengths are short), without its '\n'.
  bool read_line(std::string& line, bool eof_ok) {
    line.clear();
    while (true) {
      if (pos_ == len_ && !fill()) {
        if (eof_ok && line.empty()) return false;
        throw ProtocolError("the stream ended in the middle of a message");
      }
      const char c = buffer_[pos_++];
      if (c == '\n') return true;
      line += c;
      if (line.size() > 64) throw ProtocolError("expected a short header line, got \"" + printable(line) + "...\"");
    }
  }

  void read_exact(char* out, size_t n) {
    while (n > 0) {
      if (pos_ == len_ && !fill()) throw ProtocolError("the stream ended in the middle of a message");
      const size_t take = std::min(n, len_ - pos_);
      std::copy(buffer_ + pos_, buffer_ + pos_ + take, out);
      pos_ += take;
      out += take;
      n -= take;
    }
  }

  ReadSome read_some_;
  char buffer_[1 << 16];
  size_t pos_ = 0, len_ = 0;
};

template <class ReadSome>
MessageReader<ReadSome> make_reader(ReadSome read_some) {
  return MessageReader<ReadSome>(std::move(read_some));
}

}  // namespace s2s::spm_protocol
