#!/usr/bin/env bash
# The test suite under AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer: out-of-bounds reads
# and writes, use after free, leaks, signed overflow, invalid shifts and casts in s2s's own code (the
# CPU kernels, the search, the CLI). Any report ends the process that made it with an error, so its test
# fails. Builds into build-sanitize/ (RelWithDebInfo; on 2 cores about 25 minutes, three times the normal
# build), then runs ctest there; arguments go to ctest (e.g. -R Kernels).
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-sanitize}
BUILD_DIR="$BUILD_DIR" BUILD_TYPE=RelWithDebInfo CMAKE_ARGS="-DS2S_SANITIZE=ON" scripts/setup.sh
export OMP_NUM_THREADS=1
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$(nproc)" "$@"
