#!/usr/bin/env python3
"""The PyTorch side of bench/train_vs_torch.sh: full fine-tuning of a Baichuan 2 (7B family) model in
float32, written from the official modeling code's math (RMSNorm, W_pack, RoPE, causal attention with
the mask `input_ids != 0`, SiLU-gated MLP, NormHead normalising the lm_head rows inside the graph,
cross-entropy of logits[t] against labels[t + 1] over labels != -100) and trained with
torch.optim.AdamW and clip_grad_norm_, as `baichuan finetune` trains.

Two modes:
  --write-init DIR  write a Hugging Face folder (config.json, generation_config.json, tokenizer.model,
                    model.safetensors F32) with seeded random weights, the start of both runs;
  (default)         train --steps steps on the first --batch records of --data (a `baichuan preprocess
                    --format json` file) from -m DIR, and print one JSON line: the loss of every step
                    and the seconds of every step.
Needs Debian's python3-torch (`apt-get install python3-torch`); nothing is downloaded.
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import time

import torch
import torch.nn.functional as F


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            sys.exit(f"{path}: tensor {name} is {info['dtype']}, this script reads F32 only")
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[base + b:base + e]), dtype=torch.float32)
        tensors[name] = t.reshape(info["shape"]).clone()
    return tensors


def write_safetensors(path, tensors):
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        blob = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)
    os.replace(path + ".tmp", path)


def parameter_shapes(c):
    h, i, v = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    shapes = {"model.embed_tokens.weight": (v, h)}
    for l in range(c["num_hidden_layers"]):
        p = f"model.layers.{l}."
        shapes[p + "self_attn.W_pack.weight"] = (3 * h, h)
        shapes[p + "self_attn.o_proj.weight"] = (h, h)
        shapes[p + "mlp.gate_proj.weight"] = (i, h)
        shapes[p + "mlp.down_proj.weight"] = (h, i)
        shapes[p + "mlp.up_proj.weight"] = (i, h)
        shapes[p + "input_layernorm.weight"] = (h,)
        shapes[p + "post_attention_layernorm.weight"] = (h,)
    shapes["model.norm.weight"] = (h,)
    shapes["lm_head.weight"] = (v, h)
    return shapes


def write_init(args):
    with open(args.config) as f:
        config = json.load(f)
    gen = torch.Generator().manual_seed(args.seed)
    std = config.get("initializer_range", 0.02)
    tensors = {}
    for name, shape in parameter_shapes(config).items():
        tensors[name] = torch.ones(shape) if len(shape) == 1 else torch.randn(shape, generator=gen) * std
    os.makedirs(args.write_init, exist_ok=True)
    shutil.copy(args.config, os.path.join(args.write_init, "config.json"))
    shutil.copy(args.tokenizer, os.path.join(args.write_init, "tokenizer.model"))
    with open(os.path.join(args.write_init, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}, f)
    write_safetensors(os.path.join(args.write_init, "model.safetensors"), tensors)


class BaichuanForTraining(torch.nn.Module):
    def __init__(self, config, weights):
        super().__init__()
        self.c = config
        self.params = torch.nn.ParameterDict()
        # ParameterDict keys cannot hold dots; keep the official names beside them.
        self.names = list(parameter_shapes(config).keys())
        for name in self.names:
            self.params[name.replace(".", "/")] = torch.nn.Parameter(weights[name])
        h, n = config["hidden_size"], config["num_attention_heads"]
        d = h // n
        inv_freq = 1.0 / (10000 ** (torch.arange(0, d, 2).float() / d))
        t = torch.arange(config["model_max_length"]).float()
        freqs = torch.outer(t, inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()

    def p(self, name):
        return self.params[name.replace(".", "/")]

    def rms_norm(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c["rms_norm_eps"]))

    @staticmethod
    def rotate_half(x):
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((-x2, x1), dim=-1)

    def forward(self, input_ids, labels):
        c = self.c
        B, T = input_ids.shape
        h, n = c["hidden_size"], c["num_attention_heads"]
        d = h // n
        # nn.Embedding(padding_idx=0): the pad row gets no gradient.
        x = F.embedding(input_ids, self.p("model.embed_tokens.weight"), padding_idx=0)
        causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
        visible = causal[None, None, :, :] & (input_ids != 0)[:, None, None, :]
        cos, sin = self.cos[:T], self.sin[:T]
        for l in range(c["num_hidden_layers"]):
            pre = f"model.layers.{l}."
            a = self.rms_norm(x, self.p(pre + "input_layernorm.weight"))
            qkv = F.linear(a, self.p(pre + "self_attn.W_pack.weight"))
            q, k, v = qkv.view(B, T, 3, n, d).permute(2, 0, 3, 1, 4)
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            scores = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(d)
            scores = scores.masked_fill(~visible, torch.finfo(torch.float32).min)
            att = torch.matmul(torch.softmax(scores, dim=-1), v)
            att = att.transpose(1, 2).reshape(B, T, h)
            x = x + F.linear(att, self.p(pre + "self_attn.o_proj.weight"))
            m = self.rms_norm(x, self.p(pre + "post_attention_layernorm.weight"))
            gate = F.linear(m, self.p(pre + "mlp.gate_proj.weight"))
            up = F.linear(m, self.p(pre + "mlp.up_proj.weight"))
            x = x + F.linear(F.silu(gate) * up, self.p(pre + "mlp.down_proj.weight"))
        x = self.rms_norm(x, self.p("model.norm.weight"))
        head = F.normalize(self.p("lm_head.weight"))  # NormHead in training mode
        logits = F.linear(x, head)
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                               ignore_index=-100)


def train(args):
    torch.set_num_threads(args.threads)
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    if "max_position_embeddings" not in config:
        sys.exit(f"{args.model}: a 13B-family (ALiBi) config; this reference covers the 7B family (RoPE)")
    weights = read_safetensors(os.path.join(args.model, "model.safetensors"))
    with open(args.data) as f:
        records = json.load(f)[: args.batch]
    if len(records) < args.batch:
        sys.exit(f"{args.data}: {len(records)} records, fewer than --batch {args.batch}")
    input_ids = torch.tensor([r["input_ids"] for r in records], dtype=torch.long)
    labels = torch.tensor([r["labels"] for r in records], dtype=torch.long)
    model = BaichuanForTraining(config, weights)
    del weights
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    losses, seconds = [], []
    for _ in range(args.steps):
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids, labels)
        loss.backward()
        if args.clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        seconds.append(time.perf_counter() - start)
        losses.append(loss.item())
    print(json.dumps({"losses": losses, "seconds": seconds, "tokens_per_step": int(input_ids.numel()),
                      "threads": torch.get_num_threads(), "torch": torch.__version__}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write-init", metavar="DIR", help="write a random Hugging Face folder and stop")
    ap.add_argument("--config", help="config.json for --write-init")
    ap.add_argument("--tokenizer", help="tokenizer.model for --write-init")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("-m", "--model", help="Hugging Face folder with an F32 model.safetensors")
    ap.add_argument("--data", help="`baichuan preprocess --format json` output")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("-t", "--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    if args.write_init:
        if not args.config or not args.tokenizer:
            sys.exit("--write-init needs --config and --tokenizer")
        write_init(args)
    else:
        if not args.model or not args.data:
            sys.exit("give -m MODEL and --data DATA.json (or --write-init DIR)")
        train(args)


if __name__ == "__main__":
    main()
