#include "sacrebleu_tokenize.h"

#include "utf8.h"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <stdexcept>

#ifdef S2S_HAVE_ICU
#include <unicode/uchar.h>
#include <unicode/ustring.h>
#endif

namespace s2s {
namespace sacrebleu {
namespace {

// ---------------------------------------------------------------------------------------------
// Regular-expression substitutions of the forms sacreBLEU uses.
//
// Every rule of the 13a and intl tokenizers is re.sub() with a pattern of one character class
// "(X)" or two consecutive classes "(X)(Y)". re.sub scans left to right and never lets matches
// overlap: after a two-character match the scan resumes *after* the second character, which
// therefore cannot also be the first character of another match. For example ([^0-9])([.,])
// turns "x.,y" into "x . ,y": the ',' is preceded by a non-digit, but that '.' was already
// consumed. (The next rule, ([.,])([^0-9]), then separates ",y".) The helpers reproduce this scan.
// ---------------------------------------------------------------------------------------------

// Where the replacement puts the spaces: "\1 \2 " or " \1 \2".
enum class Spacing { kBetweenAndAfter, kBeforeAndBetween };

template <class First, class Second>
Text substitute_pairs(const Text& in, First first, Second second, Spacing spacing) {
  Text out;
  out.reserve(in.size() + in.size() / 2);
  size_t i = 0;
  while (i < in.size()) {
    if (i + 1 < in.size() && first(in[i]) && second(in[i + 1])) {
      if (spacing == Spacing::kBeforeAndBetween) out += U' ';
      out += in[i];
      out += U' ';
      out += in[i + 1];
      if (spacing == Spacing::kBetweenAndAfter) out += U' ';
      i += 2;
    } else {
      out += in[i];
      i += 1;
    }
  }
  return out;
}

// "(X)" -> " \1 ": surrounds every character of the class with spaces.
template <class Pred>
Text isolate_each(const Text& in, Pred pred) {
  Text out;
  out.reserve(in.size() + in.size() / 2);
  for (char32_t c : in) {
    if (pred(c)) {
      out += U' ';
      out += c;
      out += U' ';
    } else {
      out += c;
    }
  }
  return out;
}

// str.replace(from, to): all non-overlapping occurrences, left to right.
void replace_all(Text& s, const Text& from, const Text& to) {
  size_t pos = s.find(from);
  if (pos == Text::npos) return;
  Text out;
  size_t start = 0;
  for (; pos != Text::npos; pos = s.find(from, start)) {
    out.append(s, start, pos - start);
    out += to;
    start = pos + from.size();
  }
  out.append(s, start, Text::npos);
  s = std::move(out);
}

// ' '.join(s.split()): no leading or trailing whitespace, one space between words.
Text normalize_spaces(const Text& s) {
  Text out;
  for (const Text& word : split_whitespace(s)) {
    if (!out.empty()) out += U' ';
    out += word;
  }
  return out;
}

bool is_ascii_digit(char32_t c) { return c >= U'0' && c <= U'9'; }
bool is_period_or_comma(char32_t c) { return c == U'.' || c == U','; }

// mteval-v13a's character class [\{-\~\[-\` -\&\(-\+\:-\@\/]: every printable ASCII character
// that is neither a letter nor a digit, except ' - . and , (those have rules of their own or none).
// The range " -&" starts at the space itself, so spaces get padded too (harmless: they are
// collapsed at the end).
bool is_13a_isolated(char32_t c) {
  return (c >= U'{' && c <= U'~') || (c >= U'[' && c <= U'`') || (c >= U' ' && c <= U'&') ||
         (c >= U'(' && c <= U'+') || (c >= U':' && c <= U'@') || c == U'/';
}

Text tokenize_13a(Text line) {
  // Language-independent part of mteval-v13a.pl, as plain string replacements, in this order
  // (so "&amp;lt;" becomes "<": &amp; is unescaped before &lt;).
  replace_all(line, U"<skipped>", U"");
  replace_all(line, U"-\n", U"");  // a word hyphenated across a line break
  replace_all(line, U"\n", U" ");
  replace_all(line, U"&quot;", U"\"");
  replace_all(line, U"&amp;", U"&");
  replace_all(line, U"&lt;", U"<");
  replace_all(line, U"&gt;", U">");
  // The padding matters: it lets rule 3 split a sentence-final "." even after a digit ("1999.").
  line = U" " + line + U" ";

  // 1. ([{-~[-` -&(-+:-@/]) -> " \1 "
  line = isolate_each(line, is_13a_isolated);
  // 2. ([^0-9])([.,]) -> "\1 \2 ": period and comma unless preceded by a digit
  line = substitute_pairs(line, [](char32_t c) { return !is_ascii_digit(c); }, is_period_or_comma,
                          Spacing::kBetweenAndAfter);
  // 3. ([.,])([^0-9]) -> " \1 \2": period and comma unless followed by a digit
  line = substitute_pairs(line, is_period_or_comma, [](char32_t c) { return !is_ascii_digit(c); },
                          Spacing::kBeforeAndBetween);
  // 4. ([0-9])(-) -> "\1 \2 ": a dash after a digit
  line = substitute_pairs(line, is_ascii_digit, [](char32_t c) { return c == U'-'; },
                          Spacing::kBetweenAndAfter);
  return normalize_spaces(line);
}

// mteval-v14's international tokenization: split on Unicode punctuation and symbols, but keep a
// punctuation mark that sits between two numbers ("1,000.5"). As in mteval-v14 (and unlike 13a)
// the line is not padded, so "in 1999." keeps "1999." as one token.
Text tokenize_intl(const Text& line) {
  auto is_number = [](char32_t c) { return char_class(c) == CharClass::kNumber; };
  auto is_punct = [](char32_t c) { return char_class(c) == CharClass::kPunctuation; };
  auto not_number = [&](char32_t c) { return !is_number(c); };
  // 1. (\P{N})(\p{P}) -> "\1 \2 "
  Text out = substitute_pairs(line, not_number, is_punct, Spacing::kBetweenAndAfter);
  // 2. (\p{P})(\P{N}) -> " \1 \2"
  out = substitute_pairs(out, is_punct, not_number, Spacing::kBeforeAndBetween);
  // 3. (\p{S}) -> " \1 "
  out = isolate_each(out, [](char32_t c) { return char_class(c) == CharClass::kSymbol; });
  return normalize_spaces(out);
}

// ---------------------------------------------------------------------------------------------
// Built-in general-category table, used without ICU (and checked against ICU by the tests).
// ---------------------------------------------------------------------------------------------

struct ClassRange {
  char32_t first, last;
  CharClass cls;
};

constexpr CharClass kNum = CharClass::kNumber;
constexpr CharClass kPun = CharClass::kPunctuation;
constexpr CharClass kSym = CharClass::kSymbol;

// Sorted, non-overlapping; code points in a covered block but in no range are kOther.
constexpr ClassRange kFallbackRanges[] = {
    // ASCII
    {0x21, 0x23, kPun}, {0x24, 0x24, kSym}, {0x25, 0x2A, kPun}, {0x2B, 0x2B, kSym}, {0x2C, 0x2F, kPun},
    {0x30, 0x39, kNum}, {0x3A, 0x3B, kPun}, {0x3C, 0x3E, kSym}, {0x3F, 0x40, kPun}, {0x5B, 0x5D, kPun},
    {0x5E, 0x5E, kSym}, {0x5F, 0x5F, kPun}, {0x60, 0x60, kSym}, {0x7B, 0x7B, kPun}, {0x7C, 0x7C, kSym},
    {0x7D, 0x7D, kPun}, {0x7E, 0x7E, kSym},
    // Latin-1 Supplement
    {0xA1, 0xA1, kPun}, {0xA2, 0xA6, kSym}, {0xA7, 0xA7, kPun}, {0xA8, 0xA9, kSym}, {0xAB, 0xAB, kPun},
    {0xAC, 0xAC, kSym}, {0xAE, 0xB1, kSym}, {0xB2, 0xB3, kNum}, {0xB4, 0xB4, kSym}, {0xB6, 0xB7, kPun},
    {0xB8, 0xB8, kSym}, {0xB9, 0xB9, kNum}, {0xBB, 0xBB, kPun}, {0xBC, 0xBE, kNum}, {0xBF, 0xBF, kPun},
    {0xD7, 0xD7, kSym}, {0xF7, 0xF7, kSym},
    // General Punctuation (dashes, quotes, daggers, ellipsis, per mille, ...)
    {0x2010, 0x2027, kPun}, {0x2030, 0x2043, kPun}, {0x2044, 0x2044, kSym}, {0x2045, 0x2051, kPun},
    {0x2052, 0x2052, kSym}, {0x2053, 0x205E, kPun},
    // Currency Symbols; Arrows and Mathematical Operators; box drawing to Miscellaneous Symbols
    {0x20A0, 0x20C0, kSym}, {0x2190, 0x22FF, kSym}, {0x2500, 0x26FF, kSym},
    // CJK Symbols and Punctuation
    {0x3001, 0x3003, kPun}, {0x3004, 0x3004, kSym}, {0x3007, 0x3007, kNum}, {0x3008, 0x3011, kPun},
    {0x3012, 0x3013, kSym}, {0x3014, 0x301F, kPun}, {0x3020, 0x3020, kSym}, {0x3021, 0x3029, kNum},
    {0x3030, 0x3030, kPun}, {0x3036, 0x3037, kSym}, {0x3038, 0x303A, kNum}, {0x303D, 0x303D, kPun},
    {0x303E, 0x303F, kSym},
    // Halfwidth CJK punctuation (the fullwidth ASCII forms before it are mapped to ASCII)
    {0xFF5F, 0xFF65, kPun},
};

#ifndef S2S_HAVE_ICU
// Lowercase for the fallback: ASCII, Latin-1, Latin Extended-A, basic Greek and Cyrillic.
// Returns the code point unchanged elsewhere. (U+0130 is handled by the caller: it lowercases to
// two code points.)
char32_t fallback_lower(char32_t c) {
  if (c >= U'A' && c <= U'Z') return c + 0x20;
  if (c < 0xC0) return c;
  if (c <= 0xDE) return c == 0xD7 ? c : c + 0x20;  // À..Þ except ×
  if (c >= 0x100 && c <= 0x17F) {
    if (c == 0x178) return 0xFF;                                        // Ÿ
    if (c == 0x138 || c == 0x149 || c == 0x17F) return c;               // ĸ ŉ ſ are lowercase
    const bool capitals_odd = (c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E);
    if (capitals_odd) return (c % 2 == 1) ? c + 1 : c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c == 0x386) return 0x3AC;                                         // Ά
  if (c >= 0x388 && c <= 0x38A) return c + 0x25;                        // Έ Ή Ί
  if (c == 0x38C) return 0x3CC;                                         // Ό
  if (c == 0x38E || c == 0x38F) return c + 0x3F;                        // Ύ Ώ
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 0x20;          // Greek capitals
  if (c >= 0x400 && c <= 0x40F) return c + 0x50;                        // Ѐ..Џ
  if (c >= 0x410 && c <= 0x42F) return c + 0x20;                        // А..Я
  return c;
}
#else
// ICU works on UTF-16.
std::u16string to_utf16(const Text& text) {
  std::u16string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c >= 0x10000) {
      c -= 0x10000;
      out += static_cast<char16_t>(0xD800 + (c >> 10));
      out += static_cast<char16_t>(0xDC00 + (c & 0x3FF));
    } else {
      out += static_cast<char16_t>(c);
    }
  }
  return out;
}

// Unpaired surrogates (our escaped bytes) come back as themselves.
Text from_utf16(const std::u16string& s) {
  Text out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    const char32_t c = s[i];
    if (c >= 0xD800 && c <= 0xDBFF && i + 1 < s.size() && s[i + 1] >= 0xDC00 && s[i + 1] <= 0xDFFF) {
      out += 0x10000 + ((c - 0xD800) << 10) + (s[i + 1] - 0xDC00);
      ++i;
    } else {
      out += c;
    }
  }
  return out;
}
#endif

}  // namespace

// ---------------------------------------------------------------------------------------------
// Tokenizers
// ---------------------------------------------------------------------------------------------

Tokenizer parse_tokenizer(const std::string& kind) {
  if (kind == "13a") return Tokenizer::k13a;
  if (kind == "none") return Tokenizer::kNone;
  if (kind == "intl") return Tokenizer::kIntl;
  throw std::invalid_argument("unknown sacreBLEU tokenizer '" + kind +
                              "' (supported: 13a, none, intl)");
}

const char* tokenizer_name(Tokenizer tokenizer) {
  switch (tokenizer) {
    case Tokenizer::k13a: return "13a";
    case Tokenizer::kNone: return "none";
    case Tokenizer::kIntl: return "intl";
  }
  return "";
}

Text tokenize(const Text& line, Tokenizer tokenizer) {
  switch (tokenizer) {
    case Tokenizer::k13a: return tokenize_13a(line);
    case Tokenizer::kNone: return line;
    case Tokenizer::kIntl: return tokenize_intl(line);
  }
  return line;
}

// ---------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------

Text decode_utf8(const std::string& bytes) {
  Text out;
  out.reserve(bytes.size());
  const size_t n = bytes.size();
  auto byte = [&](size_t i) { return static_cast<unsigned char>(bytes[i]); };
  auto is_cont = [&](size_t i) { return i < n && (byte(i) & 0xC0) == 0x80; };
  size_t i = 0;
  while (i < n) {
    const unsigned char b = byte(i);
    if (b < 0x80) {
      out += b;
      ++i;
      continue;
    }
    // Length and the allowed range of the second byte, which rules out overlong forms,
    // UTF-16 surrogates and code points above U+10FFFF.
    int len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;  // overlong
      if (b == 0xED) hi = 0x9F;  // surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;  // overlong
      if (b == 0xF4) hi = 0x8F;  // above U+10FFFF
    }
    bool valid = len > 0 && i + 1 < n && byte(i + 1) >= lo && byte(i + 1) <= hi;
    for (int k = 2; valid && k < len; ++k) valid = is_cont(i + k);
    if (!valid) {
      out += 0xDC00 + b;  // surrogateescape
      ++i;
      continue;
    }
    char32_t c = b & (0xFF >> (len + 1));
    for (int k = 1; k < len; ++k) c = (c << 6) | (byte(i + k) & 0x3F);
    out += c;
    i += len;
  }
  return out;
}

std::string encode_utf8(const Text& text) {
  std::string out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c >= 0xDC80 && c <= 0xDCFF)
      out += static_cast<char>(c - 0xDC00);  // an escaped invalid byte
    else
      utf8::append(out, c);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Python str methods
// ---------------------------------------------------------------------------------------------

bool is_space(char32_t c) {
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

std::vector<Text> split_whitespace(const Text& text) {
  std::vector<Text> words;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && is_space(text[i])) ++i;
    const size_t start = i;
    while (i < text.size() && !is_space(text[i])) ++i;
    if (i > start) words.emplace_back(text, start, i - start);
  }
  return words;
}

Text rstrip_whitespace(const Text& text) {
  size_t end = text.size();
  while (end > 0 && is_space(text[end - 1])) --end;
  return text.substr(0, end);
}

Text lowercase(const Text& text) {
  const bool ascii = std::all_of(text.begin(), text.end(), [](char32_t c) { return c < 0x80; });
  if (ascii) {
    Text out = text;
    for (char32_t& c : out)
      if (c >= U'A' && c <= U'Z') c += 0x20;
    return out;
  }
#ifdef S2S_HAVE_ICU
  // ICU's root-locale full lowercasing is Python's str.lower(): SpecialCasing's unconditional
  // mappings (U+0130 -> "i\u0307") plus the Final_Sigma rule (word-final Σ -> ς).
  const std::u16string src = to_utf16(text);
  UErrorCode status = U_ZERO_ERROR;
  const int32_t needed = u_strToLower(nullptr, 0, src.data(), static_cast<int32_t>(src.size()), "",
                                      &status);
  if (status != U_BUFFER_OVERFLOW_ERROR && U_FAILURE(status)) return text;
  std::u16string dst(static_cast<size_t>(needed), u'\0');
  status = U_ZERO_ERROR;
  u_strToLower(dst.data(), needed, src.data(), static_cast<int32_t>(src.size()), "", &status);
  if (U_FAILURE(status)) return text;
  return from_utf16(dst);
#else
  Text out;
  out.reserve(text.size());
  for (char32_t c : text) {
    if (c == 0x130) {  // İ: "i" + COMBINING DOT ABOVE
      out += U'i';
      out += 0x307;
    } else {
      out += fallback_lower(c);
    }
  }
  return out;
#endif
}

// ---------------------------------------------------------------------------------------------
// General categories
// ---------------------------------------------------------------------------------------------

bool covered_by_fallback(char32_t c) {
  return c <= 0xFF || (c >= 0x2000 && c <= 0x206F) || (c >= 0x20A0 && c <= 0x20CF) ||
         (c >= 0x2190 && c <= 0x22FF) || (c >= 0x2500 && c <= 0x26FF) ||
         (c >= 0x3000 && c <= 0x303F) || (c >= 0xFF01 && c <= 0xFF65);
}

CharClass fallback_char_class(char32_t c) {
  if (c >= 0xFF01 && c <= 0xFF5E) c -= 0xFEE0;  // fullwidth forms share their ASCII twin's class
  const auto it = std::upper_bound(std::begin(kFallbackRanges), std::end(kFallbackRanges), c,
                                   [](char32_t v, const ClassRange& r) { return v < r.first; });
  if (it == std::begin(kFallbackRanges)) return CharClass::kOther;
  const ClassRange& r = *std::prev(it);
  return c <= r.last ? r.cls : CharClass::kOther;
}

CharClass char_class(char32_t c) {
#ifdef S2S_HAVE_ICU
  const uint32_t mask = U_GET_GC_MASK(static_cast<UChar32>(c));
  if (mask & U_GC_N_MASK) return CharClass::kNumber;
  if (mask & U_GC_P_MASK) return CharClass::kPunctuation;
  if (mask & U_GC_S_MASK) return CharClass::kSymbol;
  return CharClass::kOther;
#else
  return fallback_char_class(c);
#endif
}

}  // namespace sacrebleu

std::string sacrebleu_tokenize(const std::string& line, const std::string& kind) {
  const sacrebleu::Tokenizer tokenizer = sacrebleu::parse_tokenizer(kind);
  return sacrebleu::encode_utf8(sacrebleu::tokenize(sacrebleu::decode_utf8(line), tokenizer));
}

}  // namespace s2s
