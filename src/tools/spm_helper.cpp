// s2s-spm: runs Debian's SentencePiece library on behalf of s2s, as a child process that reads requests
// on stdin and answers on stdout (the format is in src/spm_protocol.h).
//
// Why a separate program: libsentencepiece.so.0 exports the protobuf-lite it bundles, and loading it
// into a process that also loads LibTorch's libprotobuf crashes before main(). This program links
// SentencePiece and the C++ library only, never LibTorch.
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string>
#include <unordered_map>
#include <vector>

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "spm_protocol.h"

namespace {

namespace proto = s2s::spm_protocol;
using Message = std::vector<std::string>;

const std::string kMeta = "\xE2\x96\x81";  // U+2581, SentencePiece's whitespace mark

class SentenceList : public sentencepiece::SentenceIterator {
 public:
  SentenceList(const Message& m, size_t first) : m_(m), i_(first) {}
  bool done() const override { return i_ >= m_.size(); }
  void Next() override { ++i_; }
  const std::string& value() const override { return m_[i_]; }
  sentencepiece::util::Status status() const override { return {}; }

 private:
  const Message& m_;
  size_t i_;
};

Message error(const std::string& what) { return {"error", what}; }

size_t to_count(const std::string& s) {
  if (s.empty() || s.size() > 12 || s.find_first_not_of("0123456789") != std::string::npos)
    throw proto::ProtocolError("bad count \"" + s + "\"");
  return std::stoul(s);
}

class Helper {
 public:
  Message handle(const Message& m) {
    if (m.empty()) return error("empty request");
    const std::string& cmd = m[0];
    if (cmd == "load") return load(m);
    if (cmd == "train") return train(m);
    if (!loaded_) return error("no model loaded (send \"load\" first)");
    if (cmd == "encode") return encode(m);
    if (cmd == "decode") return decode(m);
    return error("unknown request \"" + cmd + "\"");
  }

 private:
  Message load(const Message& m) {
    if (m.size() != 2) return error("load takes one model");
    const auto status = sp_.LoadFromSerializedProto(m[1]);
    if (!status.ok()) {
      loaded_ = false;
      return error("not a SentencePiece model (" + status.ToString() + ")");
    }
    loaded_ = true;
    Message out = {"ok"};
    for (int id = 0; id < sp_.GetPieceSize(); ++id)
      if (!sp_.IsControl(id) && !sp_.IsUnknown(id) && !sp_.IsUnused(id)) out.push_back(sp_.IdToPiece(id));
    return out;
  }

  Message encode(const Message& m) {
    Message out = {"ok"};
    std::vector<std::string> pieces;
    for (size_t i = 1; i < m.size(); ++i) {
      const auto status = sp_.Encode(m[i], &pieces);
      if (!status.ok()) return error("cannot encode line " + std::to_string(i) + " of the batch: " + status.ToString());
      out.push_back(std::to_string(pieces.size()));
      for (auto& p : pieces) out.push_back(std::move(p));
    }
    return out;
  }

  Message decode(const Message& m) {
    Message out = {"ok"};
    const int unk = sp_.unk_id();
    const std::string unk_piece = unk >= 0 ? sp_.IdToPiece(unk) : std::string();
    size_t i = 1;
    while (i < m.size()) {
      const size_t n = to_count(m[i++]);
      if (n > m.size() - i) throw proto::ProtocolError("decode: piece count beyond the message");
      std::vector<std::string> pieces;
      for (size_t k = 0; k < n; ++k, ++i) {
        std::string piece = m[i];
        if (piece == "<unk>") {
          piece = unk_piece;  // s2s's unknown token is the model's unknown piece
        } else if (sp_.PieceToId(piece) == unk && piece != unk_piece) {
          // Not a piece of this model (copied from the source by unk replacement): kept as text.
          for (size_t at; (at = piece.find(kMeta)) != std::string::npos;) piece.replace(at, kMeta.size(), " ");
        }
        pieces.push_back(std::move(piece));
      }
      std::string text;
      const auto status = sp_.Decode(pieces, &text);
      if (!status.ok()) return error("cannot decode: " + status.ToString());
      out.push_back(std::move(text));
    }
    return out;
  }

  // train <option count> <key=value>... <sentence>...
  Message train(const Message& m) {
    if (m.size() < 2) return error("train: no option count");
    const size_t n = to_count(m[1]);
    if (n > m.size() - 2) return error("train: option count beyond the message");
    std::unordered_map<std::string, std::string> options;
    for (size_t i = 2; i < 2 + n; ++i) {
      const auto eq = m[i].find('=');
      if (eq == std::string::npos) return error("train: option \"" + m[i] + "\" is not key=value");
      options[m[i].substr(0, eq)] = m[i].substr(eq + 1);
    }
    if (m.size() == 2 + n) return error("no training sentences");
    SentenceList sentences(m, 2 + n);
    std::string model;
    const auto status = sentencepiece::SentencePieceTrainer::Train(options, &sentences, &model);
    if (!status.ok()) return error(status.ToString());
    return {"ok", model};
  }

  sentencepiece::SentencePieceProcessor sp_;
  bool loaded_ = false;
};

bool write_all(const std::string& bytes) {
  const char* p = bytes.data();
  size_t n = bytes.size();
  while (n > 0) {
    const ssize_t w = ::write(STDOUT_FILENO, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

int main(int argc, char**) {
  if (argc > 1 || ::isatty(STDIN_FILENO)) {
    std::fprintf(stderr,
                 "s2s-spm: the SentencePiece helper of s2s; s2s starts it and talks to it over a pipe.\n"
                 "It is not meant to be run by hand.\n");
    return 2;
  }
  // Ctrl-C reaches the whole process group; s2s decides when to stop, and this program ends when s2s
  // closes the pipe.
  ::signal(SIGINT, SIG_IGN);
  auto reader = proto::make_reader([](char* buffer, size_t capacity) -> size_t {
    while (true) {
      const ssize_t r = ::read(STDIN_FILENO, buffer, capacity);
      if (r < 0 && errno == EINTR) continue;
      return r < 0 ? 0 : static_cast<size_t>(r);
    }
  });
  Helper helper;
  Message request;
  try {
    while (reader.read(request)) {
      Message answer;
      try {
        answer = helper.handle(request);
      } catch (const proto::ProtocolError&) {
        throw;
      } catch (const std::exception& e) {
        answer = error(e.what());
      }
      if (!write_all(proto::frame(answer))) return 1;
    }
  } catch (const proto::ProtocolError& e) {
    std::fprintf(stderr, "s2s-spm: bad request: %s\n", e.what());
    return 2;
  }
  return 0;
}
