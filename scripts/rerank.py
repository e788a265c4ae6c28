#!/usr/bin/env python3
"""Rerank n-best lists with features from other models (standard library only).

The n-best lists come from `s2s translate --format json --n-best K` (one JSON object per source line; its
"nbest" list, or the single output when K is 1). Each feature is a file with one number per hypothesis, in
the order the lists give them (line by line, best first), e.g. from `s2s score`:

    build/s2s translate -c fwd.pt --beam 5 --n-best 5 --length-penalty 0 --format json -i val.de > val.nbest
    scripts/rerank.py val.nbest --flatten val.nbest.de val.nbest.en     # the pairs, one per hypothesis
    build/s2s score -c bwd.pt --src val.nbest.en --tgt val.nbest.de > val.bwd   # log p(source | hypothesis)
    scripts/rerank.py val.nbest --feature bwd=val.bwd --ref val.en           # search the weights on val
    scripts/rerank.py test.nbest --feature bwd=test.bwd --weight bwd=0.4 --weight length=0.2 > test.hyp

A hypothesis's reranking score is  search score + sum_f weight_f * feature_f + weight_length * tokens, where
"search score" is the n-best list's own score and tokens the hypothesis's output tokens. With --ref the
weights are chosen by a grid search for the highest corpus BLEU (`s2s bleu`, sacreBLEU's defaults) and
printed; tune on a validation set, then apply the weights to the test set.
"""
import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile


def read_nbest(path):
    """[(source, [(output, output_tokens, score), ...]), ...]"""
    lists = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            try:
                j = json.loads(line)
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{number}: not a JSON line of `s2s translate --format json` ({e})")
            entries = j.get("nbest") or [j]
            lists.append((j["source"], [(e["output"], e["output_tokens"], e["score"]) for e in entries]))
    return lists


def read_feature(spec, count):
    name, _, path = spec.partition("=")
    if not name or not path:
        sys.exit(f"--feature {spec}: write NAME=FILE")
    with open(path, encoding="utf-8") as f:
        values = []
        for number, line in enumerate(f, 1):
            try:
                values.append(float(line.split()[0]))
            except (ValueError, IndexError):
                sys.exit(f"{path}:{number}: not a number: {line.strip()!r}")
    if len(values) != count:
        sys.exit(f"{path}: {len(values)} lines, but the n-best lists hold {count} hypotheses")
    return name, values


def choose(lists, features, weights):
    """The best hypothesis of each list under the weights."""
    out, k = [], 0
    for _, hyps in lists:
        best, best_score = "", None
        for output, tokens, score in hyps:
            total = score + weights.get("length", 0.0) * len(tokens)
            total += sum(weights.get(name, 0.0) * values[k] for name, values in features)
            k += 1
            if best_score is None or total > best_score:
                best, best_score = output, total
        out.append(best)
    return out


def bleu(s2s, hyps, ref):
    with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".hyp", delete=False) as f:
        f.write("".join(h + "\n" for h in hyps))
    try:
        r = subprocess.run([s2s, "bleu", "--hyp", f.name, "--ref", ref, "--json"], capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"{s2s} bleu failed: {r.stderr.strip()}")
        return json.loads(r.stdout)["score"]
    finally:
        os.unlink(f.name)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("nbest", help="output of s2s translate --format json --n-best K")
    p.add_argument("--flatten", nargs=2, metavar=("SRC", "HYP"),
                   help="write each hypothesis's source and output, one pair per line, and stop")
    p.add_argument("--feature", action="append", default=[], metavar="NAME=FILE",
                   help="one number per hypothesis (repeatable)")
    p.add_argument("--weight", action="append", default=[], metavar="NAME=W",
                   help="a feature's weight, or length=W for the output length (default 0)")
    p.add_argument("--ref", help="references: search the weights for the best BLEU and print them")
    p.add_argument("--grid", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.8,1.0",
                   help="the weights tried for each feature with --ref (comma-separated)")
    p.add_argument("--length-grid", default="-0.5,-0.2,0,0.2,0.5,1.0",
                   help="the length weights tried with --ref (a list that starts with a minus: --length-grid=-1,0)")
    p.add_argument("--s2s", default=os.path.join(os.path.dirname(__file__), "..", "build", "s2s"),
                   help="the s2s program (for BLEU with --ref)")
    a = p.parse_args()

    lists = read_nbest(a.nbest)
    if a.flatten:
        with open(a.flatten[0], "w", encoding="utf-8") as src, open(a.flatten[1], "w", encoding="utf-8") as hyp:
            for source, hyps in lists:
                for output, _, _ in hyps:
                    src.write(source + "\n")
                    hyp.write(output + "\n")
        return
    count = sum(len(h) for _, h in lists)
    features = [read_feature(spec, count) for spec in a.feature]
    weights = {}
    for spec in a.weight:
        name, _, value = spec.partition("=")
        try:
            weights[name] = float(value)
        except ValueError:
            sys.exit(f"--weight {spec}: write NAME=NUMBER")
        if name != "length" and name not in {n for n, _ in features}:
            sys.exit(f"--weight {spec}: no --feature {name}")

    if a.ref:
        grid = [float(x) for x in a.grid.split(",")]
        length_grid = [float(x) for x in a.length_grid.split(",")]
        baseline = bleu(a.s2s, choose(lists, features, {}), a.ref)
        best = (baseline, {})
        for values in itertools.product(*([grid] * len(features) + [length_grid])):
            w = {name: v for (name, _), v in zip(features, values)}
            w["length"] = values[-1]
            score = bleu(a.s2s, choose(lists, features, w), a.ref)
            if score > best[0]:
                best = (score, w)
        print(f"BLEU with the search's scores alone: {baseline:.2f}")
        print(f"best BLEU {best[0]:.2f} with " + (" ".join(f"--weight {n}={v:g}" for n, v in best[1].items()) or "no weights"))
        return
    for line in choose(lists, features, weights):
        print(line)


if __name__ == "__main__":
    main()
