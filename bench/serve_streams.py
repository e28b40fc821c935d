#!/usr/bin/env python3
"""Tokens/s of `baichuan serve` with 1 stream and with N concurrent streams, measured in one run.

Starts the server on a free loopback port with --parallel N, then runs rounds alternately: one
request alone, then N at once (each /v1/completions, `ignore_eos`, `max_tokens` tokens, streamed,
every token time-stamped on arrival). Throughput counts the steady state, when every stream of the
round is decoding: from the moment the last stream got its first token (all prompts are in) to the
moment the first stream got its last token, tokens of all streams in that window / its length.
Prints one line per round and the ratio of the medians.

  bench/serve_streams.py -m MODEL [--bin build/bin/baichuan] [-n 32] [-s 4] [-r 3] [-t THREADS]
Only the Python standard library (Debian's python3)."""
import argparse
import http.client
import json
import re
import statistics
import subprocess
import sys
import threading
import time


TEMPERATURE = 0.7


def stream_completion(port, prompt, max_tokens, seed, out):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True, "stream": True,
                       "temperature": TEMPERATURE, "seed": seed})
    conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:300]!r}")
    times = []
    for line in resp:
        line = line.strip()
        if not line.startswith(b"data: ") or line == b"data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk["choices"] and chunk["choices"][0].get("finish_reason") is None:
            times.append(time.perf_counter())
    out.append(times)
    conn.close()


def round_(port, streams, max_tokens, round_index):
    results, threads = [], []
    for s in range(streams):
        prompt = f"Stream {s} of round {round_index}: once upon a time"
        threads.append(threading.Thread(target=stream_completion,
                                        args=(port, prompt, max_tokens, 1000 * round_index + s, results)))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if len(results) != streams:
        raise RuntimeError("a stream failed")
    start = max(times[0] for times in results)
    end = min(times[-1] for times in results)
    tokens = sum(1 for times in results for t in times if start < t <= end)
    return tokens / (end - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--bin", default="build/bin/baichuan")
    ap.add_argument("-n", "--tokens", type=int, default=32)
    ap.add_argument("-s", "--streams", type=int, default=4)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("-t", "--threads", type=int, default=0)
    ap.add_argument("--temperature", type=float, default=TEMPERATURE, help="0 = greedy")
    args = ap.parse_args()
    globals()["TEMPERATURE"] = args.temperature

    cmd = [args.bin, "serve", "-m", args.model, "--port", "0", "--parallel", str(args.streams), "--ctx", "512"]
    if args.threads:
        cmd += ["-t", str(args.threads)]
    server = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    try:
        port = None
        for line in server.stderr:
            sys.stderr.write(line)
            m = re.search(r"listening on http://[^:]+:(\d+)", line)
            if m:
                port = int(m.group(1))
                break
        if port is None:
            raise SystemExit("the server did not start")
        threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
        round_(port, 1, 4, 0)  # warm-up: weights paged in and packed
        one, many = [], []
        for r in range(args.rounds):
            one.append(round_(port, 1, args.tokens, 2 * r + 1))
            many.append(round_(port, args.streams, args.tokens, 2 * r + 2))
            print(f"round {r + 1}: 1 stream {one[-1]:.2f} tokens/s, {args.streams} streams {many[-1]:.2f} tokens/s")
        ratio = statistics.median(many) / statistics.median(one)
        print(f"median: 1 stream {statistics.median(one):.2f} tokens/s, {args.streams} streams "
              f"{statistics.median(many):.2f} tokens/s, ratio {ratio:.2f}x")
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
