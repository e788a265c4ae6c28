#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite with ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
# One LibTorch thread per test process: ctest runs tests side by side on the cores.
export OMP_NUM_THREADS=1
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" "$@"
