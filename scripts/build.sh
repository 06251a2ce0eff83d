#!/usr/bin/env bash
# Configures and builds stload into build/ (or $STLOAD_BUILD_DIR): Release, warnings as errors
# (the project's own scripts and CI turn STLOAD_WERROR on; it is off for everyone else). Extra
# arguments go to cmake, e.g. -DCMAKE_CXX_COMPILER=clang++ or -DCMAKE_BUILD_TYPE=Debug.
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${STLOAD_BUILD_DIR:-build}
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTLOAD_WERROR=ON "$@" >/dev/null
cmake --build "$build_dir" -j "$(nproc)"
