#!/usr/bin/env bash
# Builds the wheel as a pip user would (`pip install .`: scikit-build-core and pybind11 from PyPI,
# in pip's isolated build environment) into a fresh virtual environment with PyPI's numpy, pytest
# and safetensors (which the parity tests compare against), then runs the Python tests against
# the installed package and its `stload` command (not the build tree), from outside the source
# tree so that nothing else can be imported.
#   scripts/test-wheel.sh [PYTHON]      (default: python3; any CPython >= 3.9)
set -euo pipefail
cd "$(dirname "$0")/.."
python=${1:-python3}
venv=${STLOAD_WHEEL_VENV:-build-wheel/venv}
rm -rf "$venv"
"$python" -m venv "$venv"
venv=$(cd "$venv" && pwd)
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q . pytest safetensors
"$venv/bin/python" - <<'PY'
import numpy, stload
print(f"wheel: stload {stload.__version__} from {stload.__file__}, numpy {numpy.__version__}")
PY
"$venv/bin/python" -m stload --version
tests=$(pwd)/tests/python
cd "$venv"
PATH="$venv/bin:$PATH" STLOAD_CLI="$venv/bin/stload" PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" -m pytest -q -ra -p no:cacheprovider "$tests"
