#!/usr/bin/env python3
"""Blind side-by-side study of counseling replies: psy's planned main job against the same model
with a plain counselor prompt.

  run    For each client script (one message per line): (A) `psy counsel` with the run
         manifest (plan, guidance, guard, repairs); (B) the same GGUF behind `psy serve --raw`
         with only the manifest's persona sentence as the system prompt and the manifest's
         temperature, top_p, seed and token cap (the raw server has no repetition penalty).
         Writes A-<name>.jsonl, B-<name>.jsonl, then pairs.md (each session's two transcripts
         as "Transcript 1/2" in an order drawn from --seed) and key.json (which is which).
  score  Reads a judge's verdicts (JSON: {"<name>": {"turns": ["1"|"2"|"tie", ...],
         "overall": "1"|"2"|"tie"}}), unblinds them with key.json and prints the wins of each
         variant per turn and per session, with a two-sided sign test.

The judge reads pairs.md only (never key.json, never this script's output of `run`).
"""
import argparse
import json
import math
import os
import random
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path


def decoding(path):
    """The `[decoding]` section of a run manifest, following `extends`."""
    data = tomllib.loads(Path(path).read_text())
    parent = data.get("extends")
    base = decoding(Path(path).parent / parent) if parent else {}
    return {**base, **data.get("decoding", {})}


def persona(psy, manifest, script):
    """The plan's first system paragraph (the persona) for the first client message."""
    first = next(l for l in Path(script).read_text().splitlines() if l.strip())
    out = subprocess.run(
        [psy, "plan", "--manifest", manifest, "--json", "--message", first],
        capture_output=True, text=True, check=True,
    ).stdout
    plan = json.loads(out)
    plan = plan.get("plan", plan)
    return plan["prompt"]["system"].split("\n\n")[0].strip()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(base, body):
    req = urllib.request.Request(
        base + "/v1/chat/completions", json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def run(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scripts = sorted(Path(args.scripts).glob("*.txt"))
    dec = decoding(args.manifest)
    system = persona(args.psy, args.manifest, scripts[0])
    for s in scripts:
        t0 = time.monotonic()
        subprocess.run(
            [args.psy, "counsel", "--manifest", args.manifest, "--script", str(s),
             "--save", str(out / f"A-{s.stem}.jsonl")],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        print(f"A {s.stem}: {time.monotonic() - t0:.1f} s", flush=True)
    port = free_port()
    server = subprocess.Popen(
        [args.psy, "serve", "--raw", "--model", args.model, "--max-batch", "1",
         "--addr", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                urllib.request.urlopen(base + "/health", timeout=2)
                break
            except OSError:
                time.sleep(0.5)
        for s in scripts:
            t0 = time.monotonic()
            messages = [{"role": "system", "content": system}]
            rows = []
            for line in [l for l in s.read_text().splitlines() if l.strip() and not l.startswith("#")]:
                messages.append({"role": "user", "content": line})
                r = post(base, {
                    "model": "default", "messages": messages,
                    "temperature": dec.get("temperature", 0.7), "top_p": dec.get("top_p", 0.9),
                    "seed": dec.get("seed", 42), "max_tokens": dec.get("max_new_tokens", 160),
                })
                reply = r["choices"][0]["message"]["content"].strip()
                messages.append({"role": "assistant", "content": reply})
                rows.append({"user": line, "reply": reply})
            (out / f"B-{s.stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
            print(f"B {s.stem}: {time.monotonic() - t0:.1f} s", flush=True)
    finally:
        server.terminate()
        server.wait()
    blind(out, [s.stem for s in scripts], args.seed)


def transcript(path):
    return [
        {"user": r["user"], "reply": r["reply"]}
        for r in map(json.loads, Path(path).read_text().splitlines())
    ]


def blind(out, names, seed):
    rng = random.Random(seed)
    key, md = {}, ["# Counseling transcripts to compare\n"]
    for n in names:
        a, b = transcript(out / f"A-{n}.jsonl"), transcript(out / f"B-{n}.jsonl")
        first = rng.choice(["A", "B"])
        key[n] = {"1": first, "2": "B" if first == "A" else "A"}
        md.append(f"\n## Session {n}\n")
        for label, t in (("1", a if first == "A" else b), ("2", b if first == "A" else a)):
            md.append(f"\n### Transcript {label}\n")
            for i, turn in enumerate(t, 1):
                md.append(f"\n**Client (turn {i}):** {turn['user']}\n")
                md.append(f"\n**Counselor (turn {i}):** {turn['reply']}\n")
    (out / "pairs.md").write_text("".join(md))
    (out / "key.json").write_text(json.dumps(key, indent=1) + "\n")


def sign_test(wins, losses):
    """Two-sided exact binomial p-value of wins against losses (ties dropped)."""
    n, k = wins + losses, min(wins, losses)
    if n == 0:
        return 1.0
    p = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * p)


def score(args):
    out = Path(args.out)
    key = json.loads((out / "key.json").read_text())
    verdicts = json.loads(Path(args.verdicts).read_text())
    turns = {"A": 0, "B": 0, "tie": 0}
    sessions = {"A": 0, "B": 0, "tie": 0}
    for n, k in key.items():
        v = verdicts.get(n)
        a = out / f"A-{n}.jsonl"  # absent where only pairs.md and key.json were kept
        turns_of = len(transcript(a)) if a.exists() else None
        if not isinstance(v, dict) or not isinstance(v.get("turns"), list):
            sys.exit(f"{args.verdicts}: session {n}: no verdict with a list of `turns`")
        if turns_of is not None and len(v["turns"]) != turns_of:
            sys.exit(f"{args.verdicts}: session {n}: {len(v['turns'])} verdicts, {turns_of} turns")
        for i, t in enumerate(v["turns"] + [v.get("overall")]):
            if t not in ("1", "2", "tie"):
                where = f"turn {i + 1}" if i < len(v["turns"]) else "overall"
                sys.exit(f"{args.verdicts}: session {n}, {where}: {t!r} is not \"1\", \"2\" or \"tie\"")
        for t in v["turns"]:
            turns[k.get(t, "tie")] += 1
        sessions[k.get(v["overall"], "tie")] += 1
    for name, c in (("turns", turns), ("sessions", sessions)):
        p = sign_test(c["A"], c["B"])
        print(f"{name}: psy (A) preferred {c['A']}, plain prompt (B) {c['B']}, "
              f"ties {c['tie']}; sign test p = {p:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--scripts", default="manifests/sessions/study")
    r.add_argument("--out", default="runs/reply-study")
    r.add_argument("--psy", default="target/release/psy")
    r.add_argument("--manifest", default="manifests/psyllm-qwen1.5b.toml")
    r.add_argument("--model", default=os.path.expanduser(
        "~/.cache/psy/assets/qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"))
    r.add_argument("--seed", type=int, default=7)
    s = sub.add_parser("score")
    s.add_argument("--out", default="runs/reply-study")
    s.add_argument("--verdicts", required=True)
    args = ap.parse_args()
    run(args) if args.cmd == "run" else score(args)


if __name__ == "__main__":
    main()
