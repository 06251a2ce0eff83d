#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, writes a 512 MiB demo checkpoint
# and runs `stload bench` on it: every read mode, 1-4 threads and three consumers, warm and cold,
# against the machine's own limits measured in the same run (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
stload=${STLOAD_BUILD_DIR:-build}/tools/stload
demo=${STLOAD_DEMO_DIR:-demo-checkpoint}
"$stload" make-checkpoint "$demo" --preset llama --total 512MiB --shards 4 --force
echo "== stload inspect (last lines)"
"$stload" inspect "$demo" | tail -n 4
echo "== stload bench"
"$stload" bench "$demo" --both --threads 1,2,4 --repeat 3 \
  --json "$demo-bench.json" --chart "$demo-bench.png"
