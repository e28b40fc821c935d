#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (Release) and runs every test with CTest,
# then builds the unit tests with AddressSanitizer + UndefinedBehaviorSanitizer and runs them again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
ninja -C build -j"$jobs"
# The tokenizer is checked against SentencePiece on every line of the corpus here (a sample under ASan).
(cd build && BAICHUAN_TOKENIZER_ALL_LINES=1 ctest --output-on-failure -j"$jobs" --timeout 900)

# Sanitizers: the same tests under AddressSanitizer + UndefinedBehaviorSanitizer.
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" -DBAICHUAN_SANITIZE=ON >/dev/null
ninja -C build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j"$jobs" --timeout 1800)
