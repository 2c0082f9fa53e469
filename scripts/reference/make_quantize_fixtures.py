#!/usr/bin/env python3
"""Reference f32 -> Q8_0 quantisations for tests/quantize.rs, made with the `gguf` Python package.

Writes tests/fixtures/quantize/Q8_0.in.f32 (the input values, little-endian f32) and Q8_0.bin
(gguf-py's `quants.quantize` of them, which its source says rounds bit-exactly as ggml-quants.c),
plus index.json with the gguf/numpy versions and sha256 of each file. The blocks mix realistic
weights (normals of several scales) with edge cases: all zeros, one non-zero value, values at
exact rounding ties (k + 1/2 steps), huge values whose scale overflows f16, and tiny ones whose
scale is an f16 subnormal or rounds to zero.

Fixture-making only (CI needs no Python):
    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf
    /tmp/gguf-venv/bin/python scripts/reference/make_quantize_fixtures.py
"""
import hashlib
import importlib.metadata as md
import json
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/quantize"
BLOCK = 32


def blocks(rng):
    out = []
    for scale in (0.02, 0.05, 1.0, 30.0):
        out.append(rng.normal(0, scale, size=(32, BLOCK)))
    out.append(np.zeros((1, BLOCK)))
    one = np.zeros((1, BLOCK))
    one[0, 7] = -0.3
    out.append(one)
    # Exact ties: max 127 * d with every other value on a half step of d.
    for d in (0.5, 0.25, 1.0 / 64):
        ties = (rng.integers(-126, 126, size=(4, BLOCK)) + 0.5) * d
        ties[:, 0] = 127 * d
        out.append(ties)
    out.append(rng.normal(0, 1e6, size=(2, BLOCK)))  # d = max/127 above f16's 65504
    out.append(rng.normal(0, 1e-6, size=(2, BLOCK)))  # d an f16 subnormal
    out.append(rng.normal(0, 1e-9, size=(2, BLOCK)))  # d rounds to 0 in f16
    return np.concatenate(out).astype(np.float32)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(15)
    x = blocks(rng)
    q = quants.quantize(x, T.Q8_0)
    files = {"Q8_0.in.f32": x.astype("<f4").tobytes(), "Q8_0.bin": q.tobytes()}
    index = {
        "made_with": f"gguf {md.version('gguf')} quants.quantize, numpy {md.version('numpy')}",
        "script": "scripts/reference/make_quantize_fixtures.py",
        "blocks": int(x.shape[0]),
        "files": {},
    }
    for name, data in files.items():
        (OUT / name).write_bytes(data)
        index["files"][name] = hashlib.sha256(data).hexdigest()
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"{x.shape[0]} blocks -> {OUT}")


if __name__ == "__main__":
    main()
