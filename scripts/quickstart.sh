#!/usr/bin/env bash
# The README's first command: install what is needed, build, and write a poem with the demo model
# (models/demo.gguf: a small Tang-poetry Baichuan 2 trained by this project with scripts/train_demo.sh;
# not Baichuan 2's weights), greedily, with the Baichuan 2 chat prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh baichuan_cli
demo=models/demo.gguf
if [ ! -f "$demo" ]; then
  # No trained demo model is shipped yet (scripts/train_demo.sh makes one): random weights of the same
  # shape, so the whole path runs, but the text is noise.
  echo "note: $demo is not shipped yet; writing one with random weights (its output is noise)." \
    "scripts/train_demo.sh trains the real one." >&2
  build/bin/baichuan init --preset tiny --type f32 -o "$demo"
fi
build/bin/baichuan generate -m "$demo" -p "<reserved_106>寫一首題為《春曉》的詩<reserved_107>" -n 96 --greedy
