#!/usr/bin/env bash
# Installs the Debian 12 packages baichuan.cpp needs (idempotent: installs only what is missing).
# Nothing is downloaded from anywhere but Debian's package archive.
set -euo pipefail
packages=(
  g++ cmake ninja-build ccache pkg-config clang libclang-rt-14-dev
  libsentencepiece-dev sentencepiece nlohmann-json3-dev libcli11-dev libsqlite3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libcpp-httplib-dev
  openmpi-bin libopenmpi-dev
  python3 python3-dev pybind11-dev python3-pytest python3-setuptools python3-pip python3-venv
  chromium wrk
)
# Node.js and npm run the HTTP client tests; Debian's packages only where no Node.js is installed
# (a NodeSource nodejs already carries npm and conflicts with Debian's npm package).
command -v npm >/dev/null 2>&1 || packages+=(nodejs npm)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
