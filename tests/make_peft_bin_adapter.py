#!/usr/bin/python3
"""Writes a PEFT LoRA adapter folder as PEFT versions before 0.6 saved it: adapter_config.json (with the
old fields enable_lora and merge_weights) and adapter_model.bin, a torch.save pickle of the state dict.
An independent writer for tests/peft_bin_test.cpp (python3-torch); no PEFT needed.

  make_peft_bin_adapter.py OUT_DIR DTYPE HIDDEN INTERMEDIATE LAYERS R ALPHA [--legacy-format]

DTYPE is float32, float16 or bfloat16. Every element is value(seed, i) = ((i * 7 + seed) % 101 - 50) / 64
(exact in all three types), with seed = 1000 * layer + 10 * target + (0 for A, 1 for B) and i the
row-major index; targets W_pack, o_proj, gate_proj, up_proj, down_proj are 0..4. lora_B of layer 1's
o_proj is saved as a view at an offset into a larger storage, as torch.save keeps views.
"""
import collections
import json
import os
import sys

import torch


def values(seed, rows, cols, dtype):
    i = torch.arange(rows * cols, dtype=torch.int64)
    return (((i * 7 + seed) % 101 - 50).to(torch.float32) / 64).reshape(rows, cols).to(dtype)


def main():
    out, dtype_name, hidden, inter, layers, r, alpha = sys.argv[1:8]
    hidden, inter, layers, r, alpha = int(hidden), int(inter), int(layers), int(r), int(alpha)
    dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype_name]
    targets = [("self_attn", "W_pack", hidden, 3 * hidden), ("self_attn", "o_proj", hidden, hidden),
               ("mlp", "gate_proj", hidden, inter), ("mlp", "up_proj", hidden, inter), ("mlp", "down_proj", inter, hidden)]
    state = collections.OrderedDict()
    for layer in range(layers):
        for t, (parent, name, fan_in, fan_out) in enumerate(targets):
            base = f"base_model.model.model.layers.{layer}.{parent}.{name}"
            seed = 1000 * layer + 10 * t
            state[base + ".lora_A.weight"] = values(seed, r, fan_in, dtype)
            b = values(seed + 1, fan_out, r, dtype)
            if layer == 1 and name == "o_proj":  # a view at an offset into a larger storage
                big = torch.zeros(fan_out * r + 5, dtype=dtype)
                big[5:] = b.reshape(-1)
                b = big[5:].view(fan_out, r)
            state[base + ".lora_B.weight"] = b
    os.makedirs(out, exist_ok=True)
    config = {"base_model_name_or_path": "baichuan-inc/Baichuan2-7B-Base", "bias": "none", "enable_lora": None,
              "fan_in_fan_out": False, "inference_mode": True, "lora_alpha": alpha, "lora_dropout": 0.1,
              "merge_weights": False, "modules_to_save": None, "peft_type": "LORA", "r": r,
              "target_modules": [t[1] for t in targets], "task_type": "CAUSAL_LM"}
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    legacy = "--legacy-format" in sys.argv[8:]
    torch.save(state, os.path.join(out, "adapter_model.bin"), _use_new_zipfile_serialization=not legacy)


if __name__ == "__main__":
    main()
