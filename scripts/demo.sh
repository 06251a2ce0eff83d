#!/usr/bin/env bash
# Installs what is missing, builds, writes a demo checkpoint and runs stload on it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
stload=${STLOAD_BUILD_DIR:-build}/tools/stload
demo=${STLOAD_DEMO_DIR:-demo-checkpoint}
"$stload" make-checkpoint "$demo" --preset llama --total 512MiB --shards 4 --force
echo "== stload inspect (last lines)"
"$stload" inspect "$demo" | tail -n 4
echo "== stload load, 2 threads"
"$stload" load "$demo" --threads 2
echo "== stload hash (first lines)"
"$stload" hash "$demo" --threads 2 > "$demo.sha256"
head -n 5 "$demo.sha256"
echo "... $(wc -l < "$demo.sha256") tensors hashed into $demo.sha256"
