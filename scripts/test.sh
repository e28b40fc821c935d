#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds (Release, with the Python module) and runs
# every test with CTest (GoogleTest, the Node.js client and browser tests of the server), the Python
# tests with pytest and an offline `pip install .`; then builds the unit tests with AddressSanitizer
# + UndefinedBehaviorSanitizer (clang, with the libFuzzer targets) and runs them again, with a short
# smoke run of every fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
jobs=$(nproc)
python=/usr/bin/python3  # Debian's: the module is built for it (`python3` on PATH may be another)

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBAICHUAN_PYTHON=ON -DPython_EXECUTABLE=$python >/dev/null
ninja -C build -j"$jobs"
# The tokenizer is checked against SentencePiece on every line of the corpus here (a sample under ASan).
(cd build && BAICHUAN_TOKENIZER_ALL_LINES=1 ctest --output-on-failure -j"$jobs" --timeout 900)

# Python: the module from this build, then `pip install .` into a fresh venv reusing the build.
bash scripts/test_python.sh build

# Sanitizers: the same tests under AddressSanitizer + UndefinedBehaviorSanitizer, built with clang and
# instrumented for libFuzzer too, so the same build holds the fuzz targets and CTest smoke-runs each
# of them (fuzz_smoke.*: the committed corpus, then a fixed number of mutations).
cmake -S . -B build-asan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
  -DBAICHUAN_SANITIZE=ON -DBAICHUAN_FUZZ=ON -DBAICHUAN_BENCH=OFF >/dev/null
ninja -C build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j"$jobs" --timeout 1800)
