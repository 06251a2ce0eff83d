#!/usr/bin/env bash
# The Python tests that compare stload with Hugging Face safetensors (the latest from PyPI), with
# Debian's torch, against the build in BUILD_DIR (default build/): a virtual environment over
# /usr/bin/python3's packages (torch, numpy, pytest from apt) with safetensors and tqdm from PyPI.
#   scripts/test-parity.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
venv=$build/parity-venv
rm -rf "$venv"
/usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/python" -m pip install -q --upgrade safetensors tqdm
"$venv/bin/python" -c 'import safetensors, torch; print(f"parity: safetensors {safetensors.__version__}, torch {torch.__version__}")'
PYTHONPATH="$build/python" STLOAD_CLI="$build/tools/stload" PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" -m pytest -q -ra -p no:cacheprovider \
  tests/python/test_safe_open.py tests/python/test_load_into.py tests/python/test_progress.py
