#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. This is what CI runs (.ci/run).
#   1. g++, Release (-O3), warnings as errors: the full suite (ctest) in build/;
#   1b. Hugging Face parity: safe_open/load_file against safetensors from PyPI, load_into and
#      progress with tqdm from PyPI, Debian's torch (scripts/test-parity.sh);
#   2. the consumer test: stload installed and used by a program outside it, three ways
#      (tests/consumer/run.sh);
#   3. clang, Release, warnings as errors: the full suite again, and the libFuzzer targets, in
#      build-clang/; each fuzzer then runs for 60 s (scripts/run-fuzzers.sh);
#   4. the wheel: `pip install .` into a fresh virtual environment with PyPI's numpy, and the
#      Python tests against the installed package (scripts/test-wheel.sh);
#   5. the tests again under sanitizers (scripts/test-sanitizers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
stage() { echo "== $* ($((SECONDS - start)) s so far)"; }
scripts/install-deps.sh

stage "g++ Release: build and test"
STLOAD_BUILD_DIR=build scripts/build.sh -DCMAKE_CXX_COMPILER=g++
ctest --test-dir build --output-on-failure -j "$(nproc)"

stage "Hugging Face parity (safetensors, tqdm from PyPI)"
scripts/test-parity.sh build

stage "consumer test (g++)"
CXX=g++ tests/consumer/run.sh

stage "clang Release: build and test"
STLOAD_BUILD_DIR=build-clang scripts/build.sh -DCMAKE_CXX_COMPILER=clang++
# The Python tests ran against the g++ build and run again against the wheel.
ctest --test-dir build-clang --output-on-failure -j "$(nproc)" -LE python

stage "fuzzers, 60 s each"
STLOAD_FUZZ_BUILD_DIR=build-clang scripts/run-fuzzers.sh 60

stage "wheel"
scripts/test-wheel.sh

scripts/test-sanitizers.sh
stage "all passed"
