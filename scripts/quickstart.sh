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
  echo "error: $demo is missing (it is part of the repository; scripts/train_demo.sh trains it again)" >&2
  exit 1
fi
build/bin/baichuan generate -m "$demo" -p "<reserved_106>寫一首題為《春曉》的詩<reserved_107>" -n 96 --greedy
