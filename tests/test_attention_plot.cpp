#include "attention_plot.h"

#include <gtest/gtest.h>

#include <cstddef>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

using s2s::AttentionMatrix;

std::size_t count(const std::string& haystack, const std::string& needle) {
    std::size_t n = 0;
    for (std::size_t pos = haystack.find(needle); pos != std::string::npos;
         pos = haystack.find(needle, pos + needle.size())) {
        ++n;
    }
    return n;
}

double svg_attribute(const std::string& svg, const std::string& name) {
    const std::regex re("<svg[^>]*\\s" + name + "=\"([0-9.]+)\"");
    std::smatch match;
    if (!std::regex_search(svg, match, re)) {
        ADD_FAILURE() << "no " << name << " on the <svg> element";
        return -1.0;
    }
    return std::stod(match[1]);
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// Cells' tooltips, in document order (row by row).
std::vector<std::string> cell_titles(const std::string& svg) {
    std::vector<std::string> titles;
    const std::regex re("<rect class=\"cell\"[^>]*><title>([^<]*)</title></rect>");
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
         ++it) {
        titles.push_back((*it)[1]);
    }
    return titles;
}

AttentionMatrix uniform(std::size_t outputs, std::size_t sources) {
    AttentionMatrix m;
    for (std::size_t j = 0; j < sources; ++j) m.source_tokens.push_back("s" + std::to_string(j));
    for (std::size_t i = 0; i < outputs; ++i) {
        m.output_tokens.push_back("o" + std::to_string(i));
        m.weights.emplace_back(sources, sources == 0 ? 0.0f : 1.0f / static_cast<float>(sources));
    }
    return m;
}

AttentionMatrix small() {
    AttentionMatrix m;
    m.source_tokens = {"das", "Haus", "</s>"};
    m.output_tokens = {"the", "house", "</s>"};
    m.weights = {{0.9f, 0.1f, 0.0f}, {0.25f, 0.7234f, 0.0266f}, {0.0f, 0.0f, 1.0f}};
    return m;
}

TEST(SvgEscape, EscapesMarkupCharacters) {
    EXPECT_EQ(s2s::svg_escape("a<b&c>\"d'e"), "a&lt;b&amp;c&gt;&quot;d&#39;e");
    EXPECT_EQ(s2s::svg_escape("&amp;"), "&amp;amp;");
    EXPECT_EQ(s2s::svg_escape(""), "");
    EXPECT_EQ(s2s::svg_escape("plain text 123"), "plain text 123");
}

TEST(SvgEscape, KeepsUtf8) {
    EXPECT_EQ(s2s::svg_escape("Straße"), "Straße");
    EXPECT_EQ(s2s::svg_escape("日本語 ▁the €"), "日本語 ▁the €");
    EXPECT_EQ(s2s::svg_escape("😀"), "😀");
    EXPECT_EQ(s2s::svg_escape("a\tb\nc"), "a\tb\nc");
}

TEST(SvgEscape, ReplacesWhatXmlForbids) {
    // Control characters and malformed UTF-8 would make the document unparsable.
    EXPECT_EQ(s2s::svg_escape(std::string("a\x01" "b")), "a\xEF\xBF\xBD" "b");
    EXPECT_EQ(s2s::svg_escape(std::string("a\x00" "b", 3)), "a\xEF\xBF\xBD" "b");
    EXPECT_EQ(s2s::svg_escape("\xFF"), "\xEF\xBF\xBD");
    EXPECT_EQ(s2s::svg_escape("\xC3"), "\xEF\xBF\xBD");          // truncated sequence
    EXPECT_EQ(s2s::svg_escape("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");  // overlong '/'
    EXPECT_EQ(s2s::svg_escape("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate
}

TEST(AttentionSvg, IsAStandaloneDocument) {
    const std::string svg = s2s::attention_svg(small(), "example");
    EXPECT_EQ(svg.rfind("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg ", 0), 0u);
    EXPECT_NE(svg.find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
    EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
    EXPECT_EQ(count(svg, "<svg"), 1u);
    // Nothing fetched from elsewhere.
    EXPECT_EQ(svg.find("<script"), std::string::npos);
    EXPECT_EQ(svg.find("href"), std::string::npos);
    EXPECT_EQ(svg.find("@import"), std::string::npos);
    EXPECT_EQ(count(svg, "http"), 1u);  // only the namespace name
    EXPECT_EQ(count(svg, "url("), count(svg, "url(#"));
    EXPECT_GT(svg_attribute(svg, "width"), 0.0);
    EXPECT_GT(svg_attribute(svg, "height"), 0.0);
}

TEST(AttentionSvg, EscapesTokensAndTitle) {
    AttentionMatrix m;
    m.source_tokens = {"<unk>", "a&b", "\"q\"", "Straße"};
    m.output_tokens = {"it's", "日本"};
    m.weights = {{0.25f, 0.25f, 0.25f, 0.25f}, {0.1f, 0.2f, 0.3f, 0.4f}};
    const std::string svg = s2s::attention_svg(m, "x < y & \"z\"");
    EXPECT_EQ(svg.find("<unk>"), std::string::npos);
    EXPECT_EQ(svg.find("a&b"), std::string::npos);
    EXPECT_NE(svg.find(">&lt;unk&gt;</text>"), std::string::npos);
    EXPECT_NE(svg.find(">a&amp;b</text>"), std::string::npos);
    EXPECT_NE(svg.find(">&quot;q&quot;</text>"), std::string::npos);
    EXPECT_NE(svg.find(">Straße</text>"), std::string::npos);
    EXPECT_NE(svg.find(">it&#39;s</text>"), std::string::npos);
    EXPECT_NE(svg.find(">日本</text>"), std::string::npos);
    EXPECT_NE(svg.find(">x &lt; y &amp; &quot;z&quot;</text>"), std::string::npos);
    // Every '&' starts an entity.
    const std::regex bare_amp("&(?!(amp|lt|gt|quot|#39);)");
    EXPECT_FALSE(std::regex_search(svg, bare_amp));
}

TEST(AttentionSvg, OneTitlePerCellWithTheValue) {
    const AttentionMatrix m = small();
    const std::string svg = s2s::attention_svg(m);
    const std::vector<std::string> titles = cell_titles(svg);
    ASSERT_EQ(titles.size(), 9u);
    EXPECT_EQ(count(svg, "<rect class=\"cell\""), 9u);
    EXPECT_EQ(count(svg, "</title></rect>"), 9u);
    const char* const values[3][3] = {{"0.900", "0.100", "0.000"},
                                      {"0.250", "0.723", "0.027"},
                                      {"0.000", "0.000", "1.000"}};
    for (std::size_t i = 0; i < 3; ++i) {
        for (std::size_t j = 0; j < 3; ++j) {
            const std::string& t = titles[i * 3 + j];
            EXPECT_NE(t.find(s2s::svg_escape(m.output_tokens[i])), std::string::npos) << t;
            EXPECT_NE(t.find(s2s::svg_escape(m.source_tokens[j])), std::string::npos) << t;
            EXPECT_EQ(t.substr(t.size() - 7), std::string(": ") + values[i][j]) << t;
        }
    }
    EXPECT_EQ(titles[3], "&quot;house&quot; (output 2) \xE2\x86\x90 &quot;das&quot; (source 1): 0.250");
}

TEST(AttentionSvg, ShadesFromWhiteToDarkBlue) {
    AttentionMatrix m;
    m.source_tokens = {"a", "b", "c"};
    m.output_tokens = {"x"};
    m.weights = {{0.0f, 1.0f, 1.5f}};  // out-of-range values are clamped
    const std::string svg = s2s::attention_svg(m);
    const std::regex re("<rect class=\"cell\"[^>]*fill=\"(#[0-9a-f]{6})\"");
    std::vector<std::string> fills;
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator();
         ++it) {
        fills.push_back((*it)[1]);
    }
    ASSERT_EQ(fills.size(), 3u);
    EXPECT_EQ(fills[0], "#ffffff");
    EXPECT_EQ(fills[1], "#08306b");
    EXPECT_EQ(fills[2], "#08306b");
    EXPECT_NE(svg.find(": 1.500</title>"), std::string::npos);
    EXPECT_NE(svg.find("linearGradient"), std::string::npos);  // the legend
}

TEST(AttentionSvg, DimensionsGrowWithTokenCounts) {
    const std::string base = s2s::attention_svg(uniform(3, 4));
    const std::string more_sources = s2s::attention_svg(uniform(3, 9));
    const std::string more_outputs = s2s::attention_svg(uniform(12, 4));
    EXPECT_GT(svg_attribute(more_sources, "width"), svg_attribute(base, "width"));
    EXPECT_GT(svg_attribute(more_outputs, "height"), svg_attribute(base, "height"));

    // Long labels make room for themselves too.
    AttentionMatrix wide = uniform(3, 4);
    wide.output_tokens[1] = "a_rather_long_output_token";
    EXPECT_GT(svg_attribute(s2s::attention_svg(wide), "width"), svg_attribute(base, "width"));
    AttentionMatrix tall = uniform(3, 4);
    tall.source_tokens[0] = "a_rather_long_source_token";
    EXPECT_GT(svg_attribute(s2s::attention_svg(tall), "height"), svg_attribute(base, "height"));
}

TEST(AttentionSvg, MismatchedSizesThrow) {
    AttentionMatrix m = small();
    m.weights[1].pop_back();
    EXPECT_THROW(s2s::attention_svg(m), std::invalid_argument);
    EXPECT_THROW(s2s::attention_terminal(m), std::invalid_argument);
    try {
        s2s::attention_svg(m);
    } catch (const std::invalid_argument& e) {
        const std::string what = e.what();
        EXPECT_NE(what.find("row 1"), std::string::npos) << what;
        EXPECT_NE(what.find("2 weights"), std::string::npos) << what;
        EXPECT_NE(what.find("3 source tokens"), std::string::npos) << what;
    }

    AttentionMatrix missing_row = small();
    missing_row.weights.pop_back();
    EXPECT_THROW(s2s::attention_svg(missing_row), std::invalid_argument);
    EXPECT_THROW(s2s::attention_terminal(missing_row), std::invalid_argument);
}

TEST(AttentionSvg, EndOfSentenceColumnNeedsItsLabel) {
    AttentionMatrix m;
    m.source_tokens = {"ein", "Test"};
    m.output_tokens = {"a", "test"};
    m.weights = {{0.8f, 0.1f, 0.1f}, {0.1f, 0.8f, 0.1f}};
    try {
        s2s::attention_svg(m);
        ADD_FAILURE() << "expected std::invalid_argument";
    } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find("</s>"), std::string::npos) << e.what();
    }
    m.source_tokens.push_back("</s>");
    const std::string svg = s2s::attention_svg(m);
    EXPECT_EQ(cell_titles(svg).size(), 6u);
    EXPECT_NE(svg.find(">&lt;/s&gt;</text>"), std::string::npos);
}

TEST(AttentionSvg, EmptyMatrixIsStillADocument) {
    const std::string svg = s2s::attention_svg(AttentionMatrix{});
    EXPECT_EQ(svg.substr(svg.size() - 7), "</svg>\n");
    EXPECT_TRUE(cell_titles(svg).empty());
}

TEST(AttentionTerminal, OneLinePerOutputTokenPlusHeader) {
    AttentionMatrix m;
    m.source_tokens = {"ab", "c"};
    m.output_tokens = {"x", "yy", "z"};
    m.weights = {{1.0f, 0.0f}, {0.0f, 1.0f}, {0.5f, 0.5f}};
    const std::string text = s2s::attention_terminal(m);
    const std::vector<std::string> lines = lines_of(text);
    // Header: the source tokens written downwards (2 lines for "ab") and a rule.
    ASSERT_EQ(lines.size(), 2u + 1u + 3u) << text;
    EXPECT_EQ(lines[0], "   a c ");
    EXPECT_EQ(lines[1], "   b   ");
    EXPECT_EQ(lines[2], "   ────");
    EXPECT_EQ(lines[3], " x ██  ");
    EXPECT_EQ(lines[4], "yy   ██");
    EXPECT_EQ(lines[5], " z ▒▒▒▒");
    EXPECT_EQ(text.find('\x1b'), std::string::npos);
}

TEST(AttentionTerminal, ShadeLevels) {
    AttentionMatrix m;
    m.source_tokens = {"a", "b", "c", "d", "e", "f"};
    m.output_tokens = {"o"};
    m.weights = {{0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.7f}};
    const std::vector<std::string> lines = lines_of(s2s::attention_terminal(m));
    ASSERT_EQ(lines.size(), 3u);
    EXPECT_EQ(lines[2], "o   ░░▒▒▓▓████");
}

TEST(AttentionTerminal, ColourUsesAnsi256) {
    const AttentionMatrix m = small();
    const std::string plain = s2s::attention_terminal(m, false);
    const std::string coloured = s2s::attention_terminal(m, true);
    EXPECT_EQ(plain.find('\x1b'), std::string::npos);
    EXPECT_NE(coloured.find("\x1b[38;5;"), std::string::npos);
    EXPECT_NE(coloured.find("\x1b[0m"), std::string::npos);
    EXPECT_EQ(lines_of(plain).size(), lines_of(coloured).size());
    // Weight 1.0: the full block in the strongest blue of the ramp; 0 stays blank.
    EXPECT_NE(coloured.find("\x1b[38;5;27m██\x1b[0m"), std::string::npos) << coloured;
    EXPECT_NE(coloured.find("\x1b[38;5;153m░░\x1b[0m"), std::string::npos) << coloured;
    EXPECT_EQ(count(coloured, "\x1b[38;5;"), 4u) << coloured;  // blank cells (< 0.125) are not coloured
}

TEST(AttentionTerminal, LongAndUnusualTokens) {
    AttentionMatrix m;
    m.source_tokens = {"abcdefghijklmnopqrstuvwxyz", "日本", std::string("\x1b[31m")};
    m.output_tokens = {"an_extremely_long_output_token_name", "Ü"};
    m.weights = {{0.2f, 0.3f, 0.5f}, {1.0f, 0.0f, 0.0f}};
    const std::string text = s2s::attention_terminal(m);
    EXPECT_EQ(text.find('\x1b'), std::string::npos);  // control characters neutralised
    const std::vector<std::string> lines = lines_of(text);
    ASSERT_EQ(lines.size(), 10u + 1u + 2u) << text;      // labels cut to 10 characters
    EXPECT_EQ(lines[9].substr(0, 21), std::string(21, ' '));
    EXPECT_NE(lines[9].find("…"), std::string::npos);
    EXPECT_NE(lines[0].find("a 日"), std::string::npos) << lines[0];
    EXPECT_NE(lines[1].find("b 本"), std::string::npos) << lines[1];
    EXPECT_NE(lines[11].find("…"), std::string::npos);  // row label abbreviated
    EXPECT_EQ(lines[12], std::string(19, ' ') + "Ü ██    ");
}

}  // namespace
