#!/usr/bin/env bash
# Before/after: two s2s binaries measured side by side, alternating, in one run on one machine.
#   scripts/bench_compare.sh OLD_S2S NEW_S2S [ROUNDS]     (e.g. a copy of build/s2s made before a change)
# Each round runs, for each binary, `s2s bench --part train` (variant rnn+bahdanau unless VARIANTS is set)
# and `--part translate`; the summary gives the median over rounds of each figure and NEW/OLD.
# THREADS=1 compares single-threaded runs (steadier on a shared machine). The translations' output hashes show whether the two programs translate test2016 identically.
set -euo pipefail
cd "$(dirname "$0")/.."
OLD=$1 NEW=$2 ROUNDS=${3:-3}
VARIANTS=${VARIANTS:-rnn+bahdanau}
THREADS=${THREADS:-0}  # LibTorch threads of both programs (0 = all cores); BLAS threads: S2S_BLAS_THREADS
CHECKPOINT=${CHECKPOINT:-runs/multi30k_de_en/best.pt}
OUT=$(mktemp -d /tmp/s2s-compare-XXXXXX)
for r in $(seq 1 "$ROUNDS"); do
  for which in old new; do
    bin=$OLD; [ "$which" = new ] && bin=$NEW
    for v in $VARIANTS; do
      "$bin" bench --part train --variant "$v" --threads "$THREADS" --config configs/multi30k_de_en.json --output "$OUT/$which-train-$v-$r.json" 2>/dev/null
    done
    "$bin" bench --part translate --threads "$THREADS" --config configs/multi30k_de_en.json --checkpoint "$CHECKPOINT" \
      --output "$OUT/$which-translate-$r.json" 2>/dev/null
    echo "[compare] round $r $which done" >&2
  done
done
python3 - "$OUT" <<'PY'
import glob, json, os, statistics, sys
d = sys.argv[1]
def med(pattern, get):
    vals = [get(json.load(open(f))) for f in sorted(glob.glob(os.path.join(d, pattern)))]
    return statistics.median(vals), vals
rows = []
variants = sorted({os.path.basename(f).split("-")[2] for f in glob.glob(os.path.join(d, "old-train-*.json"))})
for v in variants:
    rows.append((f"train {v} tgt tok/s", f"train-{v}-*.json", lambda j: j["tgt_tokens_per_sec"]))
    rows.append((f"train {v} peak RSS MiB", f"train-{v}-*.json", lambda j: j["peak_rss_mib"]))
rows.append(("translate greedy sent/s", "translate-*.json", lambda j: j["greedy"]["sentences_per_sec"]))
rows.append(("translate beam 5 sent/s", "translate-*.json", lambda j: j["beam5"]["sentences_per_sec"]))
rows.append(("translate peak RSS MiB", "translate-*.json", lambda j: j["peak_rss_mib"]))
print(f"{'figure':34} {'old (median)':>14} {'new (median)':>14} {'new/old':>8}")
for name, pat, get in rows:
    a, av = med("old-" + pat, get)
    b, bv = med("new-" + pat, get)
    print(f"{name:34} {a:14.1f} {b:14.1f} {b / a:8.2f}   old {[round(x) for x in av]} new {[round(x) for x in bv]}")
for side in ("old", "new"):
    j = json.load(open(sorted(glob.glob(os.path.join(d, side + "-translate-*.json")))[0]))
    print(f"{side} outputs: greedy {j['greedy']['output_hash']} BLEU {j['greedy']['bleu']:.2f}, "
          f"beam 5 {j['beam5']['output_hash']} BLEU {j['beam5']['bleu']:.2f}")
print("results in", d)
PY
