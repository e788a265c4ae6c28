// Small UTF-8 helpers: validation with the offending byte offset, code point iteration, lowercasing.
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace s2s::utf8 {

// Byte offset of the first invalid sequence, or nullopt when `s` is valid UTF-8.
std::optional<size_t> find_invalid(const std::string& s);
std::vector<char32_t> decode(const std::string& s);  // s must be valid
void append(std::string& out, char32_t cp);  // one code point as UTF-8
std::string encode(const std::vector<char32_t>& cps);
// Lowercases ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic capitals; other code points unchanged.
std::string lowercase(const std::string& s);

}  // namespace s2s::utf8
