#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/) with clang into build-fuzz/, writes the seed corpus
# (scripts/make-fuzz-corpus.py) and runs each target for SECONDS seconds (default 60), one after
# the other. Fails if any target finds a crash: an oracle failure, a sanitizer report (ASan,
# UBSan), a leak, a timeout or running out of memory. The input that did it is kept in
# build-fuzz/artifacts/<target>/ (replay: build-fuzz/fuzz/fuzz_<target> <file>), the log in
# build-fuzz/fuzz-logs/<target>.log. Prints executions per second for each target.
#
#   scripts/run-fuzzers.sh [SECONDS] [TARGET...]     TARGET: header, index, load, load_memory
#                                                   (default: all)
#
# New interesting inputs accumulate in build-fuzz/fuzz-corpus/<target>/ and are reused by the
# next run; the seeds are regenerated every time.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
[ $# -gt 0 ] && shift
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(header index load load_memory)
build_dir=${STLOAD_FUZZ_BUILD_DIR:-build-fuzz}

# A clang build that already has the fuzzers (CI's build-clang/) is used as it is; otherwise
# build-fuzz/ is configured for them alone. Warnings are not errors there: a new clang warning
# must not hide what the fuzzers find.
if ! grep -qs '^STLOAD_BUILD_FUZZERS:BOOL=ON' "$build_dir/CMakeCache.txt" ||
   ! cat "$build_dir"/CMakeFiles/*/CMakeCXXCompiler.cmake 2>/dev/null | grep -q 'CMAKE_CXX_COMPILER_ID "Clang"'; then
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_COMPILER=clang++ -DSTLOAD_BUILD_FUZZERS=ON -DSTLOAD_BUILD_PYTHON=OFF \
    -DSTLOAD_BUILD_TESTS=OFF -DSTLOAD_BUILD_BENCHMARKS=OFF -DSTLOAD_WERROR=OFF >/dev/null
fi
fuzz_targets=()
for t in "${targets[@]}"; do fuzz_targets+=("fuzz_$t"); done
cmake --build "$build_dir" -j "$(nproc)" --target "${fuzz_targets[@]}"

rm -rf "$build_dir/fuzz-seeds"
python3 scripts/make-fuzz-corpus.py "$build_dir/fuzz-seeds"

declare -A dict=([header]=fuzz/safetensors.dict [load]=fuzz/safetensors.dict
                 [load_memory]=fuzz/safetensors.dict [index]=fuzz/index.dict)
declare -A max_len=([header]=65536 [load]=65536 [load_memory]=65536 [index]=16384)
# fuzz_load_memory takes fuzz_load's inputs, so it starts from its seeds.
declare -A seeds=([header]=header [load]=load [load_memory]=load [index]=index)

failed=()
summary=()
for t in "${targets[@]}"; do
  corpus="$build_dir/fuzz-corpus/$t"
  artifacts="$build_dir/artifacts/$t"
  log="$build_dir/fuzz-logs/$t.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  echo "== fuzz_$t for ${seconds}s"
  rc=0
  "$build_dir/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 \
    -max_len="${max_len[$t]}" -dict="${dict[$t]}" -artifact_prefix="$artifacts/" \
    -print_final_stats=1 "$corpus" "$build_dir/fuzz-seeds/${seeds[$t]}" >"$log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
  line=$(printf 'fuzz_%-11s %8s runs %7s exec/s  cov %6s  corpus %5s files' "$t" "${runs:-?}" \
    "${rate:-?}" "${cov:-?}" "$(find "$corpus" -type f | wc -l)")
  # fuzz_load and fuzz_load_memory say at exit how many inputs were valid checkpoints loaded.
  loaded=$(sed -n 's/^fuzz_load[a-z_]*: \([0-9]*\) inputs, \([0-9]*\) valid.*/\2/p' "$log" | tail -n 1)
  [ -n "$loaded" ] && line+="  loaded $loaded"
  if [ "$rc" -ne 0 ]; then
    failed+=("$t")
    line+="  FAILED (exit $rc)"
    echo "-- fuzz_$t failed; end of $log:"
    tail -n 60 "$log"
    echo "-- input(s): $(ls "$artifacts" | tr '\n' ' ')"
  fi
  echo "$line"
  summary+=("$line")
done

echo "== fuzzing summary (${seconds}s each)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzzers that found a crash: ${failed[*]}" >&2
  exit 1
fi
