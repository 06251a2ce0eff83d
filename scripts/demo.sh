#!/usr/bin/env bash
# Installs what is missing, builds, writes a demo checkpoint and runs stload on it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
stload=${STLOAD_BUILD_DIR:-build}/tools/stload
demo=${STLOAD_DEMO_DIR:-demo-checkpoint}
"$stload" make-checkpoint "$demo" --preset llama --total 512MiB --shards 4 --force
"$stload" inspect "$demo" | tail -n 4
"$stload" hash "$demo" --threads 2 | head -n 5
echo "... ($("$stload" hash "$demo" | wc -l) tensors hashed)"
