#!/usr/bin/env bash
# The tests again under sanitizers, each in its own build directory:
#   AddressSanitizer + UndefinedBehaviorSanitizer: every test (ctest) but the mpirun ones (Open
#   MPI's own allocations at exit read as leaks; the distributed code runs there in the threaded
#   tests), in build-asan/;
#   ThreadSanitizer: the threaded loader tests (ctest label "threaded"), in build-tsan/.
# Any report fails the run (UBSan does not recover; ASan and TSan halt on the first error).
set -euo pipefail
cd "$(dirname "$0")/.."

jobs=$(nproc)
start=$SECONDS

echo "== every test under AddressSanitizer + UndefinedBehaviorSanitizer"
# -O1 and line tables only: what ASan recommends, and it builds much faster than -O2 -g on CI's two
# cores. Without NDEBUG, with libstdc++'s assertions (bounds checks in operator[], front(), ...).
asan_flags="-O1 -g1 -D_GLIBCXX_ASSERTIONS -fsanitize=address,undefined"
asan_flags+=" -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Sanitize -DSTLOAD_BUILD_PYTHON=OFF -DSTLOAD_BUILD_FUZZERS=OFF -DSTLOAD_BUILD_BENCHMARKS=OFF -DSTLOAD_WERROR=ON \
  -DCMAKE_CXX_FLAGS="$asan_flags" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  >/dev/null
cmake --build build-asan -j "$jobs" --target tests/all
built=$SECONDS
ASAN_OPTIONS="abort_on_error=1:detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  ctest --test-dir build-asan --output-on-failure -j "$jobs" -LE mpi
echo "-- ASan+UBSan: build $((built - start)) s, tests $((SECONDS - built)) s"

echo "== threaded tests under ThreadSanitizer"
tsan_start=$SECONDS
cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSTLOAD_BUILD_PYTHON=OFF -DSTLOAD_BUILD_FUZZERS=OFF -DSTLOAD_BUILD_BENCHMARKS=OFF -DSTLOAD_WERROR=ON \
  -DCMAKE_CXX_FLAGS="-fsanitize=thread" -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=thread" >/dev/null
cmake --build build-tsan -j "$jobs" --target stload_loader_tests stload_hardening_tests
TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" \
  ctest --test-dir build-tsan -L threaded --output-on-failure -j "$jobs"
echo "-- TSan: $((SECONDS - tsan_start)) s"
