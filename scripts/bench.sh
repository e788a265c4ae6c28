#!/usr/bin/env bash
# One command for the speed benchmark: builds s2s if needed, checks for the Multi30k data, runs
# `s2s bench` (matrix-product ceiling, training throughput of three variants and three thread layouts,
# translation speed greedy and beam 5, peak memory) and writes bench/results-<host>.json plus a table.
#   scripts/bench.sh                       # defaults: a few minutes on 2 cores
#   scripts/bench.sh --intervals 9         # any `s2s bench` option (build/s2s bench --help)
#   CHECKPOINT=runs/x/best.pt scripts/bench.sh
# Nothing else should run on the machine meanwhile: the figures are wall-clock rates.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if [ ! -x "$BUILD_DIR/s2s" ]; then
  if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
    GENERATOR=()
    command -v ninja >/dev/null && GENERATOR=(-G Ninja)
    cmake -S . -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release
  fi
  cmake --build "$BUILD_DIR" --target s2s
fi
if [ ! -f data/multi30k/train.de ] || [ ! -f data/multi30k/test2016.de ]; then
  echo "[bench] data/multi30k is missing: run scripts/get_multi30k.sh first" >&2
  exit 1
fi
CHECKPOINT=${CHECKPOINT:-runs/multi30k_de_en/best.pt}
if [ ! -f "$CHECKPOINT" ]; then
  echo "[bench] $CHECKPOINT not found: translation is timed with random weights (train configs/multi30k_de_en.json for realistic figures)" >&2
fi
exec "$BUILD_DIR/s2s" bench --config configs/multi30k_de_en.json --checkpoint "$CHECKPOINT" "$@"
