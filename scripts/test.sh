#!/usr/bin/env bash
# The test suite.
#   scripts/test.sh          everything (what CI runs): installs what is missing, builds (Release, with
#                            the Python module) and runs every test with CTest (GoogleTest, the Node.js
#                            client and browser tests of the server, pytest), an offline `pip install .`;
#                            then builds the library, its unit tests and the libFuzzer targets with
#                            AddressSanitizer + UndefinedBehaviorSanitizer (clang) and runs them again,
#                            with a short smoke run of every fuzz target.
#   scripts/test.sh --quick  the edit-compile-test loop: the Release tree, unit and golden tests only
#                            (`ctest -L 'unit|golden' -LE 'cli|slow'`), no CLI, Python or sanitizers.
# Labels (tests/labels.cmake): unit golden cli server slow node python fuzz; e.g. `ctest -L server`.
# Compilers run through ccache when it is installed (scripts/setup.sh installs it): a second clone at
# the same path rebuilds from the cache.
set -euo pipefail
cd "$(dirname "$0")/.."
quick=0
case "${1:-}" in
  --quick) quick=1 ;;
  "") ;;
  *) echo "usage: scripts/test.sh [--quick]" >&2; exit 2 ;;
esac
[ "$quick" = 1 ] || bash scripts/setup.sh
jobs=$(nproc)
python=/usr/bin/python3  # Debian's: the module is built for it (`python3` on PATH may be another)
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  export CCACHE_BASEDIR="$PWD"  # paths inside the clone hash relative to it
fi

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBAICHUAN_PYTHON=ON -DPython_EXECUTABLE=$python \
  "${launcher[@]}" >/dev/null
if [ "$quick" = 1 ]; then
  ninja -C build -j"$jobs" baichuan_tests
  (cd build && ctest --output-on-failure -j"$jobs" --timeout 600 -L 'unit|golden' -LE 'cli|slow')
  exit 0
fi
ninja -C build -j"$jobs"
# The tokenizer is checked against SentencePiece on every line of the corpus here (a sample under ASan).
(cd build && BAICHUAN_TOKENIZER_ALL_LINES=1 ctest --output-on-failure -j"$jobs" --timeout 900)

# Python: pytest ran in CTest (python_tests); here `pip install .` into a fresh venv reusing the build.
BAICHUAN_PYTEST=0 bash scripts/test_python.sh build

# Sanitizers: the unit tests under AddressSanitizer + UndefinedBehaviorSanitizer, built with clang and
# instrumented for libFuzzer too, so the same build holds the fuzz targets and CTest smoke-runs each
# of them (fuzz_smoke.*: the committed corpus, then a fixed number of mutations). The CLI is not built
# there: its end-to-end tests (label cli) ran above.
cmake -S . -B build-asan -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g1" \
  -DBAICHUAN_SANITIZE=ON -DBAICHUAN_FUZZ=ON -DBAICHUAN_BENCH=OFF "${launcher[@]}" >/dev/null
ninja -C build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure -j"$jobs" --timeout 1800)
