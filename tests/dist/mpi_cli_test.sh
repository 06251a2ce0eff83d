#!/usr/bin/env bash
# Distributed loading under a real MPI (Open MPI's mpirun, on loopback): `stload hash
# --distributed` on 1 to 4 ranks, over shared memory and over TCP, prints for every rank exactly
# what a single-process `stload hash` of that rank prints, for full and rank-aware loads, every
# order and O_DIRECT; ranks with different options or files fail together naming the cause; a
# rank that never comes or is killed ends the job with an error in bounded time, never a hang.
# Usage: mpi_cli_test.sh STLOAD MPIRUN
set -euo pipefail
stload=$1
mpirun=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
run() { timeout 120 "$mpirun" --allow-run-as-root --oversubscribe --quiet "$@"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

"$stload" make-checkpoint "$work/llama" --preset llama --total 24MiB --shards 3 > /dev/null
"$stload" make-checkpoint "$work/ds" --preset deepseek --total 20MiB --shards 2 > /dev/null
"$stload" make-checkpoint "$work/other" --preset llama --total 24MiB --shards 3 --seed 5 > /dev/null

# Each rank's lines from --output-dir against a single-process hash with that rank's flags.
# check NAME NP "MPI FLAGS" "HASH FLAGS" "RANK FLAGS OF RANK r, with r substituted"
check() {
  local name=$1 np=$2 mpi=$3 flags=$4 ranks=$5 ckpt=${6:-$work/llama}
  rm -rf "$work/out"
  # shellcheck disable=SC2086
  run -np "$np" $mpi "$stload" hash "$ckpt" --distributed --no-progress --output-dir "$work/out" \
      $flags 2> "$work/err" || { cat "$work/err" >&2; fail "$name: mpirun failed"; }
  grep -q "read .* from storage in all" "$work/err" || fail "$name: no summary from rank 0"
  for ((r = 0; r < np; r++)); do
    # shellcheck disable=SC2086
    "$stload" hash "$ckpt" --no-progress $flags ${ranks//@/$r} > "$work/want"
    [ -s "$work/want" ] || fail "$name: empty reference"
    cmp -s "$work/want" "$work/out/rank-$r.sha256" || fail "$name: rank $r differs"
  done
  echo "ok: $name"
}

for btl in "self,vader" "self,tcp"; do
  for np in 1 2 3 4; do
    check "full load, $np ranks, btl $btl" "$np" "--mca btl $btl" "" ""
  done
  check "tp 2, btl $btl" 2 "--mca btl $btl" "--tp-size 2 --rules llama" "--tp-rank @"
done
check "tp 4" 4 "" "--tp-size 4 --rules llama" "--tp-rank @"
for order in index file any; do
  check "order $order, 3 ranks" 3 "" "--order $order" ""
done
check "O_DIRECT, 3 ranks" 3 "" "--direct-io --threads 4" ""
# tp 2 x pp 2: rank r is tp r%2, pp r/2.
rm -rf "$work/out"
run -np 4 "$stload" hash "$work/llama" --distributed --no-progress --output-dir "$work/out" \
    --tp-size 2 --pp-size 2 --rules llama 2> /dev/null || fail "tp x pp: mpirun failed"
for r in 0 1 2 3; do
  "$stload" hash "$work/llama" --no-progress --tp-size 2 --pp-size 2 --rules llama \
      --tp-rank $((r % 2)) --pp-rank $((r / 2)) > "$work/want"
  cmp -s "$work/want" "$work/out/rank-$r.sha256" || fail "tp x pp: rank $r is not tp $((r % 2)) pp $((r / 2))"
done
echo "ok: tp x pp rank numbering"
check "deepseek tp 2 ep 2" 2 "" "--tp-size 2 --ep-size 2 --rules deepseek-v3" "--tp-rank @ --ep-rank @" "$work/ds"

# Without --output-dir, rank 0 prints every rank's lines after "# rank R of N".
run -np 2 "$stload" hash "$work/llama" --distributed --no-progress --tp-size 2 --rules llama \
    > "$work/printed" 2> /dev/null || fail "printed: mpirun failed"
{ echo "# rank 0 of 2"; "$stload" hash "$work/llama" --no-progress --tp-size 2 --tp-rank 0 --rules llama
  echo "# rank 1 of 2"; "$stload" hash "$work/llama" --no-progress --tp-size 2 --tp-rank 1 --rules llama
} | cmp -s - "$work/printed" || fail "rank 0's collected lines differ"
echo "ok: rank 0 collects"

# `load --distributed` reports per rank and a summary, for both consumers.
for consumer in prealloc stream; do
  run -np 3 "$stload" load "$work/llama" --distributed --no-progress --consumer "$consumer" \
      > "$work/load" 2>&1 || { cat "$work/load" >&2; fail "load $consumer"; }
  grep -q "^rank 2: loaded" "$work/load" || fail "load $consumer: no line of rank 2"
  grep -q "^3 ranks in .* exchanged" "$work/load" || fail "load $consumer: no summary"
done
echo "ok: load --distributed"

# --- Faults: every rank ends, with the cause, in bounded time. ---
expect_failure() {  # NAME SECONDS PATTERN mpirun-args...
  local name=$1 limit=$2 pattern=$3
  shift 3
  local start=$SECONDS
  if run "$@" > "$work/out.txt" 2> "$work/err"; then fail "$name: succeeded"; fi
  (( SECONDS - start <= limit )) || fail "$name: took $((SECONDS - start)) s"
  if [ -n "$pattern" ]; then
    [ "$(grep -c -- "$pattern" "$work/err")" -ge 2 ] || { cat "$work/err" >&2; fail "$name: not every rank said '$pattern'"; }
  fi
  echo "ok: $name"
}
expect_failure "different options" 60 "rank 1 was given different options than rank 0" \
  -np 1 "$stload" hash "$work/llama" --distributed --no-progress : \
  -np 1 "$stload" hash "$work/llama" --distributed --no-progress --extra-config '{"chunk_bytes": 65536}'
expect_failure "different checkpoint" 60 "rank 1 opened a different checkpoint than rank 0" \
  -np 1 "$stload" hash "$work/llama" --distributed --no-progress : \
  -np 1 "$stload" hash "$work/ds" --distributed --no-progress
expect_failure "a missing checkpoint on one rank" 60 "nowhere: .*no such file" \
  -np 1 "$stload" hash "$work/llama" --distributed --no-progress : \
  -np 1 "$stload" hash "$work/nowhere" --distributed --no-progress
expect_failure "a rank that never starts" 60 "" \
  -np 2 "$stload" hash "$work/llama" --distributed --no-progress --timeout 3 : -np 1 sleep 5
expect_failure "a killed rank" 60 "" \
  -np 2 "$stload" hash "$work/llama" --distributed --no-progress --timeout 5 : \
  -np 1 sh -c '"$0" hash "$1" --distributed --no-progress --timeout 5 & sleep 0.2; kill -9 $!; wait; exit 9' \
  "$stload" "$work/llama"

# Outside an MPI launcher --distributed is a usage error (exit 2).
set +e
"$stload" hash "$work/llama" --distributed > /dev/null 2> "$work/err"
rc=$?
set -e
[ "$rc" -eq 2 ] && grep -q "runs under an MPI launcher" "$work/err" || fail "outside mpirun: rc $rc"
echo "ok: usage error outside mpirun"
echo "all MPI checks passed"
