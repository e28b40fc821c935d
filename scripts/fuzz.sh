#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan+UBSan) and runs each for SECONDS (default 60) on its
# corpus in fuzz/corpus/<target>/, which grows as new inputs are found. Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
CC=clang CXX=clang++ cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBAICHUAN_FUZZ=ON \
  -DBAICHUAN_TESTS=OFF >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
ninja -C build-fuzz "${targets[@]}"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t for ${seconds}s"
  "build-fuzz/bin/$t" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 "fuzz/corpus/$t"
done
