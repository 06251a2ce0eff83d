#!/usr/bin/env bash
# The consumer test: stload used as a library by a program outside its sources, three ways.
#   1. find_package(stload): stload built alone (Release, tools/tests/Python off), installed into a
#      temporary prefix, static and shared (BUILD_SHARED_LIBS); the consumer finds it there.
#   2. pkg-config: the same installs, the consumer compiled by hand with `pkg-config --cflags
#      --libs stload` (--static for the static one).
#   3. add_subdirectory: stload's sources inside the consumer's build.
# Each consumer is built in Release with -Werror on its own code, and run. A library-only build
# must not look for what only the tools and tests use (CLI11, OpenSSL, nlohmann-json, GoogleTest).
#   tests/consumer/run.sh            CXX=clang++ tests/consumer/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source_dir=$(cd "$here/../.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/stload-consumer-test.XXXXXX")
trap 'rm -rf "$work"' EXIT
jobs=$(nproc)
cxx=${CXX:-c++}
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)

step() { echo "-- consumer test: $*"; }
quiet() {  # runs a command, showing its output only if it fails
  local log="$work/last.log"
  if ! "$@" >"$log" 2>&1; then cat "$log"; echo "consumer test failed: $*" >&2; exit 1; fi
}
run_consumer() {  # runs a built consumer and checks its last line
  local out
  out=$("$@") || { echo "$out"; echo "consumer test failed: $1 exited non-zero" >&2; exit 1; }
  [ "$out" = "consumer: ok" ] || { echo "$out"; echo "consumer test: unexpected output" >&2; exit 1; }
}

for kind in static shared; do
  shared=OFF
  [ "$kind" = shared ] && shared=ON
  prefix="$work/prefix-$kind"
  step "stload alone, $kind, installed into a temporary prefix"
  quiet cmake -S "$source_dir" -B "$work/stload-$kind" "${generator[@]}" \
    -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS="$shared" \
    -DSTLOAD_BUILD_TOOLS=OFF -DSTLOAD_BUILD_TESTS=OFF -DSTLOAD_BUILD_BENCHMARKS=OFF \
    -DSTLOAD_BUILD_PYTHON=OFF -DSTLOAD_BUILD_FUZZERS=OFF -DSTLOAD_WERROR=ON \
    -DCMAKE_INSTALL_PREFIX="$prefix"
  for unwanted in CLI11_DIR nlohmann_json_DIR GTest_DIR OPENSSL_CRYPTO_LIBRARY pybind11_DIR; do
    if grep -q "^$unwanted:" "$work/stload-$kind/CMakeCache.txt"; then
      echo "consumer test failed: a library-only configure looked for $unwanted" >&2
      exit 1
    fi
  done
  quiet cmake --build "$work/stload-$kind" -j "$jobs"
  quiet cmake --install "$work/stload-$kind"
  [ -f "$prefix/include/stload/loader.h" ] || { echo "headers not installed" >&2; exit 1; }

  step "find_package(stload), $kind"
  quiet cmake -S "$here" -B "$work/find-$kind" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" \
    -DCMAKE_BUILD_TYPE=Release -DSTLOAD_CONSUMER_MODE=find_package -DCMAKE_PREFIX_PATH="$prefix"
  quiet cmake --build "$work/find-$kind"
  run_consumer "$work/find-$kind/consumer"

  step "pkg-config, $kind"
  pc_dir=$(dirname "$(find "$prefix" -name stload.pc | head -n 1)")
  static_flag=()
  [ "$kind" = static ] && static_flag=(--static)
  flags=$(PKG_CONFIG_PATH="$pc_dir" pkg-config "${static_flag[@]}" --cflags --libs stload)
  # shellcheck disable=SC2086  # the flags are words
  quiet "$cxx" -std=c++20 -O2 -Wall -Wextra -Werror "$here/consumer.cc" -o "$work/pc-$kind" $flags
  lib_dir=$(PKG_CONFIG_PATH="$pc_dir" pkg-config --variable=libdir stload)
  run_consumer env LD_LIBRARY_PATH="$lib_dir" "$work/pc-$kind"
done

step "add_subdirectory(stload)"
quiet cmake -S "$here" -B "$work/subdir" "${generator[@]}" -DCMAKE_CXX_COMPILER="$cxx" \
  -DCMAKE_BUILD_TYPE=Release -DSTLOAD_CONSUMER_MODE=add_subdirectory \
  -DSTLOAD_SOURCE_DIR="$source_dir"
if grep -q "^CLI11_DIR:" "$work/subdir/CMakeCache.txt"; then
  echo "consumer test failed: stload as a subdirectory built its tools" >&2
  exit 1
fi
quiet cmake --build "$work/subdir" -j "$jobs"
run_consumer "$work/subdir/consumer"
echo "consumer test: find_package, pkg-config (static and shared) and add_subdirectory passed"
