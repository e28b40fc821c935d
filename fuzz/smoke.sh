#!/bin/sh
# One fuzz target's CTest smoke run: smoke.sh OUT CORPUS TARGET [libFuzzer options...]. OUT is emptied
# and receives the inputs found, so the committed CORPUS is only read.
set -e
out=$1
corpus=$2
shift 2
rm -rf "$out"
mkdir -p "$out"
exec "$@" "$out" "$corpus"
