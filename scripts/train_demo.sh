#!/usr/bin/env bash
# Trains the demo model (models/demo.gguf) from scratch with the project's own commands:
#   data        scripts/make_demo_data.py: the Tang-poem corpus, 5% of the poems held out
#   vocabulary  spm_train (Debian's sentencepiece): BPE with byte fallback, <reserved_106> / <reserved_107>
#               as user-defined pieces at Baichuan 2's ids 195 / 196
#   shape       models/config.json; `baichuan init` gives the random start
#   pre-train   `baichuan preprocess --layout text --pack`, then `baichuan finetune`
#   SFT         chat records (human 寫一首題為《TITLE》的詩 -> author + poem), `baichuan preprocess` (BELLE),
#               `baichuan finetune` from the pre-trained model: data parallel on 2 ranks with mpirun when
#               this build of finetune supports it, else one process with the same global batch
# Usage: scripts/train_demo.sh [WORK_DIR]   (default build/demo-train; the result is copied to models/demo.gguf)
# Environment: PRETRAIN_STEPS, SFT_STEPS (defaults 3000 and 1600: 82 minutes on a busy 2-core machine;
# PRETRAIN_STEPS=2 SFT_STEPS=2 DEMO_OUTPUT=/tmp/x.gguf is a quick trial of the whole flow).
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-build/demo-train}
corpus=${DEMO_CORPUS:-../shared/data/corpus/quantangshi_tang_poems.txt}
pretrain_steps=${PRETRAIN_STEPS:-3000}
sft_steps=${SFT_STEPS:-1600}
output=${DEMO_OUTPUT:-models/demo.gguf}
bin=build/bin/baichuan
run() { echo "+ $*" >&2; nice -n 10 "$@"; }
start=$(date +%s)
[ -x "$bin" ] || bash scripts/build.sh baichuan_cli
mkdir -p "$work"

# Data: 95% / 5% of the poems, by poem (every 20th held out).
run python3 scripts/make_demo_data.py "$corpus" "$work/data"

# Vocabulary. Ids 0-2 are <unk> <s> </s> as in Baichuan 2 (pad = 0 = <unk>); 3-194 are unused control
# pieces so that the chat pieces land on Baichuan 2's ids 195 / 196, which generation_config.json names.
# 8000 pieces at character coverage 0.999 (6.9k of the corpus's 9.6k characters; rarer ones fall back to
# UTF-8 bytes), so most pieces are single characters plus ~700 merges (frequent words and names).
unused=$(for i in $(seq 3 194); do printf '<unused_%d>,' "$i"; done)
run spm_train --input="$work/data/train.txt" --model_prefix="$work/tokenizer" --model_type=bpe --vocab_size=8000 \
  --character_coverage=0.999 --byte_fallback=true --split_digits=true --add_dummy_prefix=false \
  --normalization_rule_name=identity --remove_extra_whitespaces=false --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --control_symbols="${unused%,}" --user_defined_symbols='<reserved_106>,<reserved_107>' \
  --max_sentence_length=100000 --num_threads=2 --minloglevel=1 >"$work/spm_train.log" 2>&1
tok="$work/tokenizer.model"

# Random start (F32, seed 1): also the "untrained" model of the quality figure.
run $bin init --config models/config.json --tokenizer "$tok" --generation-config models/generation_config.json \
  --type f32 --seed 1 -o "$work/init.gguf"

# Pre-training: the poems as plain text (title, author, verse), packed into rows of 256.
run $bin preprocess --input "$work/data/pretrain_train.jsonl" --layout text --pack --seq-length 256 \
  --tokenizer "$tok" -o "$work/pretrain.tokens"
rm -rf "$work/pretrain"
run $bin finetune -m "$work/init.gguf" --data "$work/pretrain.tokens" -o "$work/pretrain" --max-steps "$pretrain_steps" --batch 4 --lr 2e-3 --min-lr 2e-4 \
  --warmup 20 --schedule cosine --weight-decay 0.01 --save-every 50 --seed 42

# Supervised fine-tuning on the chat records, rows of 128 (longer poems are cut).
run $bin preprocess --input "$work/data/sft_train.json" --layout belle --seq-length 128 --tokenizer "$tok" \
  -o "$work/sft.tokens"
# Global batch 8 rows: 2 ranks x 4, or 1 process x 8.
sft_args=(--data "$work/sft.tokens" -o "$work/sft" --max-steps "$sft_steps" --lr 1e-3 --min-lr 1e-4 --warmup 10
  --schedule cosine --weight-decay 0.01 --save-every 40 --seed 42 --gguf f16)
rm -rf "$work/sft"
if command -v mpirun >/dev/null && $bin --version | grep -q "data parallel under mpirun"; then
  echo "SFT: data parallel, mpirun -np 2" | tee "$work/sft_launch.txt"
  as_root=(); [ "$(id -u)" = 0 ] && as_root=(--allow-run-as-root)
  run mpirun "${as_root[@]}" -np 2 --oversubscribe $bin finetune -m "$work/pretrain/model" -t 1 --batch 4 "${sft_args[@]}"
else
  echo "SFT: one process (this build of finetune is not data parallel), global batch 8" | tee "$work/sft_launch.txt"
  run $bin finetune -m "$work/pretrain/model" --batch 8 "${sft_args[@]}"
fi

cp "$work/sft/model-f16.gguf" "$output"
end=$(date +%s)
echo "wrote $output ($(stat -c %s "$output") bytes); train_demo.sh took $(( (end - start) / 60 )) min $(( (end - start) % 60 )) s" \
  | tee "$work/wall_time.txt"
