#!/usr/bin/env python3
"""Bootstrap fixtures for psy-eval: the SplitMix64 stream, the resampled means and the
percentile interval ends recomputed in Python with numpy's `quantile(method="linear")`.

The resampling scheme (documented in engine/eval/src/stats/bootstrap.rs) is re-implemented
here from its description: SplitMix64 seeded with `seed`; each resample draws n indices as
(next_u64() * n) >> 64 and averages the values summed in draw order. The Rust test checks the
same means and interval ends.

Usage: pip install numpy && python3 scripts/reference/make_bootstrap_fixtures.py
Output: engine/eval/tests/fixtures/bootstrap.json
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
MASK = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed):
        self.state = seed & MASK

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        return (self.next() * n) >> 64


def resampled_means(values, seed, resamples):
    rng = SplitMix64(seed)
    n = len(values)
    out = []
    for _ in range(resamples):
        s = 0.0
        for _ in range(n):
            s += values[rng.below(n)]
        out.append(s / n)
    return out


def main():
    stream = SplitMix64(1234567)
    cases = []
    gen = np.random.default_rng(7)
    for seed, n, resamples, confidence in [(1, 5, 200, 0.95), (42, 30, 2000, 0.95),
                                           (0x5053595F4556414C, 12, 500, 0.9), (7, 1, 50, 0.95)]:
        values = [float(x) for x in gen.integers(0, 6, size=n)]
        means = resampled_means(values, seed, resamples)
        tail = (1.0 - confidence) / 2.0
        cases.append({
            "seed": seed, "values": values, "resamples": resamples, "confidence": confidence,
            "first_means": means[:20],
            "low": float(np.quantile(np.array(means), tail, method="linear")),
            "high": float(np.quantile(np.array(means), 1.0 - tail, method="linear")),
        })
    out = {
        "provenance": (
            f"python3 scripts/reference/make_bootstrap_fixtures.py; numpy {version('numpy')} "
            f"(quantile, method='linear'), Python {sys.version.split()[0]}"
        ),
        "splitmix64_seed_1234567": [str(stream.next()) for _ in range(5)],
        "cases": cases,
    }
    dest = ROOT / "engine" / "eval" / "tests" / "fixtures" / "bootstrap.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}: {len(cases)} cases")


if __name__ == "__main__":
    main()
