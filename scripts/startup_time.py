#!/usr/bin/env python3
"""Time from starting `psy counsel` to the first token of its first reply (issue 14: <= 2 s
with SmolLM2), with the on-disk prompt cache cold (an empty PSY_PROMPT_CACHE directory) and
then warm (the same directory again).

    cargo build --release --bin psy
    python3 scripts/startup_time.py [--runs 3] [--mode direct|two-phase] [--bin PATH]

Prints each run's time to the first streamed token (reasoning or reply) and to the first
reply token, and the medians. Record `lscpu | grep 'Model name'` and `uptime` beside them.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

MESSAGE = "I've been so tired lately and work is overwhelming."


def one_run(binary, manifest, script, cache_dir):
    env = dict(os.environ, PSY_PROMPT_CACHE=cache_dir)
    t0 = time.perf_counter()
    p = subprocess.Popen(
        [binary, "counsel", "--manifest", manifest, "--script", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    out = b""
    first_any = first_reply = None
    while True:
        b = p.stdout.read(1)
        if not b:
            break
        out += b
        now = time.perf_counter() - t0
        text = out.decode("utf-8", "replace")
        # The client line is echoed first; what streams after it is the model's.
        after = text.split("client> ", 1)[-1].split("\n", 1)
        if len(after) < 2:
            continue
        streamed = after[1]
        for marker in ("[reasoning] ", "counselor> "):
            if first_any is None and marker in streamed:
                if streamed.split(marker, 1)[1].strip():
                    first_any = now
        if "counselor> " in streamed and streamed.split("counselor> ", 1)[1].strip():
            first_reply = now
            break
    p.kill()
    p.wait()
    return first_any, first_reply


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mode", default="direct")
    ap.add_argument("--bin", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", "target"), "release", "psy"))
    a = ap.parse_args()
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as tmp:
        manifest = os.path.join(tmp, "m.toml")
        with open(manifest, "w") as f:
            f.write('schema = 1\nextends = "%s"\n[prompting]\nmode = "%s"\n'
                    % (os.path.join(repo, "manifests/psyllm.toml"), a.mode))
        script = os.path.join(tmp, "script.txt")
        with open(script, "w") as f:
            f.write(MESSAGE + "\n")
        rows = {"cold": [], "warm": []}
        for i in range(a.runs):
            cache = os.path.join(tmp, "cache%d" % i)
            for state in ("cold", "warm"):
                any_t, reply_t = one_run(a.bin, manifest, script, cache)
                rows[state].append((any_t, reply_t))
                print("run %d %s prompt cache: first token %.2f s, first reply token %s"
                      % (i + 1, state, any_t or float("nan"),
                         "%.2f s" % reply_t if reply_t else "none"), flush=True)
        for state, r in rows.items():
            firsts = [x for x, _ in r if x is not None]
            replies = [y for _, y in r if y is not None]
            print("%s: median first token %.2f s, first reply token %.2f s (%d runs, mode %s)"
                  % (state, statistics.median(firsts) if firsts else float("nan"),
                     statistics.median(replies) if replies else float("nan"), len(r), a.mode))


if __name__ == "__main__":
    sys.exit(main())
