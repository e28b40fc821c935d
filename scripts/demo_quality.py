#!/usr/bin/env python3
"""The demo model's figures for models/README.md.

  demo_quality.py lines MODEL TITLES [--heldout SFT_HELDOUT.json] [--bin build/bin/baichuan] [-n 128]
      For each title, `baichuan generate` greedily with the chat prompt
      <reserved_106>寫一首題為《TITLE》的詩<reserved_107>, and counts the poems whose lines all have 5 or 7
      characters. With --heldout, the same count over the real poems of those titles (the reference).
  demo_quality.py unigram MODEL TRAIN_TXT HELDOUT_TXT [--bin build/bin/baichuan]
      The perplexity of HELDOUT_TXT under a unigram model of TRAIN_TXT's tokens (add-one smoothing over
      the vocabulary), tokenized by MODEL's tokenizer as `baichuan perplexity` does (all tokens but the
      first are scored).

A "line" is a verse clause: the text between punctuation marks (，。？！；：、), after the first output line
(the author). A poem passes when it has at least two complete clauses and every one has 5 or 7
characters; a clause cut off by the token limit (no punctuation after it) is not counted.
"""
import argparse
import collections
import json
import math
import re
import subprocess
import sys

PUNCTUATION = "，。？！；：、"


def prompt_for(title):
    return f"<reserved_106>寫一首題為《{title}》的詩<reserved_107>"


def verse_clauses(text):
    lines = text.split("\n")
    verse = "".join(lines[1:]) if len(lines) > 1 else lines[0]
    parts = re.split(f"([{PUNCTUATION}])", verse)
    # parts alternate text, mark, text, mark, ..., text: a trailing text has no mark after it.
    return [parts[i] for i in range(0, len(parts) - 1, 2) if parts[i]]


def lines_are_5_or_7(text):
    clauses = verse_clauses(text)
    return len(clauses) >= 2 and all(len(c) in (5, 7) for c in clauses)


def generate(binary, model, title, max_tokens):
    out = subprocess.run([binary, "generate", "-m", model, "-p", prompt_for(title), "--greedy", "-n", str(max_tokens),
                          "-t", "1", "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)["text"]


def lines_command(args):
    titles = [t for t in open(args.titles, encoding="utf-8").read().split("\n") if t]
    results = []
    for title in titles:
        text = generate(args.bin, args.model, title, args.n)
        results.append({"title": title, "text": text, "ok": lines_are_5_or_7(text)})
    summary = {"model": args.model, "titles": len(titles), "passing": sum(r["ok"] for r in results)}
    summary["share"] = summary["passing"] / max(1, len(titles))
    if args.heldout:
        poems = {}
        for record in json.load(open(args.heldout, encoding="utf-8")):
            title = re.fullmatch("寫一首題為《(.*)》的詩", record["conversations"][0]["value"]).group(1)
            poems.setdefault(title, record["conversations"][1]["value"])
        real = [lines_are_5_or_7(poems[t]) for t in titles]
        summary["reference_share"] = sum(real) / max(1, len(real))
    if args.samples:
        summary["samples"] = results
    print(json.dumps(summary, ensure_ascii=False))


def tokenize(binary, model, path):
    out = subprocess.run([binary, "tokenize", "-m", model, "-f", path, "--json"], check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout)["ids"]


def unigram_command(args):
    train = tokenize(args.bin, args.model, args.train)
    heldout = tokenize(args.bin, args.model, args.heldout)
    counts = collections.Counter(train)
    vocab = args.vocab
    total = len(train) + vocab
    nll = -sum(math.log((counts[t] + 1) / total) for t in heldout[1:]) / (len(heldout) - 1)
    print(json.dumps({"train_tokens": len(train), "heldout_tokens": len(heldout), "scored": len(heldout) - 1,
                      "vocab": vocab, "nll_mean": nll, "perplexity": math.exp(nll)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    lines = sub.add_parser("lines")
    lines.add_argument("model")
    lines.add_argument("titles")
    lines.add_argument("--heldout")
    lines.add_argument("--bin", default="build/bin/baichuan")
    lines.add_argument("-n", type=int, default=128)
    lines.add_argument("--samples", action="store_true", help="also print every generated poem")
    uni = sub.add_parser("unigram")
    uni.add_argument("model")
    uni.add_argument("train")
    uni.add_argument("heldout")
    uni.add_argument("--bin", default="build/bin/baichuan")
    uni.add_argument("--vocab", type=int, default=8000, help="the model's vocabulary size (smoothing)")
    args = ap.parse_args()
    (lines_command if args.command == "lines" else unigram_command)(args)


if __name__ == "__main__":
    sys.exit(main())
