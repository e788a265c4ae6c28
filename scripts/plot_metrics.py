#!/usr/bin/env python3
"""Plot training curves of one or more s2s runs as a standalone SVG.

usage: plot_metrics.py RUN_DIR [RUN_DIR ...] -o OUT.svg

Reads RUN_DIR/metrics.jsonl of every run.  Each line is a JSON object;
lines with "type": "train" give the training loss, lines with
"type": "valid" the validation perplexity, BLEU and chrF, for example

  {"type":"train","step":100,"epoch":1,"loss":3.2,"lr":0.001,...}
  {"type":"valid","step":500,"epoch":1,"loss":2.1,"ppl":8.2,"bleu":31.5,"chrf":55.0,...}

Unknown keys and lines of other types are ignored.  Draws three panels
(training loss, validation perplexity and validation BLEU against the step),
and a fourth for validation chrF when a run logs it (builds since 2026-11-28),
one coloured line per run, with a legend naming each run by its folder.

Python 3 standard library only; the SVG is written directly and needs no
other file to display.  The drawing helpers here are also used by
plot_bleu_by_length.py.
"""

import argparse
import json
import math
import os
import re
import sys

FONT_FAMILY = "DejaVu Sans, Verdana, Arial, Helvetica, sans-serif"
FONT_SIZE = 12
# Tableau 10: distinct on white, readable for most colour-blind viewers.
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]


class PlotError(Exception):
    """A problem with the input; reported as 'error: ...' without a traceback."""


# --------------------------------------------------------------- SVG text

_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff\ud800-\udfff]")


def esc(text):
    """Escapes text for XML character data and attribute values."""
    text = _XML_FORBIDDEN.sub("\ufffd", str(text))
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;").replace("'", "&#39;"))


def text_width(text, size=FONT_SIZE):
    """A generous estimate of the rendered width of text in the sans font."""
    width = 0.0
    for ch in str(text):
        code = ord(ch)
        if 0x0300 <= code <= 0x036F:
            continue
        if code >= 0x1100 and (0x1100 <= code <= 0x115F or 0x2E80 <= code <= 0xA4CF
                               or 0xAC00 <= code <= 0xD7A3 or 0xF900 <= code <= 0xFAFF
                               or 0xFF00 <= code <= 0xFF60 or code >= 0x1F300):
            width += 1.0
        elif ch in "il.,:;|!'j":
            width += 0.34
        elif ch.isupper() or ch in "mw@%":
            width += 0.82
        else:
            width += 0.64
    return width * size


def num(value):
    """An SVG coordinate: at most one decimal."""
    text = "%.1f" % value
    return text[:-2] if text.endswith(".0") else text


def text_el(x, y, text, size=None, anchor=None, weight=None, fill=None, rotate=None,
            extra=""):
    attrs = 'x="%s" y="%s"' % (num(x), num(y))
    if size is not None:
        attrs += ' font-size="%s"' % num(size)
    if anchor:
        attrs += ' text-anchor="%s"' % anchor
    if weight:
        attrs += ' font-weight="%s"' % weight
    if fill:
        attrs += ' fill="%s"' % fill
    if rotate is not None:
        attrs += ' transform="rotate(%s %s %s)"' % (num(rotate), num(x), num(y))
    return "<text %s%s>%s</text>" % (attrs, extra, esc(text))


def svg_document(width, height, body, title):
    """A complete standalone SVG document around the body fragments."""
    head = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="%d" '
        'viewBox="0 0 %d %d" font-family="%s" font-size="%d">'
        % (width, height, width, height, FONT_FAMILY, FONT_SIZE),
        "<title>%s</title>" % esc(title),
        "<style>.series:hover { stroke-width: 3.5; }</style>",
        '<rect x="0" y="0" width="%d" height="%d" fill="#ffffff"/>' % (width, height),
    ]
    return "\n".join(head + body + ["</svg>", ""])


# ------------------------------------------------------------------ ticks

def nice_step(span, target):
    raw = span / max(target, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if raw <= factor * magnitude * (1 + 1e-9):
            return factor * magnitude
    return 10.0 * magnitude


def format_tick(value, step, thousands=False):
    """Tick label with as many decimals as the step needs; with thousands,
    20000 -> "20k" and 2500 -> "2.5k"."""
    if abs(value) < step * 1e-6:
        value = 0.0
    if thousands:
        return "%gk" % (value / 1000) if value else "0"
    decimals = max(0, -int(math.floor(math.log10(step) + 1e-9)))
    if decimals > 0 and abs(step * 10 ** decimals - round(step * 10 ** decimals)) > 1e-6:
        decimals += 1  # steps such as 0.25
    return "%.*f" % (decimals, value)


def linear_axis(lo, hi, target=5, include_zero=False):
    """Nice bounds and ticks covering [lo, hi]: (lo, hi, [(value, label)])."""
    if include_zero:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo < 1e-12:
        pad = abs(lo) * 0.1 or 1.0
        lo, hi = lo - pad, hi + pad
        if include_zero and lo < 0 <= hi - pad:
            lo = 0.0
    step = nice_step(hi - lo, target)
    first = math.floor(lo / step + 1e-9)
    last = math.ceil(hi / step - 1e-9)
    # Thousands as "k" on the whole axis once the numbers get long (steps).
    thousands = step >= 100 and max(abs(first), abs(last)) * step >= 10000
    ticks = [(k * step, format_tick(k * step, step, thousands)) for k in range(first, last + 1)]
    return first * step, last * step, ticks


def log_axis(lo, hi):
    """Nice bounds and ticks for a log scale over positive [lo, hi]."""
    lo_exp = math.floor(math.log10(lo))
    hi_exp = math.ceil(math.log10(hi))
    mantissas = (1, 2, 5) if hi_exp - lo_exp <= 3 else (1,)
    candidates = sorted(m * 10.0 ** e for e in range(lo_exp, hi_exp + 1) for m in mantissas)
    bottom = max([c for c in candidates if c <= lo * (1 + 1e-9)] or [candidates[0]])
    top = min([c for c in candidates if c >= hi * (1 - 1e-9)] or [candidates[-1]])
    if top <= bottom:
        top = bottom * 10
    ticks = [(c, "%g" % c) for c in candidates if bottom * (1 - 1e-9) <= c <= top * (1 + 1e-9)]
    return bottom, top, ticks


def is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def finite(value):
    return is_number(value) and math.isfinite(value)


# ------------------------------------------------------------------ panel

class Series:
    """One line: a name, a colour and (x, y) points; y may be None for a gap."""

    def __init__(self, name, colour, points, markers=False, point_titles=None):
        self.name = name
        self.colour = colour
        self.points = points
        self.markers = markers
        self.point_titles = point_titles


_clip_counter = [0]


def draw_panel(x0, y0, width, height, title, xlabel, ylabel, series, x_axis, y_axis,
               logy=False):
    """SVG fragments of one chart with its frame, grid, ticks and lines.

    x_axis and y_axis are (lo, hi, [(value, label), ...]) as returned by
    linear_axis / log_axis; with logy the y values are drawn on a log scale.
    """
    extra_lines = max([str(label).count("\n") for _, label in x_axis[2]] or [0])
    left, right, top, bottom = 62, 14, 26 if title else 10, 44 + 13 * extra_lines
    px0, py0 = x0 + left, y0 + top
    pw, ph = width - left - right, height - top - bottom
    xlo, xhi, xticks = x_axis
    ylo, yhi, yticks = y_axis

    def fx(v):
        return px0 + (v - xlo) / (xhi - xlo) * pw

    def fy(v):
        if logy:
            t = (math.log10(v) - math.log10(ylo)) / (math.log10(yhi) - math.log10(ylo))
        else:
            t = (v - ylo) / (yhi - ylo)
        return py0 + ph - t * ph

    out = ['<g class="panel">']
    if title:
        out.append(text_el(px0 + pw / 2, y0 + 16, title, size=13, anchor="middle",
                           weight="bold"))
    out.append('<rect x="%s" y="%s" width="%s" height="%s" fill="#ffffff" stroke="#888888" '
               'stroke-width="1"/>' % (num(px0), num(py0), num(pw), num(ph)))
    for value, label in yticks:
        y = fy(value)
        out.append('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#e6e6e6" stroke-width="1"/>'
                   % (num(px0), num(y), num(px0 + pw), num(y)))
        out.append('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#888888" stroke-width="1"/>'
                   % (num(px0 - 4), num(y), num(px0), num(y)))
        out.append(text_el(px0 - 7, y + 4, label, anchor="end"))
    for value, label in xticks:
        x = fx(value)
        out.append('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#f0f0f0" stroke-width="1"/>'
                   % (num(x), num(py0), num(x), num(py0 + ph)))
        out.append('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#888888" stroke-width="1"/>'
                   % (num(x), num(py0 + ph), num(x), num(py0 + ph + 4)))
        for k, part in enumerate(str(label).split("\n")):
            out.append(text_el(x, py0 + ph + 17 + 13 * k, part, anchor="middle",
                               size=FONT_SIZE if k == 0 else 10,
                               fill=None if k == 0 else "#666666"))
    out.append(text_el(px0 + pw / 2, y0 + height - 4, xlabel, anchor="middle"))
    out.append(text_el(x0 + 14, py0 + ph / 2, ylabel, anchor="middle", rotate=-90))

    _clip_counter[0] += 1
    clip_id = "plot-area-%d" % _clip_counter[0]
    out.append('<clipPath id="%s"><rect x="%s" y="%s" width="%s" height="%s"/></clipPath>'
               % (clip_id, num(px0 - 4), num(py0 - 4), num(pw + 8), num(ph + 8)))
    out.append('<g clip-path="url(#%s)" fill="none" stroke-linejoin="round" '
               'stroke-linecap="round">' % clip_id)
    drawn = False
    for s in series:
        runs, current = [], []
        for x, y in s.points:
            usable = finite(x) and finite(y) and (y > 0 or not logy)
            if usable:
                current.append((x, y))
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        for run in runs:
            drawn = True
            coords = " ".join("%s,%s" % (num(fx(x)), num(fy(y))) for x, y in run)
            out.append('<polyline class="series" points="%s" stroke="%s" stroke-width="1.8">'
                       '<title>%s</title></polyline>' % (coords, s.colour, esc(s.name)))
        if s.markers or any(len(run) == 1 for run in runs):
            for k, (x, y) in enumerate(s.points):
                if not (finite(x) and finite(y) and (y > 0 or not logy)):
                    continue
                tip = s.point_titles[k] if s.point_titles else "%s: %g, %g" % (s.name, x, y)
                out.append('<circle cx="%s" cy="%s" r="3" fill="%s" stroke="#ffffff" '
                           'stroke-width="0.8"><title>%s</title></circle>'
                           % (num(fx(x)), num(fy(y)), s.colour, esc(tip)))
    out.append("</g>")
    if not drawn:
        out.append(text_el(px0 + pw / 2, py0 + ph / 2, "no data", anchor="middle",
                           fill="#999999"))
    out.append("</g>")
    return out


def draw_legend(x0, y0, max_width, entries):
    """A wrapping row of (colour, name) legend entries; returns (fragments, height)."""
    out, x, y = [], x0, y0
    row_height = 20
    for colour, name in entries:
        item_width = 28 + text_width(name) + 22
        if x > x0 and x + item_width > x0 + max_width:
            x, y = x0, y + row_height
        out.append('<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="3" '
                   'stroke-linecap="round"/>' % (num(x + 2), num(y + 10), num(x + 22),
                                                  num(y + 10), colour))
        out.append(text_el(x + 28, y + 14, name))
        x += item_width
    return out, (y - y0 + row_height if entries else 0)


# ------------------------------------------------------------ metrics.jsonl

def read_metrics(run_dir):
    """Returns (train, valid): lists of dicts from RUN_DIR/metrics.jsonl."""
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise PlotError("%s: no such file (is %s a run folder?)" % (path, run_dir))
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
    except (OSError, UnicodeDecodeError) as e:
        raise PlotError("%s: cannot read: %s" % (path, e))

    def bad(lineno, message):
        return PlotError("%s:%d: %s" % (path, lineno, message))

    train, valid = [], []
    last = len(lines)
    # A file written in one go ends with "\n", so the last element is ""; a
    # non-empty last element is a line still being written by a live run.
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            if lineno == last:
                print("warning: %s:%d: ignoring an unfinished last line (%s)"
                      % (path, lineno, e), file=sys.stderr)
                continue
            raise bad(lineno, "not valid JSON: %s" % e)
        if not isinstance(record, dict):
            raise bad(lineno, "expected a JSON object, got %s" % type(record).__name__)
        kind = record.get("type")
        if kind not in ("train", "valid"):
            continue
        step = record.get("step")
        if not is_number(step):
            raise bad(lineno, 'a "%s" line needs a numeric "step", got %s'
                      % (kind, json.dumps(step)))
        required = ("loss",) if kind == "train" else ()
        optional = ("loss",) if kind == "train" else ("loss", "ppl", "bleu", "chrf")
        for key in optional:
            value = record.get(key)
            if key in required and value is None:
                raise bad(lineno, 'a "%s" line needs "%s"' % (kind, key))
            if value is not None and not is_number(value):
                raise bad(lineno, '"%s" must be a number, got %s' % (key, json.dumps(value)))
        (train if kind == "train" else valid).append(record)
    return train, valid


def by_step(records, key):
    """(step, value) sorted by step; a repeated step (resumed run) keeps the last."""
    latest = {}
    for r in records:
        if key in r:
            latest[r["step"]] = r[key]
    return sorted(latest.items())


def smooth(points, weight):
    """Exponential moving average of the y values (weight 0 = unchanged)."""
    if weight <= 0:
        return points
    out, avg = [], None
    for x, y in points:
        if finite(y):
            avg = y if avg is None else weight * avg + (1 - weight) * y
            out.append((x, avg))
        else:
            out.append((x, y))
    return out


def value_range(series, positive=False):
    values = [(x, y) for s in series for x, y in s.points
              if finite(x) and finite(y) and (y > 0 or not positive)]
    if not values:
        return None
    xs = [x for x, _ in values]
    ys = [y for _, y in values]
    return min(xs), max(xs), min(ys), max(ys)


def run_names(run_dirs):
    names = [os.path.basename(os.path.normpath(d)) or d for d in run_dirs]
    if len(set(names)) < len(names):  # same folder name in different places
        names = [os.path.normpath(d) for d in run_dirs]
    return names


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Plot training loss, validation perplexity and BLEU of s2s runs "
                    "(RUN_DIR/metrics.jsonl) into one SVG file.")
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.svg")
    parser.add_argument("--title", default="Training runs")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument("--logy", action="store_true",
                       help="log scale for training loss and validation perplexity")
    scale.add_argument("--linear", action="store_true",
                       help="linear scales only (by default perplexity is drawn on a log "
                            "scale when it spans a factor of 20 or more)")
    parser.add_argument("--smooth", type=float, default=0.0, metavar="W",
                        help="exponential moving average weight for the training loss, "
                             "0 <= W < 1 (default 0: raw values)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.smooth < 1.0:
        parser.error("--smooth must be in [0, 1)")

    try:
        names = run_names(args.run_dirs)
        runs = [read_metrics(d) for d in args.run_dirs]
        train_series, ppl_series, bleu_series, chrf_series = [], [], [], []
        for k, (name, (train, valid)) in enumerate(zip(names, runs)):
            colour = PALETTE[k % len(PALETTE)]
            train_series.append(Series(name, colour, smooth(by_step(train, "loss"),
                                                            args.smooth)))
            for key, target, label in (("ppl", ppl_series, "perplexity"),
                                       ("bleu", bleu_series, "BLEU"),
                                       ("chrf", chrf_series, "chrF")):
                points = by_step(valid, key)
                tips = ["%s: step %g, %s %s" % (name, x, label,
                                                 ("%.2f" % y) if finite(y) else y)
                        for x, y in points]
                target.append(Series(name, colour, points, markers=len(points) <= 60,
                                     point_titles=tips))

        ppl_log = args.logy
        ppl_range = value_range(ppl_series, positive=True)
        if not args.linear and ppl_range and ppl_range[3] >= 20 * ppl_range[2]:
            ppl_log = True
        panels = [
            ("Training loss", "step", "loss (log scale)" if args.logy else "loss",
             train_series, args.logy),
            ("Validation perplexity", "step",
             "perplexity (log scale)" if ppl_log else "perplexity", ppl_series, ppl_log),
            ("Validation BLEU", "step", "BLEU", bleu_series, False),
        ]
        if any(s.points for s in chrf_series):  # runs of builds that log chrF
            panels.append(("Validation chrF", "step", "chrF", chrf_series, False))
        panel_w, panel_h, gap, margin = 420, 320, 16, 16
        width = margin * 2 + panel_w * len(panels) + gap * (len(panels) - 1)
        body = [text_el(margin, margin + 16, args.title, size=16, weight="bold")]
        legend, legend_h = draw_legend(margin, margin + 28, width - 2 * margin,
                                       [(s.colour, s.name) for s in train_series])
        body += legend
        top = margin + 28 + legend_h + 8

        # One step axis for all panels so they line up.
        ranges = [r for _, _, _, s, logy in panels for r in [value_range(s, logy)] if r]
        if ranges:
            x_axis = linear_axis(min(r[0] for r in ranges), max(r[1] for r in ranges),
                                 target=5, include_zero=True)
        else:
            x_axis = linear_axis(0, 1)
        for k, (title, xlabel, ylabel, series, logy) in enumerate(panels):
            r = value_range(series, logy)
            if r is None:
                y_axis = linear_axis(0, 1)
                logy = False
            elif logy:
                y_axis = log_axis(r[2], r[3])
            else:
                y_axis = linear_axis(r[2], r[3], target=6)
            x0 = margin + k * (panel_w + gap)
            body += draw_panel(x0, top, panel_w, panel_h, title, xlabel, ylabel, series,
                               x_axis, y_axis, logy=logy)
        height = top + panel_h + margin
        svg = svg_document(width, height, body, args.title)
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(svg)
    except PlotError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
