#include "attention_plot.h"

#include "utf8.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <locale>
#include <sstream>
#include <stdexcept>

namespace s2s {

namespace {

constexpr char32_t kReplacement = 0xFFFD;

// ---------------------------------------------------------------- UTF-8

// Decodes UTF-8; every byte that is not part of a well-formed sequence
// (overlong forms, surrogates and values above U+10FFFF included) becomes
// one U+FFFD.
std::vector<char32_t> decode_utf8(const std::string& s) {
    std::vector<char32_t> out;
    out.reserve(s.size());
    std::size_t i = 0;
    const std::size_t n = s.size();
    while (i < n) {
        const auto b0 = static_cast<unsigned char>(s[i]);
        if (b0 < 0x80) {
            out.push_back(b0);
            ++i;
            continue;
        }
        std::size_t len = 0;
        char32_t cp = 0;
        char32_t min = 0;
        if ((b0 & 0xE0) == 0xC0) {
            len = 2; cp = b0 & 0x1F; min = 0x80;
        } else if ((b0 & 0xF0) == 0xE0) {
            len = 3; cp = b0 & 0x0F; min = 0x800;
        } else if ((b0 & 0xF8) == 0xF0) {
            len = 4; cp = b0 & 0x07; min = 0x10000;
        }
        bool ok = len != 0 && i + len <= n;
        for (std::size_t k = 1; ok && k < len; ++k) {
            const auto b = static_cast<unsigned char>(s[i + k]);
            if ((b & 0xC0) != 0x80) {
                ok = false;
            } else {
                cp = (cp << 6) | (b & 0x3F);
            }
        }
        if (ok && (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))) ok = false;
        if (ok) {
            out.push_back(cp);
            i += len;
        } else {
            out.push_back(kReplacement);
            ++i;
        }
    }
    return out;
}


bool is_zero_width(char32_t cp) {
    return (cp >= 0x0300 && cp <= 0x036F) || (cp >= 0x0483 && cp <= 0x0489) ||
           (cp >= 0x0591 && cp <= 0x05BD) || (cp >= 0x0610 && cp <= 0x061A) ||
           (cp >= 0x064B && cp <= 0x065F) || (cp >= 0x0900 && cp <= 0x0903) ||
           (cp >= 0x093A && cp <= 0x094F && cp != 0x093D) ||
           (cp >= 0x1AB0 && cp <= 0x1AFF) || (cp >= 0x1DC0 && cp <= 0x1DFF) ||
           (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x20D0 && cp <= 0x20FF) ||
           (cp >= 0xFE00 && cp <= 0xFE0F) || (cp >= 0xFE20 && cp <= 0xFE2F);
}

bool is_wide(char32_t cp) {
    return (cp >= 0x1100 && cp <= 0x115F) || (cp >= 0x2E80 && cp <= 0x303E) ||
           (cp >= 0x3041 && cp <= 0x33FF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
           (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0xA000 && cp <= 0xA4CF) ||
           (cp >= 0xAC00 && cp <= 0xD7A3) || (cp >= 0xF900 && cp <= 0xFAFF) ||
           (cp >= 0xFE30 && cp <= 0xFE4F) || (cp >= 0xFF00 && cp <= 0xFF60) ||
           (cp >= 0xFFE0 && cp <= 0xFFE6) || (cp >= 0x1F300 && cp <= 0x1F64F) ||
           (cp >= 0x1F900 && cp <= 0x1F9FF) || (cp >= 0x20000 && cp <= 0x3FFFD);
}

// Columns a code point takes in a terminal.
int display_width(char32_t cp) {
    if (is_zero_width(cp)) return 0;
    return is_wide(cp) ? 2 : 1;
}

// Control characters would garble a terminal (or be illegal in XML).
bool is_control(char32_t cp) { return cp < 0x20 || (cp >= 0x7F && cp <= 0x9F); }

// ------------------------------------------------------------ numbers

// Locale-independent fixed-point formatting ("0.423", never "0,423").
std::string fixed(double v, int decimals) {
    std::ostringstream os;
    os.imbue(std::locale::classic());
    os.setf(std::ios::fixed);
    os.precision(decimals);
    os << v;
    std::string s = os.str();
    if (s == "-0" || s.rfind("-0.", 0) == 0) {  // no "-0.0" for tiny negatives
        bool all_zero = s.find_first_not_of("-0.") == std::string::npos;
        if (all_zero) s.erase(0, 1);
    }
    return s;
}

// Coordinates: one decimal, trailing ".0" dropped.
std::string num(double v) {
    std::string s = fixed(v, 1);
    if (s.size() > 2 && s.compare(s.size() - 2, 2, ".0") == 0) s.resize(s.size() - 2);
    return s;
}

// "0", "0.25", "0.5", "0.75", "1" for the legend.
std::string short_number(double v) {
    std::string s = fixed(v, 2);
    while (!s.empty() && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
}

// ------------------------------------------------------------- colours

struct Rgb {
    int r, g, b;
};

// matplotlib's "Blues" with its first stop replaced by pure white.
constexpr std::array<Rgb, 9> kBlues = {{{255, 255, 255},
                                        {222, 235, 247},
                                        {198, 219, 239},
                                        {158, 202, 225},
                                        {107, 174, 214},
                                        {66, 146, 198},
                                        {33, 113, 181},
                                        {8, 81, 156},
                                        {8, 48, 107}}};

// Weight to colour on the fixed 0..1 scale (clamped); piecewise linear
// between the stops, matching the legend's gradient.
Rgb weight_colour(float w) {
    double x = std::isfinite(w) ? std::clamp(static_cast<double>(w), 0.0, 1.0) : 0.0;
    const double pos = x * static_cast<double>(kBlues.size() - 1);
    std::size_t lo = static_cast<std::size_t>(std::floor(pos));
    if (lo >= kBlues.size() - 1) lo = kBlues.size() - 2;
    const double t = pos - static_cast<double>(lo);
    const Rgb a = kBlues[lo];
    const Rgb b = kBlues[lo + 1];
    auto mix = [t](int u, int v) {
        return static_cast<int>(std::lround(u + (v - u) * t));
    };
    return {mix(a.r, b.r), mix(a.g, b.g), mix(a.b, b.b)};
}

std::string hex(Rgb c) {
    static const char* digits = "0123456789abcdef";
    std::string s = "#";
    for (int v : {c.r, c.g, c.b}) {
        s += digits[(v >> 4) & 0xF];
        s += digits[v & 0xF];
    }
    return s;
}

// xterm 256-colour foregrounds for shade levels 1..4: blues of rising
// saturation, readable on dark and on light terminal backgrounds alike.
constexpr std::array<int, 4> kTerminalBlues = {153, 111, 69, 27};

// ----------------------------------------------------------- validation

void validate(const AttentionMatrix& m) {
    if (m.weights.size() != m.output_tokens.size()) {
        throw std::invalid_argument(
            "attention matrix has " + std::to_string(m.weights.size()) +
            " rows of weights but " + std::to_string(m.output_tokens.size()) +
            " output tokens; there must be one row per output token");
    }
    const std::size_t cols = m.source_tokens.size();
    for (std::size_t i = 0; i < m.weights.size(); ++i) {
        if (m.weights[i].size() != cols) {
            std::string msg = "attention matrix row " + std::to_string(i) + " (output token \"" +
                              m.output_tokens[i] + "\") has " +
                              std::to_string(m.weights[i].size()) + " weights but there are " +
                              std::to_string(cols) + " source tokens";
            if (m.weights[i].size() == cols + 1) {
                msg += " (if the model attends to the end-of-sentence position, pass \"</s>\" "
                       "as the last source token)";
            }
            throw std::invalid_argument(msg);
        }
    }
}

// ------------------------------------------------------------------ SVG

constexpr double kFontSize = 12.0;
constexpr double kCell = 24.0;
constexpr double kMargin = 12.0;
constexpr double kMaxLabelWidth = 220.0;  // longer labels are abbreviated with "…"
constexpr double kCos45 = 0.70710678118654752;

// Rough rendered width of text in the sans-serif font at kFontSize.  It
// only has to be generous enough that labels are not clipped.
double text_width(const std::vector<char32_t>& cps, double font_size = kFontSize) {
    double w = 0.0;
    for (char32_t cp : cps) {
        if (is_zero_width(cp)) continue;
        if (is_wide(cp)) {
            w += 1.0;
        } else if (cp == 'i' || cp == 'l' || cp == 'j' || cp == '.' || cp == ',' ||
                   cp == '\'' || cp == '|' || cp == ':' || cp == ';' || cp == '!') {
            w += 0.34;
        } else if ((cp >= 'A' && cp <= 'Z') || cp == 'm' || cp == 'w' || cp == '@' ||
                   cp == '%') {
            w += 0.82;
        } else {
            w += 0.64;
        }
    }
    return w * font_size;
}

struct Label {
    std::string text;      // escaped, possibly abbreviated
    std::string full;      // escaped full token, for a <title> when abbreviated
    bool abbreviated = false;
    double width = 0.0;    // estimated rendered width
};

Label make_label(const std::string& token, double font_size = kFontSize,
                 double max_width = kMaxLabelWidth) {
    std::vector<char32_t> cps = decode_utf8(token);
    for (char32_t& cp : cps) {
        if (is_control(cp)) cp = kReplacement;
    }
    Label label;
    label.full = svg_escape(utf8::encode(cps));
    if (text_width(cps, font_size) > max_width) {
        const std::vector<char32_t> ellipsis = {U'…'};
        const double budget = max_width - text_width(ellipsis, font_size);
        std::vector<char32_t> cut;
        for (char32_t cp : cps) {
            cut.push_back(cp);
            if (text_width(cut, font_size) > budget) {
                cut.pop_back();
                break;
            }
        }
        cut.push_back(U'…');
        cps = cut;
        label.abbreviated = true;
    }
    label.text = svg_escape(utf8::encode(cps));
    label.width = text_width(cps, font_size);
    return label;
}

// ------------------------------------------------------------- terminal

// A character cluster (base plus following zero-width marks) and its width.
struct Cluster {
    std::string text;
    int width = 0;
};

std::vector<Cluster> clusters(const std::string& token) {
    std::vector<Cluster> out;
    for (char32_t cp : decode_utf8(token)) {
        if (is_control(cp)) cp = kReplacement;
        const int w = display_width(cp);
        if (w == 0 && !out.empty()) {
            utf8::append(out.back().text, cp);
            continue;
        }
        Cluster c;
        if (w == 0) c.text = " ";  // a lone mark combines with a space
        utf8::append(c.text, cp);
        c.width = std::max(w, 1);
        out.push_back(std::move(c));
    }
    return out;
}

// Keeps at most max_width columns, ending with "…" when something was cut.
std::vector<Cluster> abbreviate(std::vector<Cluster> cs, int max_width) {
    int total = 0;
    for (const auto& c : cs) total += c.width;
    if (total <= max_width) return cs;
    std::vector<Cluster> out;
    int used = 0;
    for (auto& c : cs) {
        if (used + c.width > max_width - 1) break;
        used += c.width;
        out.push_back(std::move(c));
    }
    out.push_back({"…", 1});
    return out;
}

int width_of(const std::vector<Cluster>& cs) {
    int w = 0;
    for (const auto& c : cs) w += c.width;
    return w;
}

}  // namespace

std::string svg_escape(const std::string& text) {
    std::string out;
    out.reserve(text.size() + text.size() / 8);
    for (char32_t cp : decode_utf8(text)) {
        switch (cp) {
            case '&': out += "&amp;"; break;
            case '<': out += "&lt;"; break;
            case '>': out += "&gt;"; break;
            case '"': out += "&quot;"; break;
            case '\'': out += "&#39;"; break;
            default:
                // XML 1.0 allows only TAB, LF and CR below U+0020, and
                // never U+FFFE / U+FFFF.
                if ((cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r') || cp == 0xFFFE ||
                    cp == 0xFFFF) {
                    cp = kReplacement;
                }
                utf8::append(out, cp);
        }
    }
    return out;
}

std::string attention_svg(const AttentionMatrix& m, const std::string& title) {
    validate(m);
    const std::size_t rows = m.output_tokens.size();
    const std::size_t cols = m.source_tokens.size();

    std::vector<Label> col_labels;
    std::vector<Label> row_labels;
    for (const auto& t : m.source_tokens) col_labels.push_back(make_label(t));
    for (const auto& t : m.output_tokens) row_labels.push_back(make_label(t));
    const double title_size = 15.0;
    const Label title_label = make_label(title, title_size, 4000.0);

    // Vertical layout.
    double y = kMargin;
    double title_baseline = 0.0;
    if (!title.empty()) {
        title_baseline = y + title_size;
        y += title_size + 10.0;
    }
    // Source labels are rotated -45 degrees about a point just above each
    // column, so a label of width w rises w*cos45 and reaches w*cos45 to
    // the right.
    double max_col_label = 0.0;
    for (const auto& l : col_labels) max_col_label = std::max(max_col_label, l.width);
    const double label_gap = 5.0;
    const double top_area = cols == 0 ? 0.0 : max_col_label * kCos45 + kFontSize + label_gap;
    const double grid_top = y + top_area;
    const double grid_h = kCell * static_cast<double>(rows);

    // Horizontal layout.
    double max_row_label = 0.0;
    for (const auto& l : row_labels) max_row_label = std::max(max_row_label, l.width);
    const double grid_left = kMargin + (rows == 0 ? 0.0 : max_row_label + 8.0);
    const double grid_w = kCell * static_cast<double>(cols);
    const double grid_right = grid_left + grid_w;

    // Legend to the right of the grid.
    const double legend_x = grid_right + 24.0;
    const double legend_w = 14.0;
    const double legend_h = std::clamp(grid_h, 120.0, 240.0);
    const double legend_top = grid_top;
    const double legend_right = legend_x + legend_w + 6.0 + 4.0 * 0.64 * kFontSize;
    const double legend_bottom = legend_top + legend_h + 6.0 + kFontSize + 4.0;

    // How far the rotated source labels reach to the right.
    const double col_text_dx = 0.3 * kFontSize;  // centres the glyphs on the column
    double labels_right = 0.0;
    for (std::size_t j = 0; j < cols; ++j) {
        const double cx = grid_left + kCell * (static_cast<double>(j) + 0.5) + col_text_dx;
        labels_right =
            std::max(labels_right, cx + col_labels[j].width * kCos45 + kFontSize * kCos45);
    }

    const double width = std::ceil(std::max({legend_right, labels_right,
                                             kMargin + title_label.width}) + kMargin);
    const double height = std::ceil(std::max(grid_top + grid_h, legend_bottom) + kMargin);

    std::ostringstream os;
    os.imbue(std::locale::classic());
    os << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
       << "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" << num(width)
       << "\" height=\"" << num(height) << "\" viewBox=\"0 0 " << num(width) << ' '
       << num(height) << "\" font-family=\"DejaVu Sans, Verdana, Arial, Helvetica, sans-serif\" "
       << "font-size=\"" << num(kFontSize) << "\">\n";
    os << "<title>" << (title.empty() ? std::string("Attention weights") : title_label.full)
       << "</title>\n";
    os << "<style>\n"
       << ".cell:hover { stroke: #d62728; stroke-width: 2; }\n"
       << "</style>\n";
    os << "<defs>\n<linearGradient id=\"legend-gradient\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n";
    for (std::size_t k = 0; k < kBlues.size(); ++k) {
        os << "<stop offset=\"" << fixed(static_cast<double>(k) / (kBlues.size() - 1), 3)
           << "\" stop-color=\"" << hex(kBlues[k]) << "\"/>\n";
    }
    os << "</linearGradient>\n</defs>\n";
    os << "<rect x=\"0\" y=\"0\" width=\"" << num(width) << "\" height=\"" << num(height)
       << "\" fill=\"#ffffff\"/>\n";

    if (!title.empty()) {
        os << "<text x=\"" << num(kMargin) << "\" y=\"" << num(title_baseline)
           << "\" font-size=\"" << num(title_size) << "\" font-weight=\"bold\">"
           << title_label.text << "</text>\n";
    }

    // Source tokens along the top.
    os << "<g class=\"source-labels\">\n";
    for (std::size_t j = 0; j < cols; ++j) {
        const double x = grid_left + kCell * (static_cast<double>(j) + 0.5) + col_text_dx;
        const double ly = grid_top - label_gap;
        os << "<text x=\"" << num(x) << "\" y=\"" << num(ly) << "\" transform=\"rotate(-45 "
           << num(x) << ' ' << num(ly) << ")\">";
        if (col_labels[j].abbreviated) os << "<title>" << col_labels[j].full << "</title>";
        os << col_labels[j].text << "</text>\n";
    }
    os << "</g>\n";

    // Output tokens down the left side.
    os << "<g class=\"output-labels\" text-anchor=\"end\">\n";
    for (std::size_t i = 0; i < rows; ++i) {
        const double ly = grid_top + kCell * (static_cast<double>(i) + 0.5) + 0.35 * kFontSize;
        os << "<text x=\"" << num(grid_left - 6.0) << "\" y=\"" << num(ly) << "\">";
        if (row_labels[i].abbreviated) os << "<title>" << row_labels[i].full << "</title>";
        os << row_labels[i].text << "</text>\n";
    }
    os << "</g>\n";

    // The cells.
    os << "<g class=\"cells\" shape-rendering=\"crispEdges\">\n";
    for (std::size_t i = 0; i < rows; ++i) {
        for (std::size_t j = 0; j < cols; ++j) {
            const float w = m.weights[i][j];
            const std::string fill = std::isfinite(w) ? hex(weight_colour(w)) : "#bdbdbd";
            const std::string value = std::isfinite(w) ? fixed(w, 3) : std::string("nan");
            os << "<rect class=\"cell\" x=\"" << num(grid_left + kCell * static_cast<double>(j))
               << "\" y=\"" << num(grid_top + kCell * static_cast<double>(i)) << "\" width=\""
               << num(kCell) << "\" height=\"" << num(kCell) << "\" fill=\"" << fill
               << "\"><title>&quot;" << row_labels[i].full << "&quot; (output " << i + 1
               << ") \xE2\x86\x90 &quot;" << col_labels[j].full << "&quot; (source " << j + 1
               << "): " << value << "</title></rect>\n";
        }
    }
    os << "</g>\n";
    if (rows > 0 && cols > 0) {
        os << "<rect x=\"" << num(grid_left) << "\" y=\"" << num(grid_top) << "\" width=\""
           << num(grid_w) << "\" height=\"" << num(grid_h)
           << "\" fill=\"none\" stroke=\"#999999\" stroke-width=\"1\"/>\n";
    }

    // Colour legend: gradient bar, ticks at 0, .25, .5, .75, 1 and a caption.
    os << "<g class=\"legend\">\n";
    os << "<rect x=\"" << num(legend_x) << "\" y=\"" << num(legend_top) << "\" width=\""
       << num(legend_w) << "\" height=\"" << num(legend_h)
       << "\" fill=\"url(#legend-gradient)\" stroke=\"#999999\" stroke-width=\"1\"/>\n";
    for (int k = 0; k <= 4; ++k) {
        const double v = k / 4.0;
        const double ty = legend_top + legend_h * (1.0 - v);
        os << "<line x1=\"" << num(legend_x + legend_w) << "\" y1=\"" << num(ty) << "\" x2=\""
           << num(legend_x + legend_w + 4.0) << "\" y2=\"" << num(ty)
           << "\" stroke=\"#666666\" stroke-width=\"1\"/>\n";
        os << "<text x=\"" << num(legend_x + legend_w + 6.0) << "\" y=\""
           << num(ty + 0.35 * kFontSize) << "\">" << short_number(v) << "</text>\n";
    }
    os << "<text x=\"" << num(legend_x) << "\" y=\""
       << num(legend_top + legend_h + 6.0 + kFontSize) << "\" fill=\"#555555\">weight</text>\n";
    os << "</g>\n";
    os << "</svg>\n";
    return os.str();
}

std::string attention_terminal(const AttentionMatrix& m, bool color) {
    validate(m);
    static const char* const kShades[5] = {" ", "\xE2\x96\x91", "\xE2\x96\x92", "\xE2\x96\x93",
                                           "\xE2\x96\x88"};  // " ░▒▓█"
    constexpr int kMaxHeader = 10;     // source labels: at most 10 characters, top to bottom
    constexpr int kMaxRowLabel = 20;   // output labels: at most 20 columns

    const std::size_t rows = m.output_tokens.size();
    const std::size_t cols = m.source_tokens.size();

    std::vector<std::vector<Cluster>> heads;
    std::size_t header_lines = 1;
    for (const auto& t : m.source_tokens) {
        // Each column is 2 terminal cells wide, so a wide character fits.
        std::vector<Cluster> cs = clusters(t);
        if (static_cast<int>(cs.size()) > kMaxHeader) {
            cs.resize(kMaxHeader - 1);
            cs.push_back({"…", 1});
        }
        header_lines = std::max(header_lines, cs.size());
        heads.push_back(std::move(cs));
    }

    std::vector<std::vector<Cluster>> labels;
    int label_width = 0;
    for (const auto& t : m.output_tokens) {
        labels.push_back(abbreviate(clusters(t), kMaxRowLabel));
        label_width = std::max(label_width, width_of(labels.back()));
    }
    const std::string indent(static_cast<std::size_t>(label_width) + 1, ' ');

    std::string out;
    for (std::size_t line = 0; line < header_lines; ++line) {
        out += indent;
        for (std::size_t j = 0; j < cols; ++j) {
            if (line < heads[j].size()) {
                out += heads[j][line].text;
                if (heads[j][line].width < 2) out += ' ';
            } else {
                out += "  ";
            }
        }
        out += '\n';
    }
    out += indent;
    for (std::size_t j = 0; j < cols; ++j) out += "\xE2\x94\x80\xE2\x94\x80";  // "──"
    out += '\n';

    for (std::size_t i = 0; i < rows; ++i) {
        out.append(static_cast<std::size_t>(label_width - width_of(labels[i])), ' ');
        for (const auto& c : labels[i]) out += c.text;
        out += ' ';
        for (std::size_t j = 0; j < cols; ++j) {
            const float w = m.weights[i][j];
            if (!std::isfinite(w)) {
                out += "??";
                continue;
            }
            const double x = std::clamp(static_cast<double>(w), 0.0, 1.0);
            const int level = static_cast<int>(std::lround(x * 4.0));
            if (color && level > 0) {
                out += "\x1b[38;5;" + std::to_string(kTerminalBlues[level - 1]) + "m";
                out += kShades[level];
                out += kShades[level];
                out += "\x1b[0m";
            } else {
                out += kShades[level];
                out += kShades[level];
            }
        }
        out += '\n';
    }
    return out;
}

}  // namespace s2s
