// Tests of BLEU, chrF and the sacreBLEU tokenizers: every reference value that sacreBLEU 2.6.0
// produced in ../shared/bleu-vectors/expected.json, plus small cases worked out by hand.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "metrics.h"

namespace s2s {
namespace {

using nlohmann::json;

// ---------------------------------------------------------------------------------------------
// sacreBLEU reference vectors
// ---------------------------------------------------------------------------------------------

std::string vectors_dir() {
  if (const char* env = std::getenv("S2S_BLEU_VECTORS"); env && *env) return env;
#ifdef S2S_SOURCE_DIR
  return std::string(S2S_SOURCE_DIR) + "/../shared/bleu-vectors";
#else
  return "../shared/bleu-vectors";
#endif
}

// One segment per line, as Python's `for line in f: line.rstrip("\n")`.
std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

BleuOptions bleu_options_from(const json& options) {
  BleuOptions o;
  for (const auto& [key, value] : options.items()) {
    if (key == "lowercase") o.lowercase = value.get<bool>();
    else if (key == "tokenize") o.tokenize = value.get<std::string>();
    else if (key == "smooth_method") o.smooth_method = value.get<std::string>();
    else if (key == "smooth_value") o.smooth_value = value.get<double>();
    else if (key == "effective_order") o.effective_order = value.get<bool>();
    else ADD_FAILURE() << "unknown BLEU option in expected.json: " << key;
  }
  return o;
}

ChrfOptions chrf_options_from(const json& options) {
  ChrfOptions o;
  for (const auto& [key, value] : options.items()) {
    if (key == "char_order") o.char_order = value.get<int>();
    else if (key == "word_order") o.word_order = value.get<int>();
    else if (key == "beta") o.beta = value.get<double>();
    else if (key == "lowercase") o.lowercase = value.get<bool>();
    else if (key == "whitespace") o.whitespace = value.get<bool>();
    else if (key == "eps_smoothing") o.eps_smoothing = value.get<bool>();
    else ADD_FAILURE() << "unknown chrF option in expected.json: " << key;
  }
  return o;
}

json options_of(const json& c) {
  return c.contains("options") && !c["options"].is_null() ? c["options"] : json::object();
}

TEST(SacrebleuVectors, EveryCaseMatchesSacrebleu) {
  const std::string dir = vectors_dir();
  std::ifstream in(dir + "/expected.json");
  if (!in) GTEST_SKIP() << "no sacreBLEU vectors at " << dir << " (set S2S_BLEU_VECTORS)";
  const json doc = json::parse(in);
  const json& cases = doc.at("cases");
  ASSERT_FALSE(cases.empty());

  int bleu_cases = 0, chrf_cases = 0, sentence_cases = 0;
  for (size_t i = 0; i < cases.size(); ++i) {
    const json& c = cases[i];
    const std::string metric = c.value("metric", "bleu");
    SCOPED_TRACE("case " + std::to_string(i) + ": " + c.dump());

    if (metric == "bleu") {
      const auto hyps = read_lines(dir + "/" + c.at("hyp").get<std::string>());
      const auto refs = read_lines(dir + "/" + c.at("ref").get<std::string>());
      const BleuResult r = corpus_bleu(hyps, refs, bleu_options_from(options_of(c)));
      EXPECT_LT(std::abs(r.score - c.at("bleu").get<double>()), 0.005) << r.to_string();
      EXPECT_EQ(r.counts, (c.at("counts").get<std::array<int64_t, 4>>()));
      EXPECT_EQ(r.totals, (c.at("totals").get<std::array<int64_t, 4>>()));
      EXPECT_EQ(r.sys_len, c.at("sys_len").get<int64_t>());
      EXPECT_EQ(r.ref_len, c.at("ref_len").get<int64_t>());
      EXPECT_NEAR(r.bp, c.at("bp").get<double>(), 5e-6);
      EXPECT_EQ(r.signature, c.at("signature").get<std::string>());
      ++bleu_cases;
    } else if (metric == "chrf") {
      const auto hyps = read_lines(dir + "/" + c.at("hyp").get<std::string>());
      const auto refs = read_lines(dir + "/" + c.at("ref").get<std::string>());
      const ChrfResult r = corpus_chrf(hyps, refs, chrf_options_from(options_of(c)));
      EXPECT_LT(std::abs(r.score - c.at("chrf").get<double>()), 0.005) << r.to_string();
      EXPECT_EQ(r.signature, c.at("signature").get<std::string>());
      ++chrf_cases;
    } else if (metric == "sentence_bleu") {
      const double score = sentence_bleu(c.at("hyp_line").get<std::string>(),
                                         c.at("ref_line").get<std::string>(),
                                         bleu_options_from(options_of(c)));
      EXPECT_LT(std::abs(score - c.at("bleu").get<double>()), 0.005) << score;
      ++sentence_cases;
    } else {
      ADD_FAILURE() << "unknown metric '" << metric << "' in expected.json";
    }
  }
  EXPECT_EQ(static_cast<size_t>(bleu_cases + chrf_cases + sentence_cases), cases.size());
  std::cout << "[ vectors  ] checked " << cases.size() << " sacreBLEU cases: " << bleu_cases
            << " corpus BLEU, " << chrf_cases << " chrF, " << sentence_cases << " sentence BLEU\n";
}

TEST(SacrebleuVectors, SummedSentenceStatsEqualCorpusBleu) {
  const std::string dir = vectors_dir();
  if (!std::ifstream(dir + "/ref.txt")) GTEST_SKIP() << "no sacreBLEU vectors at " << dir;
  const auto hyps = read_lines(dir + "/hyp.medium.txt");
  const auto refs = read_lines(dir + "/ref.txt");
  for (const char* tok : {"13a", "none", "intl"}) {
    BleuOptions options;
    options.tokenize = tok;
    BleuStats sum;
    for (size_t i = 0; i < hyps.size(); ++i) sum += bleu_sentence_stats(hyps[i], refs[i], options);
    const BleuResult from_stats = bleu_from_stats(sum, options);
    const BleuResult corpus = corpus_bleu(hyps, refs, options);
    EXPECT_EQ(from_stats.score, corpus.score) << tok;
    EXPECT_EQ(from_stats.counts, corpus.counts) << tok;
    EXPECT_EQ(from_stats.totals, corpus.totals) << tok;
    EXPECT_EQ(from_stats.sys_len, corpus.sys_len) << tok;
    EXPECT_EQ(from_stats.ref_len, corpus.ref_len) << tok;
  }
}

// ---------------------------------------------------------------------------------------------
// BLEU by hand
// ---------------------------------------------------------------------------------------------

// hyp "the cat sat on the mat", ref "the cat is on the mat" (6 words each, so BP = 1):
//   1-grams: the x2, cat, sat, on, mat  -> total 6; all but "sat" in the ref   -> correct 5
//   2-grams: the cat, cat sat, sat on, on the, the mat -> total 5; the cat, on the, the mat -> 3
//   3-grams: the cat sat, cat sat on, sat on the, on the mat -> total 4; on the mat -> 1
//   4-grams: the cat sat on, cat sat on the, sat on the mat -> total 3; none -> 0
// exp smoothing gives the first order without matches 100 / (2 * total) = 100 / 6, so
//   BLEU = (500/6 * 300/5 * 100/4 * 100/6) ^ (1/4) = 37.99
const char* kHyp = "the cat sat on the mat";
const char* kRef = "the cat is on the mat";

TEST(Bleu, HandComputedSentence) {
  const BleuStats s = bleu_sentence_stats(kHyp, kRef, {});
  EXPECT_EQ(s.correct, (std::array<int64_t, 4>{5, 3, 1, 0}));
  EXPECT_EQ(s.total, (std::array<int64_t, 4>{6, 5, 4, 3}));
  EXPECT_EQ(s.sys_len, 6);
  EXPECT_EQ(s.ref_len, 6);

  const BleuResult r = corpus_bleu({kHyp}, {kRef}, {});
  const double expected = std::pow(500.0 / 6 * 300.0 / 5 * 100.0 / 4 * 100.0 / 6, 0.25);
  EXPECT_NEAR(r.score, expected, 1e-9);
  EXPECT_NEAR(r.precisions[3], 100.0 / 6, 1e-12);
  EXPECT_DOUBLE_EQ(r.bp, 1.0);
  EXPECT_EQ(r.to_string(), "BLEU = 37.99 83.3/60.0/25.0/16.7 (BP = 1.000 ratio = 1.000 hyp_len = 6 ref_len = 6)");
  EXPECT_EQ(r.signature, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
  // All four orders have n-grams, so effective order changes nothing here.
  EXPECT_NEAR(sentence_bleu(kHyp, kRef), expected, 1e-9);
}

TEST(Bleu, SmoothingMethods) {
  BleuOptions none;
  none.smooth_method = "none";
  EXPECT_EQ(corpus_bleu({kHyp}, {kRef}, none).score, 0.0);  // p4 = 0 and no smoothing
  EXPECT_EQ(corpus_bleu({kHyp}, {kRef}, none).signature,
            "nrefs:1|case:mixed|eff:no|tok:13a|smooth:none|version:2.6.0");

  BleuOptions floor;
  floor.smooth_method = "floor";  // p4 = 100 * 0.1 / 3
  const BleuResult f = corpus_bleu({kHyp}, {kRef}, floor);
  EXPECT_NEAR(f.score, std::pow(500.0 / 6 * 300.0 / 5 * 100.0 / 4 * 10.0 / 3, 0.25), 1e-9);
  EXPECT_EQ(f.signature, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:floor[0.10]|version:2.6.0");

  BleuOptions add_k;
  add_k.smooth_method = "add-k";  // orders 2..4 get +1 on both counts: 4/6, 2/5, 1/4
  const BleuResult a = corpus_bleu({kHyp}, {kRef}, add_k);
  EXPECT_NEAR(a.score, std::pow(500.0 / 6 * 400.0 / 6 * 200.0 / 5 * 100.0 / 4, 0.25), 1e-9);
  EXPECT_EQ(a.signature, "nrefs:1|case:mixed|eff:no|tok:13a|smooth:add-k[1.00]|version:2.6.0");

  BleuOptions bad;
  bad.smooth_method = "laplace";
  EXPECT_THROW(corpus_bleu({kHyp}, {kRef}, bad), std::invalid_argument);
}

// hyp "the cat" vs ref "the cat sat on the mat": correct 2,1 of totals 2,1; no 3- or 4-grams.
// Corpus BLEU keeps all four orders, and the missing ones (precision 0) make it 0.
// sentence_bleu uses effective order: the mean runs over orders 1-2 only, 100 * BP,
// with BP = exp(1 - 6/2).
TEST(Bleu, EffectiveOrderAndBrevityPenalty) {
  const char* hyp = "the cat";
  const char* ref = "the cat sat on the mat";
  const BleuResult corpus = corpus_bleu({hyp}, {ref}, {});
  EXPECT_EQ(corpus.score, 0.0);
  EXPECT_NEAR(corpus.bp, std::exp(-2.0), 1e-12);
  EXPECT_EQ(corpus.totals, (std::array<int64_t, 4>{2, 1, 0, 0}));

  const BleuResult sentence = sentence_bleu_result(hyp, ref);
  EXPECT_NEAR(sentence.score, 100.0 * std::exp(-2.0), 1e-9);
  EXPECT_EQ(sentence.signature, "nrefs:1|case:mixed|eff:yes|tok:13a|smooth:exp|version:2.6.0");

  BleuOptions no_effective;
  no_effective.effective_order = false;
  EXPECT_EQ(sentence_bleu(hyp, ref, no_effective), 0.0);
}

TEST(Bleu, EmptyHypothesis) {
  EXPECT_EQ(sentence_bleu("", "the cat sat"), 0.0);
  const BleuResult r = corpus_bleu({""}, {"the cat sat"}, {});
  EXPECT_EQ(r.score, 0.0);
  EXPECT_EQ(r.sys_len, 0);
  EXPECT_EQ(r.ref_len, 3);
  EXPECT_EQ(r.bp, 0.0);
  EXPECT_EQ(r.totals, (std::array<int64_t, 4>{0, 0, 0, 0}));
  // An empty line in a corpus only adds reference length.
  const BleuResult with_empty = corpus_bleu({kHyp, ""}, {kRef, "the cat sat"}, {});
  EXPECT_EQ(with_empty.counts, (std::array<int64_t, 4>{5, 3, 1, 0}));
  EXPECT_EQ(with_empty.ref_len, 9);
  EXPECT_NEAR(with_empty.bp, std::exp(1.0 - 9.0 / 6.0), 1e-12);
  // No segments at all.
  EXPECT_EQ(corpus_bleu({}, {}, {}).score, 0.0);
}

TEST(Bleu, MismatchedSizesThrow) {
  EXPECT_THROW(corpus_bleu({"a", "b"}, {"a"}, {}), std::invalid_argument);
  EXPECT_THROW(corpus_chrf({"a"}, {"a", "b"}, {}), std::invalid_argument);
}

TEST(Bleu, UnknownTokenizerThrows) {
  BleuOptions o;
  o.tokenize = "zh";
  EXPECT_THROW(corpus_bleu({"a"}, {"a"}, o), std::invalid_argument);
  EXPECT_THROW(bleu_sentence_stats("a", "a", o), std::invalid_argument);
  EXPECT_THROW(sacrebleu_tokenize("a", "13b"), std::invalid_argument);
}

TEST(Bleu, LowercaseOption) {
  const char* hyp = "THE CAT SAT ON THE MAT";
  const char* ref = "the cat sat on the mat";
  EXPECT_EQ(corpus_bleu({hyp}, {ref}, {}).score, 0.0);  // no match at all
  BleuOptions lc;
  lc.lowercase = true;
  const BleuResult r = corpus_bleu({hyp}, {ref}, lc);
  EXPECT_NEAR(r.score, 100.0, 1e-9);
  EXPECT_EQ(r.signature, "nrefs:1|case:lc|eff:no|tok:13a|smooth:exp|version:2.6.0");
}

TEST(Bleu, SummedStatsEqualCorpusBleu) {
  const std::vector<std::string> hyps = {kHyp, "a dog runs .", "", "The quick brown fox, 1,000 times!"};
  const std::vector<std::string> refs = {kRef, "the dog runs", "nothing here",
                                         "The quick brown fox jumps 1,000 times."};
  BleuStats sum;
  for (size_t i = 0; i < hyps.size(); ++i) sum += bleu_sentence_stats(hyps[i], refs[i], {});
  const BleuResult a = bleu_from_stats(sum, {});
  const BleuResult b = corpus_bleu(hyps, refs, {});
  EXPECT_EQ(a.score, b.score);
  EXPECT_EQ(a.counts, b.counts);
  EXPECT_EQ(a.totals, b.totals);
  EXPECT_EQ(a.sys_len, b.sys_len);
  EXPECT_EQ(a.ref_len, b.ref_len);
  EXPECT_GT(a.score, 0.0);
}

// ---------------------------------------------------------------------------------------------
// Tokenizers
// ---------------------------------------------------------------------------------------------

TEST(Tokenize13a, SplitsPunctuationLikeMteval) {
  EXPECT_EQ(sacrebleu_tokenize("Hello, world!", "13a"), "Hello , world !");
  // Period and comma stay inside numbers; the sentence-final one splits even after a digit,
  // because the line is padded with spaces first. "$" is always split.
  EXPECT_EQ(sacrebleu_tokenize("It costs $5.50, i.e. 1,000.", "13a"), "It costs $ 5.50 , i . e . 1,000 .");
  EXPECT_EQ(sacrebleu_tokenize("1999-2000 well-known", "13a"), "1999 - 2000 well-known");  // dash after a digit only
  EXPECT_EQ(sacrebleu_tokenize("don't", "13a"), "don't");  // the apostrophe is not in the class
  EXPECT_EQ(sacrebleu_tokenize("x.,y", "13a"), "x . , y");
  EXPECT_EQ(sacrebleu_tokenize("  spaced \t out  ", "13a"), "spaced out");
}

TEST(Tokenize13a, UnescapesEntitiesAndSkippedMarkers) {
  // &amp; is unescaped before &lt;, so "&amp;lt;" ends up as "<".
  EXPECT_EQ(sacrebleu_tokenize("&quot;quoted&quot; &amp;lt;tag&amp;gt;", "13a"), "\" quoted \" < tag >");
  EXPECT_EQ(sacrebleu_tokenize("<skipped> text", "13a"), "text");
  EXPECT_EQ(sacrebleu_tokenize("hyphen-\nated line\nbreak", "13a"), "hyphenated line break");
}

TEST(Tokenize13a, LeavesNonAsciiAlone) {
  EXPECT_EQ(sacrebleu_tokenize("naïve café. Größe: 5€", "13a"), "naïve café . Größe : 5€");
}

TEST(TokenizeNone, ReturnsTheLine) {
  EXPECT_EQ(sacrebleu_tokenize(" a,b. ", "none"), " a,b. ");
  // Bytes that are not UTF-8 survive unchanged.
  EXPECT_EQ(sacrebleu_tokenize("a\xff\xc3(b", "none"), "a\xff\xc3(b");
  EXPECT_EQ(sacrebleu_tokenize("a\xff\xc3(b", "13a"), "a\xff\xc3 ( b");
}

TEST(TokenizeIntl, SplitsUnicodePunctuationAndSymbols) {
  EXPECT_EQ(sacrebleu_tokenize("Hello, world!", "intl"), "Hello , world !");
  EXPECT_EQ(sacrebleu_tokenize("1,000.5 and 3.14", "intl"), "1,000.5 and 3.14");  // between digits: kept
  EXPECT_EQ(sacrebleu_tokenize("in 1999.", "intl"), "in 1999.");  // mteval-v14 keeps it (no padding)
  EXPECT_EQ(sacrebleu_tokenize("don't", "intl"), "don ' t");
  EXPECT_EQ(sacrebleu_tokenize("a+b=c $5 €100 ©2024", "intl"), "a + b = c $ 5 € 100 © 2024");
  EXPECT_EQ(sacrebleu_tokenize("“Quoted” — text…", "intl"), "“ Quoted ” — text …");
  EXPECT_EQ(sacrebleu_tokenize("¿Qué?", "intl"), "¿ Qué ?");
  EXPECT_EQ(sacrebleu_tokenize("「日本」。", "intl"), "「 日本 」 。");
}

#ifdef S2S_HAVE_ICU
TEST(TokenizeIntl, UsesFullUnicodeCategoriesWithIcu) {
  // Arabic comma U+060C (Po) and Devanagari digits U+0966.. (Nd) are outside the fallback table.
  EXPECT_EQ(sacrebleu_tokenize("مرحبا،عالم", "intl"), "مرحبا ، عالم");
  EXPECT_EQ(sacrebleu_tokenize("१,२", "intl"), "१,२");  // Devanagari 1,2: a comma between digits stays
}

TEST(UnicodeCategories, FallbackTableAgreesWithIcu) {
  int checked = 0;
  for (char32_t c = 0; c <= 0xFFFF; ++c) {
    if (!sacrebleu::covered_by_fallback(c)) continue;
    EXPECT_EQ(static_cast<int>(sacrebleu::fallback_char_class(c)), static_cast<int>(sacrebleu::char_class(c)))
        << "U+" << std::hex << static_cast<uint32_t>(c);
    ++checked;
  }
  EXPECT_GT(checked, 1000);
}
#endif

// ---------------------------------------------------------------------------------------------
// Python string behaviour
// ---------------------------------------------------------------------------------------------

TEST(PythonStrings, LowercaseLikeStrLower) {
  using sacrebleu::decode_utf8;
  using sacrebleu::encode_utf8;
  auto lower = [](const std::string& s) { return encode_utf8(sacrebleu::lowercase(decode_utf8(s))); };
  EXPECT_EQ(lower("The CAT"), "the cat");
  EXPECT_EQ(lower("ÀÉÎ Straße"), "àéî straße");
  EXPECT_EQ(lower("İ"), "i\u0307");  // i + COMBINING DOT ABOVE
#ifdef S2S_HAVE_ICU
  EXPECT_EQ(lower("ΟΔΟΣ ΣΑΣ"), "οδος σας");  // a word-final Σ lowercases to ς
#endif
}

TEST(PythonStrings, SplitOnUnicodeWhitespace) {
  // NO-BREAK SPACE, EM SPACE and IDEOGRAPHIC SPACE separate words; ZERO WIDTH SPACE does not.
  const auto words = sacrebleu::split_whitespace(
      sacrebleu::decode_utf8("a\xC2\xA0" "b\xE2\x80\x83" "c\xE3\x80\x80" "d\xE2\x80\x8B" "e\x1F" "f"));
  ASSERT_EQ(words.size(), 5u);
  EXPECT_EQ(sacrebleu::encode_utf8(words[3]), "d\xE2\x80\x8B" "e");
}

TEST(PythonStrings, Utf8RoundTripsAnyBytes) {
  const std::string bytes = "ok \xC3\xA9 \xF0\x9F\x98\x80 bad:\xC0\xAF\xED\xA0\x80\xF4\x90\x80\x80\xE2\x82";
  EXPECT_EQ(sacrebleu::encode_utf8(sacrebleu::decode_utf8(bytes)), bytes);
  EXPECT_EQ(sacrebleu::decode_utf8("\xF0\x9F\x98\x80").size(), 1u);  // one code point
}

// ---------------------------------------------------------------------------------------------
// chrF by hand
// ---------------------------------------------------------------------------------------------

// hyp "abc", ref "abd", char orders 1-2, beta 2:
//   1-grams a b c vs a b d: 2 of 3 match, P = R = 2/3;  2-grams ab bc vs ab bd: P = R = 1/2.
//   Averaged P = R = 7/12, and F_beta of equal P and R is that value: 58.33.
TEST(Chrf, HandComputed) {
  ChrfOptions o;
  o.char_order = 2;
  EXPECT_NEAR(sentence_chrf("abc", "abd", o), 100.0 * 7 / 12, 1e-9);
}

// hyp "abc", ref "a", char orders 1-2: the reference has no bigram, so order 2 is left out
// (not counted as precision 0): P = 1/3, R = 1, F2 = 5PR / (4P + R) = 5/7.
TEST(Chrf, OrdersMissingFromTheReferenceAreSkipped) {
  ChrfOptions o;
  o.char_order = 2;
  const ChrfStats s = chrf_sentence_stats("abc", "a", o);
  ASSERT_EQ(s.orders.size(), 2u);
  EXPECT_EQ(s.orders[1].hyp, 0);  // recorded as 0 because the reference has none
  EXPECT_NEAR(sentence_chrf("abc", "a", o), 100.0 * 5 / 7, 1e-9);
}

TEST(Chrf, WhitespaceIsRemovedUnlessAsked) {
  EXPECT_NEAR(sentence_chrf("a b c", "abc"), 100.0, 1e-9);
  ChrfOptions ws;
  ws.whitespace = true;
  EXPECT_LT(sentence_chrf("a b c", "abc", ws), 100.0);
  EXPECT_EQ(corpus_chrf({"x"}, {"x"}, ws).signature, "nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:yes|version:2.6.0");
}

TEST(Chrf, CountsCodePointsNotBytes) {
  // "é" is 2 bytes but one character: "café" vs "cafe" share 3 of 4 unigrams, P = R = 3/4.
  // Counting bytes would give 5 unigrams in the hypothesis.
  ChrfOptions o;
  o.char_order = 1;
  const ChrfStats s = chrf_sentence_stats("café", "cafe", o);
  EXPECT_EQ(s.orders[0].hyp, 4);
  EXPECT_EQ(s.orders[0].match, 3);
  EXPECT_NEAR(sentence_chrf("café", "cafe", o), 75.0, 1e-9);
}

// chrF++ with char order 1 and word order 1: hyp "a b.", ref "a b".
//   chars (no spaces) a b . vs a b: P = 2/3, R = 1.
//   words: "b." loses its final punctuation -> a b . vs a b: P = 2/3, R = 1.
//   F2 = 5 * (2/3) / (4 * 2/3 + 1) = 10/11.
TEST(Chrf, WordNgramsDetachPunctuation) {
  ChrfOptions o;
  o.char_order = 1;
  o.word_order = 1;
  EXPECT_NEAR(sentence_chrf("a b.", "a b", o), 100.0 * 10 / 11, 1e-9);
  ChrfOptions pp;
  pp.word_order = 2;
  const ChrfResult r = corpus_chrf({"the cat."}, {"the cat."}, pp);
  EXPECT_NEAR(r.score, 100.0, 1e-9);
  EXPECT_EQ(r.signature, "nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0");
  EXPECT_EQ(r.to_string(), "chrF2++ = 100.00");
}

// With eps smoothing, orders 4-6 of a 3-character line score eps instead of being skipped:
// F = (3 * 1 + 3 * eps) / 6, i.e. 50.
TEST(Chrf, EpsSmoothing) {
  ChrfOptions o;
  o.eps_smoothing = true;
  const ChrfResult r = corpus_chrf({"abc"}, {"abc"}, o);
  EXPECT_NEAR(r.score, 50.0, 1e-9);
  EXPECT_EQ(r.signature, "nrefs:1|case:mixed|eff:no|nc:6|nw:0|space:no|version:2.6.0");
  EXPECT_NEAR(sentence_chrf("abc", "abc"), 100.0, 1e-9);
}

TEST(Chrf, LowercaseAndEmpty) {
  ChrfOptions lc;
  lc.lowercase = true;
  EXPECT_NEAR(sentence_chrf("The Cat", "the cat", lc), 100.0, 1e-9);
  EXPECT_EQ(corpus_chrf({"a"}, {"a"}, lc).signature, "nrefs:1|case:lc|eff:yes|nc:6|nw:0|space:no|version:2.6.0");
  EXPECT_EQ(sentence_chrf("", "the cat"), 0.0);
  EXPECT_EQ(corpus_chrf({}, {}, {}).score, 0.0);
}

TEST(Chrf, SummedStatsEqualCorpusChrf) {
  const std::vector<std::string> hyps = {"the cat sat", "", "a dog"};
  const std::vector<std::string> refs = {"the cat sits", "something", "the dog"};
  ChrfOptions o;
  o.word_order = 2;
  ChrfStats sum;
  for (size_t i = 0; i < hyps.size(); ++i) sum += chrf_sentence_stats(hyps[i], refs[i], o);
  EXPECT_EQ(chrf_from_stats(sum, o).score, corpus_chrf(hyps, refs, o).score);
}

TEST(Chrf, BadOptionsThrow) {
  ChrfOptions o;
  o.char_order = 0;
  EXPECT_THROW(corpus_chrf({"a"}, {"a"}, o), std::invalid_argument);
  o.char_order = -1;
  o.word_order = 2;
  EXPECT_THROW(sentence_chrf("a", "a", o), std::invalid_argument);
}

}  // namespace
}  // namespace s2s
