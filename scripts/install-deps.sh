#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages stload needs to build and test, and only those
# that are missing. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  g++ cmake ninja-build pkg-config
  libsimdjson-dev nlohmann-json3-dev libssl-dev libcli11-dev liburing-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-dev python3-venv pybind11-dev python3-numpy python3-pytest python3-matplotlib
  python3-torch
  libopenmpi-dev openmpi-bin
  clang libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
