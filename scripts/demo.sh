#!/usr/bin/env bash
# The quick start: install what is missing, build, train on the toy corpus in data/toy, translate a few
# test sentences next to their references, score the test set, and draw one attention picture.
# A second run reuses the build and the trained model (training resumes or is skipped when done).
set -euo pipefail
cd "$(dirname "$0")/.."
CONFIG=${CONFIG:-configs/toy.json}
S2S=${S2S:-build/s2s}
RUN=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['output_dir'])" "$CONFIG")
start=$(date +%s)

scripts/setup.sh
echo
echo "== training ($CONFIG -> $RUN)"
"$S2S" train --config "$CONFIG" --resume auto
trained=$(date +%s)

CKPT="$RUN/best.pt"
[ -f "$CKPT" ] || CKPT="$RUN/last.pt"
SRC=data/toy/test.src
REF=data/toy/test.tgt

echo
echo "== five test sentences (source / model / reference)"
head -n 5 "$SRC" > "$RUN/demo.src"
head -n 5 "$REF" > "$RUN/demo.ref"
"$S2S" translate -c "$CKPT" --input "$RUN/demo.src" --output "$RUN/demo.hyp" 2>/dev/null
paste -d '\n' "$RUN/demo.src" "$RUN/demo.hyp" "$RUN/demo.ref" /dev/null | \
  awk 'NR%4==1{print "  src: " $0} NR%4==2{print "  out: " $0} NR%4==3{print "  ref: " $0} NR%4==0{print ""}'

echo "== test set ($SRC, greedy)"
"$S2S" evaluate -c "$CKPT" --src "$SRC" --ref "$REF" 2>/dev/null

echo
echo "== the attention against the true word alignments of the test set (data/toy/test.align)"
"$S2S" align -c "$CKPT" --src "$SRC" --tgt "$REF" --gold data/toy/test.align 2>/dev/null

echo
echo "== attention of one long test sentence"
long=$(awk 'length($0) > 120 {print; exit}' "$SRC")
rm -rf "$RUN/attention"
"$S2S" translate -c "$CKPT" --attention-svg "$RUN/attention" "$long" 2>/dev/null
end=$(date +%s)
echo
echo "checkpoint:        $CKPT"
echo "attention picture: $RUN/attention/sentence-0001.svg (open it in a browser)"
echo "training curves:   scripts/plot_metrics.py $RUN -o $RUN/curves.svg"
echo "time: $((end - start)) s in all, $((trained - start)) s for set-up and training"
