#!/usr/bin/env bash
# The tests again under sanitizers, each in its own build directory:
#   ThreadSanitizer: the threaded loader tests (ctest label "threaded"), in build-tsan/.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== threaded tests under ThreadSanitizer"
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTLOAD_PYTHON=OFF \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build build-tsan -j "$(nproc)" --target stload_loader_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan -L threaded --output-on-failure -j "$(nproc)"
