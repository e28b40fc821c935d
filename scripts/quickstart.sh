#!/usr/bin/env bash
# The README's first command: install what is needed, build, make the demo model if it is not there,
# and generate from it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh baichuan_cli
demo=models/demo.gguf
if [ ! -f "$demo" ]; then
  # Until the project ships a trained demo model: random weights, so the output is noise.
  build/bin/baichuan init --preset tiny --type f32 -o "$demo"
fi
build/bin/baichuan generate -m "$demo" -p "床前明月光，" -n 32 --seed 42
