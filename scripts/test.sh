#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. This is what CI runs.
#   1. the full suite (ctest) in build/;
#   2. the tests again under sanitizers (scripts/test-sanitizers.sh);
#   3. each libFuzzer target for 60 s (scripts/run-fuzzers.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

echo "== build and test (RelWithDebInfo)"
scripts/build.sh
build_dir=${STLOAD_BUILD_DIR:-build}
ctest --test-dir "$build_dir" --output-on-failure -j "$(nproc)"

scripts/test-sanitizers.sh

echo "== fuzzers, 60 s each"
scripts/run-fuzzers.sh 60
