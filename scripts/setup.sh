#!/usr/bin/env bash
# Installs what s2s needs from Debian's packages (only what is missing) and builds it into build/.
# Idempotent: a second run installs nothing and rebuilds only what changed.
#   scripts/setup.sh            install + build
#   BUILD_DIR=... BUILD_TYPE=Debug scripts/setup.sh
#   CMAKE_ARGS="-DS2S_SANITIZE=ON" ...   further cmake options, used when BUILD_DIR is configured
set -euo pipefail
cd "$(dirname "$0")/.."

# Why each package is here:
#   libtorch-dev          LibTorch (tensors, autograd, optimisers, serialisation)
#   libopenblas0-pthread  fast BLAS behind LibTorch's matrix products (the default reference BLAS is ~15x slower)
#   libcli11-dev          command line;  libspdlog-dev: logging;  nlohmann-json3-dev: configs and checkpoints' metadata
#   libsentencepiece-dev  subword tokenisation;  libicu-dev: Unicode categories for sacreBLEU's intl tokenizer
#   libgtest-dev          the test suite;  libgloo-dev: c10d's Gloo backend for multi-process training
#   libsleef-dev          vectorised tanh for the fused attention step (the SLEEF LibTorch itself uses)
#   cmake ninja-build g++ the build;  python3: the data and plotting scripts
PACKAGES=(libtorch-dev libopenblas0-pthread libcli11-dev libspdlog-dev nlohmann-json3-dev libsentencepiece-dev
          libicu-dev libgtest-dev libgloo-dev libsleef-dev cmake ninja-build g++ python3)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing: ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "[setup] all packages present"
fi

BUILD_DIR=${BUILD_DIR:-build}
BUILD_TYPE=${BUILD_TYPE:-Release}
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
EXTRA_ARGS=()
[ -n "${CMAKE_ARGS:-}" ] && read -r -a EXTRA_ARGS <<< "$CMAKE_ARGS"
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" "${EXTRA_ARGS[@]}"
fi
cmake --build "$BUILD_DIR" -j "$(nproc)"
echo "[setup] built $BUILD_DIR/s2s"
