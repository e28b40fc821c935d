#!/usr/bin/env bash
# Full fine-tuning tokens/s, baichuan finetune vs the same model, batch, threads and AdamW in PyTorch
# (bench/train_torch_reference.py), side by side: rounds of ours then torch, medians, the ratio, and
# both first-step losses (the same computation: equal within 1e-4 relative).
#
#   bench/train_vs_torch.sh [-b BIN]... [-t THREADS] [-r ROUNDS] [-s STEPS] [--batch B] [--rows dense|sft] [--hidden H] [--layers L] [-w WORKDIR] [--torch-blas DIR]
#
# -b BIN may be given more than once (e.g. a build of main's code, then yours): each round runs every
# binary, then torch, and the summary has a line per binary (labelled ours, ours2, ours3...).
# Defaults: the issue's shape (hidden 512, 8 layers, 4 heads, intermediate 1376, the real 125,696
# vocabulary, sequence 512), batch 1, 3 steps per run (the first is a warm-up and not timed), 2 rounds.
# Rows: dense (default; BELLE tokens packed, every position supervised: the head's full work, the
# worst case for baichuan finetune, which computes logits only for supervised positions) or sft (the
# preprocessed records as they are: padding, labels on the answers only).
# Needs /usr/bin/python3 with Debian's python3-torch, and the BELLE sample of ../shared/data.
# torch calls the BLAS that Debian's libblas.so.3 alternative names (the reference BLAS when only
# libblas3 is installed); --torch-blas DIR puts DIR first on torch's LD_LIBRARY_PATH, e.g. the folder
# holding libblas.so.3 of an unpacked libopenblas0-pthread, to compare with an optimised BLAS.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bins=() threads=2 rounds=2 steps=3 batch=1 rows=dense hidden=512 layers=8 work=/tmp/baichuan-train-vs-torch torch_blas=
while [ $# -gt 0 ]; do
  case $1 in
    -b) bins+=("$2"); shift 2 ;;
    -t) threads=$2; shift 2 ;;
    -r) rounds=$2; shift 2 ;;
    -s) steps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --hidden) hidden=$2; shift 2 ;;
    --layers) layers=$2; shift 2 ;;
    -w) work=$2; shift 2 ;;
    --torch-blas) torch_blas=$2; shift 2 ;;
    *) echo "usage: $0 [-b BIN]... [-t THREADS] [-r ROUNDS] [-s STEPS] [--batch B] [--rows dense|sft] [--hidden H] [--layers L] [-w WORKDIR] [--torch-blas DIR]" >&2; exit 2 ;;
  esac
done
[ ${#bins[@]} -gt 0 ] || bins=("$root/build/bin/baichuan")
bin=${bins[0]}
[ "$steps" -ge 2 ] || { echo "error: -s must be at least 2 (the first step is a warm-up)" >&2; exit 2; }
py=/usr/bin/python3
$py -c 'import torch' 2>/dev/null || { echo "error: $py cannot import torch (apt-get install python3-torch)" >&2; exit 1; }
belle=$root/../shared/data/belle/belle_chat_format_oasst_zh_multiturn.json
[ -f "$belle" ] || belle=/work/shared/data/belle/belle_chat_format_oasst_zh_multiturn.json
[ -f "$belle" ] || { echo "error: the BELLE sample is missing ($belle)" >&2; exit 1; }
mkdir -p "$work"

# The model: the 7B family's shape scaled down (head size 128 as 7B; intermediate 2.6875 x hidden).
$py - "$work/config.json" "$hidden" "$layers" <<'EOF'
import json, sys
h, l = int(sys.argv[2]), int(sys.argv[3])
json.dump({"architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", "tokenizer_class": "BaichuanTokenizer",
           "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0, "hidden_act": "silu", "hidden_size": h,
           "intermediate_size": h * 43 // 16, "num_attention_heads": max(1, h // 128), "num_hidden_layers": l,
           "rms_norm_eps": 1e-6, "vocab_size": 125696, "model_max_length": 4096, "initializer_range": 0.02,
           "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True, "z_loss_weight": 0,
           "max_position_embeddings": 4096}, open(sys.argv[1], "w"), indent=2)
EOF
if [ ! -f "$work/init/model.safetensors" ] || ! cmp -s "$work/config.json" "$work/init/config.json"; then
  $py "$here/train_torch_reference.py" --write-init "$work/init" --config "$work/config.json" \
      --tokenizer "$root/models/tokenizer.model"
fi
# The batch: the first B records of the BELLE sample at sequence 512 (the same rows for both; each
# step trains on all of them, so the shuffle of ours does not change what a step sees).
"$bin" preprocess --input "$belle" --tokenizer "$root/models/tokenizer.model" --seq-length 512 --format json \
    -o "$work/belle512.json" >/dev/null 2>&1
$py - "$work/belle512.json" "$batch" "$work/batch.json" "$rows" <<'EOF'
import json, sys
records, batch, kind = json.load(open(sys.argv[1])), int(sys.argv[2]), sys.argv[4]
if kind == "sft":  # the records as preprocessed: padding, and labels on the answers only
    rows = records[:batch]
else:  # dense: the records' tokens packed end to end, every position supervised (pre-training rows)
    stream = [t for r in records for t in r["input_ids"] if t != 0]
    rows = [{"id": f"dense-{b}", "input_ids": stream[b * 512:(b + 1) * 512], "labels": stream[b * 512:(b + 1) * 512]}
            for b in range(batch)]
    rows = [r for r in rows if len(r["input_ids"]) == 512]
if len(rows) < batch: sys.exit(f"{sys.argv[1]}: not enough records for a batch of {batch}")
json.dump(rows, open(sys.argv[3], "w"))
supervised = sum(l != -100 for r in rows for l in r["labels"][1:])
print(f"# batch: {batch} x 512 {kind} rows, {supervised} of {batch * 511} positions supervised")
EOF

echo "# $(date -u '+%F %T') UTC | $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg) | $(grep -o -w -E 'avx2|fma|f16c|avx512f|avx512bw|avx512vl|avx512_vnni|avx512_bf16' /proc/cpuinfo | sort -u | tr '\n' ' ')"
echo "# hidden $hidden, $layers layers, vocab 125696, sequence 512, batch $batch, $steps steps per run (first untimed), -t $threads"
if [ -n "$torch_blas" ]; then
  echo "# torch BLAS: $torch_blas/libblas.so.3 (LD_LIBRARY_PATH), $threads BLAS threads"
else
  echo "# torch BLAS: $(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3)"
fi
results=$work/results.txt
: >"$results"
for round in $(seq 1 "$rounds"); do
  for i in "${!bins[@]}"; do
    label=ours; [ "$i" -eq 0 ] || label=ours$((i + 1))
    rm -rf "$work/run"
    "${bins[$i]}" finetune -m "$work/init" --data "$work/batch.json" -o "$work/run" --max-steps "$steps" --batch "$batch" \
        --lr 1e-4 --schedule constant --clip 1.0 -t "$threads" >/dev/null 2>"$work/ours.log" ||
      { cat "$work/ours.log" >&2; exit 1; }
    $py - "$work/run/train_log.csv" "$round" "$label" >>"$results" <<'EOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
tokens = float(rows[-1]["tokens"]) - float(rows[0]["tokens"])
seconds = float(rows[-1]["seconds"]) - float(rows[0]["seconds"])
print(f"{sys.argv[3]} {sys.argv[2]} {tokens / seconds:.2f} {float(rows[0]['loss']):.9g} {' '.join(r['loss'] for r in rows)}")
EOF
    tail -n 1 "$results"
  done
  LD_LIBRARY_PATH="$torch_blas${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" OPENBLAS_NUM_THREADS=$threads OMP_NUM_THREADS=$threads \
  "$py" "$here/train_torch_reference.py" -m "$work/init" --data "$work/batch.json" --batch "$batch" --steps "$steps" \
      --lr 1e-4 --clip 1.0 -t "$threads" >"$work/torch.json"
  $py - "$work/torch.json" "$round" >>"$results" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
tps = r["tokens_per_step"] * (len(r["seconds"]) - 1) / sum(r["seconds"][1:])
print(f"torch {sys.argv[2]} {tps:.2f} {r['losses'][0]:.9g} {' '.join(f'{l:.9g}' for l in r['losses'])}")
EOF
  tail -n 1 "$results"
done
rm -rf "$work/run"
$py - "$results" <<'EOF'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
labels = [who for who in dict.fromkeys(r[0] for r in rows) if who != "torch"]  # ours, ours2, ... as they ran
med = {who: statistics.median(float(r[2]) for r in rows if r[0] == who) for who in labels + ["torch"]}
first = {who: float(next(r[3] for r in rows if r[0] == who)) for who in labels + ["torch"]}
for who in labels:
    rel = abs(first[who] - first["torch"]) / abs(first["torch"])
    print(f"first-step loss: {who} {first[who]:.9g}, torch {first['torch']:.9g}, relative difference {rel:.2e}"
          f" ({'within' if rel <= 1e-4 else 'OUTSIDE'} 1e-4)")
for who in labels:
    print(f"tokens/s (median of {sum(r[0] == who for r in rows)} runs, steps after the first): {who} {med[who]:.1f}, "
          f"torch {med['torch']:.1f}, ratio {med[who] / med['torch']:.2f}x")
EOF
