#!/usr/bin/env python3
"""Plot BLEU against source sentence length for one or more models.

usage: plot_bleu_by_length.py EVAL.json [EVAL.json ...] -o OUT.svg [--labels a,b,c]

Each EVAL.json is what `s2s evaluate --json` prints:

  {"model": "runs/toy-bahdanau/best.pt", "bleu": 92.1, "chrf": 95.0,
   "sentences": 500,
   "buckets": [{"min": 1, "max": 10, "label": "1-10", "sentences": 120, "bleu": 97.2},
               ...,
               {"min": 41, "max": null, "label": "41+", "sentences": 0, "bleu": null}]}

One line per file (legend: --labels, else "model", else the file name),
BLEU of each source-length bucket; empty buckets are skipped.  This is the
picture of Bahdanau et al. (2015), Figure 2: how translation quality holds
up as sentences get longer.

Python 3 standard library only; the SVG is standalone.
"""

import argparse
import json
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from plot_metrics import (PALETTE, PlotError, Series, draw_legend, draw_panel,  # noqa: E402
                          finite, is_number, linear_axis, svg_document, text_el)


def bucket_label(bucket, where):
    label = bucket.get("label")
    if isinstance(label, str) and label:
        return label
    lo, hi = bucket.get("min"), bucket.get("max")
    if not is_number(lo):
        raise PlotError('%s: a bucket needs a "label" or a numeric "min"' % where)
    if hi is None:
        return "%g+" % lo
    if not is_number(hi):
        raise PlotError('%s: "max" must be a number or null, got %s' % (where, json.dumps(hi)))
    return "%g-%g" % (lo, hi)


def read_eval(path):
    """Returns (model, bleu, [bucket dicts with 'label', 'order', 'sentences', 'bleu'])."""
    if not os.path.isfile(path):
        raise PlotError("%s: no such file" % path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise PlotError("%s: cannot read: %s" % (path, e))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise PlotError("%s:%d:%d: not valid JSON: %s" % (path, e.lineno, e.colno, e.msg))
    if not isinstance(data, dict):
        raise PlotError("%s: expected a JSON object (the output of `s2s evaluate --json`)"
                        % path)
    buckets = data.get("buckets")
    if not isinstance(buckets, list):
        raise PlotError('%s: no "buckets" list; was it written by `s2s evaluate --json`?'
                        % path)
    model = data.get("model")
    overall = data.get("bleu")
    rows = []
    for k, bucket in enumerate(buckets):
        where = "%s: buckets[%d]" % (path, k)
        if not isinstance(bucket, dict):
            raise PlotError("%s: expected an object" % where)
        label = bucket_label(bucket, where)
        bleu = bucket.get("bleu")
        if bleu is not None and not is_number(bleu):
            raise PlotError('%s: "bleu" must be a number or null, got %s'
                            % (where, json.dumps(bleu)))
        sentences = bucket.get("sentences")
        if sentences is not None and not is_number(sentences):
            raise PlotError('%s: "sentences" must be a number, got %s'
                            % (where, json.dumps(sentences)))
        lo, hi = bucket.get("min"), bucket.get("max")
        order = (lo if is_number(lo) else math.inf, hi if is_number(hi) else math.inf)
        rows.append({"label": label, "order": order, "sentences": sentences, "bleu": bleu})
    return (model if isinstance(model, str) and model else None,
            overall if finite(overall) else None, rows)


def is_empty(bucket):
    return not finite(bucket["bleu"]) or bucket["sentences"] == 0


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Plot BLEU by source-length bucket from `s2s evaluate --json` output.")
    parser.add_argument("files", nargs="+", metavar="EVAL.json")
    parser.add_argument("-o", "--output", required=True, metavar="OUT.svg")
    parser.add_argument("--labels", help="comma-separated legend names, one per file")
    parser.add_argument("--title", default="BLEU by source sentence length")
    args = parser.parse_args(argv)

    labels = None
    if args.labels is not None:
        labels = [name.strip() for name in args.labels.split(",")]
        if len(labels) != len(args.files):
            parser.error("--labels has %d names for %d files" % (len(labels), len(args.files)))

    try:
        evals = [read_eval(path) for path in args.files]

        # The x axis: every bucket that is non-empty in at least one file,
        # ordered by its lengths (then by first appearance).
        categories = {}
        for _, _, rows in evals:
            for row in rows:
                if row["label"] not in categories:
                    categories[row["label"]] = (row["order"], len(categories))
        used = {row["label"] for _, _, rows in evals for row in rows if not is_empty(row)}
        order = sorted((key for key in categories if key in used), key=categories.get)
        position = {label: k for k, label in enumerate(order)}

        # Sentence counts under the tick labels when all files agree on them.
        counts = {}
        for _, _, rows in evals:
            for row in rows:
                if row["label"] in position and is_number(row["sentences"]):
                    counts.setdefault(row["label"], set()).add(row["sentences"])
        ticks = []
        for label in order:
            n = counts.get(label, set())
            ticks.append((position[label],
                          label + ("\nn=%g" % next(iter(n)) if len(n) == 1 else "")))

        series = []
        names = []
        for k, (path, (model, overall, rows)) in enumerate(zip(args.files, evals)):
            name = labels[k] if labels else (model or os.path.basename(path))
            names.append(name if overall is None else "%s (BLEU %.1f)" % (name, overall))
            points, tips = [], []
            for row in rows:
                if is_empty(row) or row["label"] not in position:
                    continue
                points.append((position[row["label"]], row["bleu"]))
                n = row["sentences"]
                tips.append("%s: length %s, BLEU %.2f%s"
                            % (name, row["label"], row["bleu"],
                               " (%g sentences)" % n if is_number(n) else ""))
            points.sort()
            series.append(Series(name, PALETTE[k % len(PALETTE)], points, markers=True,
                                 point_titles=tips))

        ys = [y for s in series for _, y in s.points]
        y_axis = linear_axis(0.0, max(ys) if ys else 1.0, target=5, include_zero=True)
        x_axis = (-0.5, max(len(order), 1) - 0.5, ticks)

        margin = 16
        panel_w = max(520, 80 * len(order) + 90)
        panel_h = 380
        width = panel_w + 2 * margin
        body = [text_el(margin, margin + 16, args.title, size=16, weight="bold")]
        legend, legend_h = draw_legend(margin, margin + 28, width - 2 * margin,
                                       [(s.colour, n) for s, n in zip(series, names)])
        body += legend
        top = margin + 28 + legend_h + 8
        body += draw_panel(margin, top, panel_w, panel_h, "", "source sentence length (words)",
                           "BLEU", series, x_axis, y_axis)
        height = top + panel_h + margin
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(svg_document(width, height, body, args.title))
    except PlotError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
