#!/usr/bin/env bash
# Puts the Tatoeba English-French pairs (manythings.org's fra-eng file) into data/tatoeba/ as
# train.tsv, valid.tsv and test.tsv (English<TAB>French) for configs/tatoeba_en_fr.json.
#   scripts/get_tatoeba.sh          download https://www.manythings.org/anki/fra-eng.zip
#   scripts/get_tatoeba.sh DIR      use a folder that already has the file (fra-eng*.txt or fra.txt)
# The split is deterministic and keeps every English sentence in one part: a sentence goes to test when
# the MD5 of its English side is 0 modulo 100, to valid when it is 1, else to train (about 1% each).
# Columns after the second (the attribution) are dropped. The sentences are Tatoeba's, CC-BY 2.0 FR;
# see https://tatoeba.org and the about file that comes with the download.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=data/tatoeba
mkdir -p "$OUT"
if [ $# -ge 1 ]; then
  SRC=$(ls "$1"/fra-eng*.txt "$1"/fra.txt 2>/dev/null | head -n 1 || true)
  [ -n "$SRC" ] || { echo "error: no fra-eng*.txt or fra.txt in $1" >&2; exit 1; }
  cp "$SRC" "$OUT/fra-eng.txt"
else
  TMP=$(mktemp -d)
  trap 'rm -rf "$TMP"' EXIT
  URL=https://www.manythings.org/anki/fra-eng.zip
  if command -v curl >/dev/null; then curl -fsSL -A "Mozilla/5.0" -o "$TMP/fra-eng.zip" "$URL"; else wget -q -O "$TMP/fra-eng.zip" "$URL"; fi
  unzip -p "$TMP/fra-eng.zip" fra.txt > "$OUT/fra-eng.txt"
fi
[ -s "$OUT/fra-eng.txt" ] || { echo "error: $OUT/fra-eng.txt is missing or empty" >&2; exit 1; }
python3 - "$OUT" <<'PY'
import hashlib, sys
out = sys.argv[1]
parts = {name: open(f"{out}/{name}.tsv", "w", encoding="utf-8", newline="\n") for name in ("train", "valid", "test")}
with open(f"{out}/fra-eng.txt", encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) < 2:
            sys.exit(f"error: {out}/fra-eng.txt:{number}: expected English<TAB>French")
        bucket = int(hashlib.md5(cols[0].encode("utf-8")).hexdigest(), 16) % 100
        name = "test" if bucket == 0 else "valid" if bucket == 1 else "train"
        parts[name].write(cols[0] + "\t" + cols[1] + "\n")
for p in parts.values():
    p.close()
PY
wc -l "$OUT"/train.tsv "$OUT"/valid.tsv "$OUT"/test.tsv | sed 's/^/  /'
echo "Tatoeba English-French is in $OUT"
