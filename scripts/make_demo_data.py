#!/usr/bin/env python3
"""The demo model's data, from the Tang-poem corpus (blocks of title, author, verse lines, blank line).

Holds out 5% of the poems, by poem and deterministically: poem i (0-based, in corpus order) is held out
when i % 20 == 19. Writes into OUT_DIR:
  train.txt / heldout.txt
                       the poems as in the corpus (title, author, verse lines, blank line): spm_train's
                       input, and the text of the perplexity figures
  pretrain_train.jsonl / pretrain_heldout.jsonl
                       {"id", "text": "TITLE\\nAUTHOR\\nLINE\\n..."} for `baichuan preprocess --layout text`
  sft_train.json / sft_heldout.json
                       BELLE chat records: human 寫一首題為《TITLE》的詩 -> gpt AUTHOR\\nLINE\\n...
  heldout_titles.txt   the first 100 held-out titles (no duplicates), for scripts/demo_quality.py

Usage: make_demo_data.py CORPUS OUT_DIR [--limit N]   (--limit: only the first N poems, for tests)
"""
import argparse
import json
import os
import re

HELDOUT_EVERY = 20  # every 20th poem: 5%
# Editorial notes left in the corpus's verse ("（一作...）", "〖...〗", "[...]", "{...}"), not part of the poems.
EDITORIAL_NOTE = re.compile(r"（[^（）]*）|〖[^〖〗]*〗|\[[^\[\]]*\]|\{[^{}]*\}")
QUALITY_TITLES = 100


def read_poems(path):
    with open(path, encoding="utf-8") as f:
        blocks = f.read().split("\n\n")
    poems = []
    for block in blocks:
        lines = [line for line in block.split("\n") if line]
        if len(lines) < 3:  # title, author, at least one verse line
            continue
        verse = [v for v in (EDITORIAL_NOTE.sub("", line) for line in lines[2:]) if v]
        if verse:
            poems.append((lines[0], lines[1], verse))
    return poems


def prompt_for(title):
    return f"寫一首題為《{title}》的詩"


def write_split(out_dir, name, poems):
    with open(os.path.join(out_dir, f"pretrain_{name}.jsonl"), "w", encoding="utf-8") as f:
        for i, (title, author, verse) in poems:
            text = "\n".join([title, author, *verse])
            f.write(json.dumps({"id": str(i), "text": text}, ensure_ascii=False) + "\n")
    records = [{"id": str(i), "conversations": [{"from": "human", "value": prompt_for(title)},
                                                {"from": "gpt", "value": "\n".join([author, *verse])}]}
               for i, (title, author, verse) in poems]
    with open(os.path.join(out_dir, f"sft_{name}.json"), "w", encoding="utf-8") as f:
        json.dump(records, f, ensure_ascii=False, indent=0)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("corpus")
    ap.add_argument("out_dir")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    poems = read_poems(args.corpus)
    if args.limit:
        poems = poems[:args.limit]
    os.makedirs(args.out_dir, exist_ok=True)
    train = [(i, p) for i, p in enumerate(poems) if i % HELDOUT_EVERY != HELDOUT_EVERY - 1]
    heldout = [(i, p) for i, p in enumerate(poems) if i % HELDOUT_EVERY == HELDOUT_EVERY - 1]
    for name, split in (("train", train), ("heldout", heldout)):
        with open(os.path.join(args.out_dir, f"{name}.txt"), "w", encoding="utf-8") as f:
            for _, (title, author, verse) in split:
                f.write("\n".join([title, author, *verse]) + "\n\n")
    write_split(args.out_dir, "train", train)
    write_split(args.out_dir, "heldout", heldout)
    seen, titles = set(), []
    for _, (title, _, _) in heldout:
        if title not in seen and len(titles) < QUALITY_TITLES:
            seen.add(title)
            titles.append(title)
    with open(os.path.join(args.out_dir, "heldout_titles.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(titles) + "\n")
    print(f"{len(poems)} poems: {len(train)} for training, {len(heldout)} held out; "
          f"{len(titles)} held-out titles for the quality figure")


if __name__ == "__main__":
    main()
