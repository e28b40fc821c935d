#!/usr/bin/env bash
# The Python module baichuan_cpp: builds it with Debian's Python, runs python/tests with pytest, then
# checks that `pip install .` works offline in a venv (reusing the same CMake build directory).
#   scripts/test_python.sh [BUILD_DIR]     (default: build-python; JOBS=2 build jobs)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build=$(realpath -m "${1:-$repo/build-python}")
python=/usr/bin/python3  # the module is built for this interpreter; `python3` on PATH may be another
jobs=${JOBS:-2}
export PYTHONDONTWRITEBYTECODE=1  # keep the source tree clean

if [ -f "$build/CMakeCache.txt" ]; then  # an existing build (the test suite's) keeps its settings
  cmake -S "$repo" -B "$build" -DBAICHUAN_PYTHON=ON -DPython_EXECUTABLE="$python" >/dev/null
else
  cmake -S "$repo" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DBAICHUAN_PYTHON=ON \
    -DBAICHUAN_TESTS=OFF -DBAICHUAN_BENCH=OFF -DPython_EXECUTABLE="$python" >/dev/null
fi
cmake --build "$build" --target baichuan_python -j "$jobs"
if [ "${BAICHUAN_PYTEST:-1}" != 0 ]; then  # scripts/test.sh ran them in CTest already
  PYTHONPATH="$build/python" "$python" -m pytest -q -p no:cacheprovider "$repo/python/tests"
fi

echo "== pip install . in a venv"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$python" -m venv --system-site-packages "$tmp/venv"
(cd "$repo" && BAICHUAN_CMAKE_BUILD_DIR="$build" CMAKE_BUILD_PARALLEL_LEVEL="$jobs" \
  "$tmp/venv/bin/pip" install -q --no-build-isolation --no-index .)
# From another directory, so that the installed package is the one imported.
(cd "$tmp" && "$tmp/venv/bin/python" - "$repo/../shared/reference/b2-7b-tiny" <<'PY'
import os, sys
import baichuan_cpp
assert baichuan_cpp.__file__.startswith(sys.prefix), baichuan_cpp.__file__
tiny = sys.argv[1]
if os.path.isdir(tiny):
    pipe = baichuan_cpp.pipeline(task="text_generation", model=tiny, threads=1)
    out = pipe("<reserved_106>你是谁?<reserved_107>", do_sample=False, max_new_tokens=4)
    assert out[0]["generated_text"].startswith("<reserved_106>"), out
print("installed baichuan_cpp", baichuan_cpp.__version__, "from", os.path.dirname(baichuan_cpp.__file__))
PY
)
