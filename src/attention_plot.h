// Pictures of attention weights: a standalone SVG heat map and a text
// rendering for the terminal.  No torch dependency: callers copy the
// weights out of their tensors into an AttentionMatrix.
#pragma once

#include <string>
#include <vector>

namespace s2s {

// Attention weights of one translated sentence.
//
// weights[i][j] is how much output token i attended to source position j.
// Each row should sum to about 1 (that is not checked; values are drawn on
// a fixed 0..1 scale and clamped to it).
//
// weights must have exactly one row per output token and every row exactly
// one value per source token.  When the model also attends to the
// end-of-sentence position, the rows have one more column than the source
// sentence has words: pass "</s>" as the last entry of source_tokens then.
struct AttentionMatrix {
    std::vector<std::string> source_tokens;
    std::vector<std::string> output_tokens;
    std::vector<std::vector<float>> weights;  // [output][source]
};

// A complete standalone SVG document (no external CSS, fonts or scripts):
// source tokens along the top (rotated labels), output tokens down the left,
// cell shade from white (0) to dark blue (1), a <title> tooltip per cell
// with the token pair and the value to 3 decimals, a colour legend and the
// optional title.  Throws std::invalid_argument when the sizes disagree.
std::string attention_svg(const AttentionMatrix& m, const std::string& title = "");

// A text rendering: a header with the source tokens written vertically
// (one character per line, long tokens abbreviated with "…") closed by a
// rule line "────", then one line per output token with its label and one shade per source
// token from " ░▒▓█" (blank for 0, full block for 1; two characters per
// cell).  With color, each shade is also coloured (xterm 256-colour
// escapes) from pale to strong blue.  Throws std::invalid_argument when
// the sizes disagree.
std::string attention_terminal(const AttentionMatrix& m, bool color = false);

// Escapes text for XML character data and attribute values (& < > " ').
// Characters XML 1.0 forbids (most control characters) and malformed UTF-8
// bytes become U+FFFD so the document always parses.
std::string svg_escape(const std::string& text);

}  // namespace s2s
