#!/usr/bin/env bash
# Puts Multi30k (Task 1, raw text: train, val, test2016) into data/multi30k/ for configs/multi30k_*.json.
#   scripts/get_multi30k.sh                 download from the dataset's public repository (github.com/multi30k/dataset)
#   scripts/get_multi30k.sh DIR             copy from a folder that already has train.de, val.en, ...
# The data is for non-commercial research and education; see the dataset's README for its terms.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=data/multi30k
mkdir -p "$OUT"
if [ $# -ge 1 ]; then
  for f in train val test2016; do
    for l in de en fr cs; do
      [ -f "$1/$f.$l" ] && cp "$1/$f.$l" "$OUT/"
    done
  done
else
  BASE=https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw
  fetch() { if command -v curl >/dev/null; then curl -fsSL "$1"; else wget -qO- "$1"; fi; }
  for l in de en fr cs; do
    fetch "$BASE/train.$l.gz" | gunzip -c > "$OUT/train.$l"
    fetch "$BASE/val.$l.gz" | gunzip -c > "$OUT/val.$l"
    fetch "$BASE/test_2016_flickr.$l.gz" | gunzip -c > "$OUT/test2016.$l"
  done
fi
for f in "$OUT"/train.de "$OUT"/val.de "$OUT"/test2016.de; do
  [ -s "$f" ] || { echo "error: $f is missing or empty" >&2; exit 1; }
done
wc -l "$OUT"/*.de "$OUT"/*.en | sed 's/^/  /'
echo "Multi30k is in $OUT"
