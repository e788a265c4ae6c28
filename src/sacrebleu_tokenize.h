// sacreBLEU 2.6.0's tokenizers (13a, none, intl) and the few pieces of Python string behaviour
// that BLEU and chrF depend on (str.split(), str.rstrip(), str.lower()), on Unicode code points.
//
// Unicode general categories and case mapping come from ICU when the build defines S2S_HAVE_ICU
// (CMake does when it finds ICU::uc). Without ICU, a built-in table is used that is exact for
// ASCII, Latin-1 and a few punctuation and symbol blocks (see fallback_char_class) and lowercasing
// covers ASCII, Latin-1, Latin Extended-A, basic Greek and Cyrillic only.
#pragma once
#include <string>
#include <vector>

namespace s2s {

// Tokenizes one line exactly as sacreBLEU's tokenizer `kind` does: "13a" (mteval-v13a, the default),
// "none" (the line unchanged) or "intl" (mteval-v14 international). Input and output are UTF-8.
// Throws std::invalid_argument for any other kind.
std::string sacrebleu_tokenize(const std::string& line, const std::string& kind);

namespace sacrebleu {

// The sacreBLEU version whose behaviour this code reproduces; it ends every signature.
inline constexpr const char* kVersion = "2.6.0";

// A line as a sequence of Unicode code points, like Python's str.
using Text = std::u32string;

enum class Tokenizer { k13a, kNone, kIntl };

Tokenizer parse_tokenizer(const std::string& kind);  // throws std::invalid_argument
const char* tokenizer_name(Tokenizer tokenizer);     // "13a", "none", "intl"
Text tokenize(const Text& line, Tokenizer tokenizer);

// UTF-8 <-> code points. A byte that is not part of a valid UTF-8 sequence decodes to U+DC80..U+DCFF
// (Python's "surrogateescape"), so that any input is accepted and encode_utf8 gives the bytes back.
Text decode_utf8(const std::string& bytes);
std::string encode_utf8(const Text& text);

// Python's str.isspace(): categories Zs, Zl, Zp and the control characters \t \n \v \f \r, 0x1C-0x1F, 0x85.
bool is_space(char32_t c);
std::vector<Text> split_whitespace(const Text& text);  // str.split()
Text rstrip_whitespace(const Text& text);              // str.rstrip()
Text lowercase(const Text& text);                      // str.lower(): full case mapping, final sigma

// The general-category groups that the intl tokenizer distinguishes: \p{N}, \p{P}, \p{S}.
enum class CharClass { kNumber, kPunctuation, kSymbol, kOther };
CharClass char_class(char32_t c);  // ICU when available, otherwise fallback_char_class
// The built-in table; exact where covered_by_fallback(c) is true, kOther elsewhere.
CharClass fallback_char_class(char32_t c);
bool covered_by_fallback(char32_t c);

}  // namespace sacrebleu
}  // namespace s2s
