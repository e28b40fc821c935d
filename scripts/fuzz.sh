#!/usr/bin/env bash
# The libFuzzer targets (fuzz/fuzz_*.cpp), built with clang + ASan + UBSan in build-fuzz/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]   long mode: runs each target for SECONDS (default 60) on its
#                                           corpus fuzz/corpus/<target>/, which grows as new inputs are
#                                           found; a crash stops with the input saved as crash-<sha1>
#   scripts/fuzz.sh --merge [TARGET...]     minimises each corpus (-merge=1): keeps only inputs that add
#                                           coverage; run it before committing a grown corpus
# scripts/test.sh builds the same targets in its sanitizer build and smoke-runs each from CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=run
seconds=60
if [ "${1:-}" = "--merge" ]; then
  mode=merge
  shift
elif [ $# -gt 0 ] && [[ "$1" =~ ^[0-9]+$ ]]; then
  seconds=$1
  shift
fi
cmake -S . -B build-fuzz -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBAICHUAN_FUZZ=ON \
  -DBAICHUAN_TESTS=OFF -DBAICHUAN_BENCH=OFF >/dev/null
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in fuzz/fuzz_*.cpp; do targets+=("$(basename "$f" .cpp)"); done
fi
ninja -C build-fuzz "${targets[@]}"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  if [ "$mode" = merge ]; then
    echo "== $t: minimising fuzz/corpus/$t"
    tmp=$(mktemp -d)
    "build-fuzz/bin/$t" -merge=1 -max_len=65536 -rss_limit_mb=4096 "$tmp" "fuzz/corpus/$t"
    rm -rf "fuzz/corpus/$t"
    mv "$tmp" "fuzz/corpus/$t"
    chmod 755 "fuzz/corpus/$t"
    echo "   $(ls "fuzz/corpus/$t" | wc -l) inputs, $(du -sh "fuzz/corpus/$t" | cut -f1)"
  else
    echo "== $t for ${seconds}s"
    "build-fuzz/bin/$t" -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=4096 -print_final_stats=1 \
      "fuzz/corpus/$t"
  fi
done
