#!/usr/bin/env python3
"""Continuous batching in `psy serve`, end to end over HTTP on loopback.

Starts `psy serve --raw --max-batch N` (SmolLM2-135M Q4_1 by default) and, in one run, sends the
same REQUESTS chat requests (greedy, --tokens completion tokens each, different prompts):
  * from 1 client, one after another;
  * from REQUESTS clients at once.
Prints, for each, completion tokens per second over the wave's wall time and each request's
latency (send to last byte) as p50 / p95, then the ratio of the two throughputs. With --solo
it also runs the same two waves against `--max-batch 1` (one request at a time, today's
behaviour before batching), in the same run, and compares each request's text across the two. And it checks that every request got the same text
alone and in the crowd (greedy decoding is batch-independent on the quantized path).

Standard library only. Build first: cargo build --release --bin psy
Usage: scripts/serve_batch.py [--psy PATH] [--model GGUF] [--requests 8] [--tokens 48]
       [--max-batch 8] [--solo] [--shuffled 40] [--port 8391]
Record `lscpu | grep 'Model name'` and `uptime` beside the figures (the script prints both).
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

QUESTIONS = [
    "Name three things that help people sleep better.",
    "What is a good way to start the morning?",
    "Give me one tip for staying calm.",
    "Why do people enjoy music?",
    "Describe a quiet place.",
    "How can I remember names?",
    "What makes a good friend?",
    "How do I make a cup of tea?",
    "Why is the sky blue?",
    "What should I pack for a short trip?",
    "How can I focus better when studying?",
    "What is a simple healthy breakfast?",
    "Why do cats purr?",
    "How do plants grow?",
    "What is a good hobby to start?",
    "How do I write a thank-you note?",
]


def percentile(values, p):
    s = sorted(values)
    i = round((len(s) - 1) * p)
    return s[min(i, len(s) - 1)]


def post(base, question, tokens):
    body = json.dumps({
        "messages": [{"role": "user", "content": question}],
        "temperature": 0,
        "max_tokens": tokens,
    }).encode()
    req = urllib.request.Request(
        f"{base}/v1/chat/completions", data=body,
        headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    with urllib.request.urlopen(req, timeout=600) as r:
        v = json.load(r)
    return time.monotonic() - t0, v


def wave(base, questions, tokens, concurrent):
    """Sends every question (all at once or one after another); returns wall s and results."""
    results = [None] * len(questions)

    def one(i):
        results[i] = post(base, questions[i], tokens)

    t0 = time.monotonic()
    if concurrent:
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(questions))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    else:
        for i in range(len(questions)):
            one(i)
    return time.monotonic() - t0, results


def report(label, wall, results):
    tokens = sum(v["usage"]["completion_tokens"] for _, v in results)
    lat = [t for t, _ in results]
    peak = max(v["psy"].get("batch_peak", 1) for _, v in results)
    tps = tokens / wall
    print(f"  {label:<28} {tokens:4d} tokens in {wall:6.2f} s = {tps:6.1f} tok/s; "
          f"latency p50 {percentile(lat, 0.5):6.2f} s, p95 {percentile(lat, 0.95):6.2f} s; "
          f"most decoding together {peak}")
    return tps


def wait_ready(base, proc, seconds=300):
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if proc.poll() is not None:
            sys.exit(f"psy serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    sys.exit("psy serve did not become ready")


def run_server(args, max_batch):
    base = f"http://127.0.0.1:{args.port}"
    cmd = [args.psy, "serve", "--raw", "--addr", f"127.0.0.1:{args.port}",
           "--max-batch", str(max_batch), "--queue", str(2 * args.requests)]
    if args.model:
        cmd += ["--model", args.model]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(base, proc)
        questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(args.requests)]
        # One warm-up request (page faults, thread pools) before timing.
        post(base, questions[0], 4)
        print(f"psy serve --raw --max-batch {max_batch}:")
        w1, r1 = wave(base, questions, args.tokens, concurrent=False)
        one = report("1 client, one at a time", w1, r1)
        wn, rn = wave(base, questions, args.tokens, concurrent=True)
        many = report(f"{args.requests} clients at once", wn, rn)
        print(f"  throughput {args.requests} concurrent / 1: {many / one:.2f}x")
        same = all(a["choices"][0]["message"]["content"] == b["choices"][0]["message"]["content"]
                   for (_, a), (_, b) in zip(r1, rn))
        print(f"  every request's text the same alone and at once: {same}")
        texts = [v["choices"][0]["message"]["content"] for _, v in r1]
        if args.shuffled and max_batch == 1:
            # One at a time in a random order: each prompt then follows different ones, whose
            # cached prefix it reuses; its text must not depend on which came before.
            rng = random.Random(7)
            order = [rng.randrange(len(questions)) for _ in range(args.shuffled)]
            differ = sum(post(base, questions[i], args.tokens)[1]["choices"][0]["message"]
                         ["content"] != texts[i] for i in order)
            print(f"  {args.shuffled} requests one at a time in random order, texts that "
                  f"differ from the same prompt's first reply: {differ}")
        return texts
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--psy", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "psy"))
    ap.add_argument("--model", default=None, help="default: psy's default model (SmolLM2)")
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=48)
    ap.add_argument("--max-batch", type=int, default=8)
    ap.add_argument("--solo", action="store_true", help="also run --max-batch 1")
    ap.add_argument("--shuffled", type=int, default=0, metavar="N",
                    help="with --solo: N more requests one at a time in random order on "
                         "--max-batch 1, each text checked against its prompt's first reply")
    ap.add_argument("--port", type=int, default=8391)
    args = ap.parse_args()
    cpu = subprocess.run("lscpu | grep 'Model name'", shell=True, capture_output=True,
                         text=True).stdout.strip()
    print(cpu)
    print("load before:", os.getloadavg())
    texts = run_server(args, args.max_batch)
    if args.solo:
        solo = run_server(args, 1)
        print(f"every request's text the same on --max-batch {args.max_batch} and 1: "
              f"{texts == solo}")
    print("load after:", os.getloadavg())


if __name__ == "__main__":
    main()
