#!/usr/bin/env bash
# Configures and builds baichuan.cpp in build/ (Release). Arguments name ninja targets (default: all).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build "$@"
