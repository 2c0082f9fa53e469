#!/usr/bin/env python3
"""Reference dequantisations for tests/quant.rs, made with the `gguf` Python package.

For every block type psy reads, writes tests/fixtures/quant/<TYPE>.bin (raw blocks) and
<TYPE>.f32 (gguf-py's `quants.dequantize` of them, little-endian f32), plus index.json with the
gguf/numpy versions and sha256 of each file. The blocks are random bytes (seeded) with the f16
scale fields replaced by finite values, so every bit pattern of quants and packed scales is
exercised; for the 32-element types a second run of blocks comes from gguf-py's own `quantize` of
random normals (where it has one), as real files hold.

Fixture-making only (CI needs no Python):
    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf
    /tmp/gguf-venv/bin/python scripts/reference/make_quant_fixtures.py
"""
import hashlib
import importlib.metadata as md
import json
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = Path(__file__).resolve().parents[2] / "tests/fixtures/quant"

# type: (block elements, block bytes, byte offsets of f16 fields)
TYPES = {
    "Q4_0": (T.Q4_0, 32, 18, [0]),
    "Q4_1": (T.Q4_1, 32, 20, [0, 2]),
    "Q5_0": (T.Q5_0, 32, 22, [0]),
    "Q5_1": (T.Q5_1, 32, 24, [0, 2]),
    "Q8_0": (T.Q8_0, 32, 34, [0]),
    "Q2_K": (T.Q2_K, 256, 84, [80, 82]),
    "Q3_K": (T.Q3_K, 256, 110, [108]),
    "Q4_K": (T.Q4_K, 256, 144, [0, 2]),
    "Q5_K": (T.Q5_K, 256, 176, [0, 2]),
    "Q6_K": (T.Q6_K, 256, 210, [208]),
}
N_VALUES = 2048  # 8 super-blocks or 64 small blocks per type


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(14)
    index = {
        "made_with": f"gguf {md.version('gguf')} quants.dequantize, numpy {md.version('numpy')}",
        "script": "scripts/reference/make_quant_fixtures.py",
        "types": {},
    }
    for name, (qtype, elems, size, f16_at) in TYPES.items():
        n_blocks = N_VALUES // elems
        raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
        # Finite scales of either sign over a realistic range (|d| in ~[1e-4, 0.1]).
        for off in f16_at:
            d = (rng.uniform(1e-4, 0.1, n_blocks) * rng.choice([-1, 1], n_blocks)).astype(np.float16)
            raw[:, off:off + 2] = d.view(np.uint8).reshape(n_blocks, 2)
        blocks = [raw]
        if elems == 32:
            x = rng.normal(0, 0.05, size=(n_blocks, elems)).astype(np.float32)
            blocks.append(quants.quantize(x, qtype).reshape(n_blocks, size))
        data = np.concatenate(blocks).astype(np.uint8)
        values = quants.dequantize(data.reshape(-1), qtype).astype("<f4").reshape(-1)
        assert np.isfinite(values).all(), name
        (OUT / f"{name}.bin").write_bytes(data.tobytes())
        (OUT / f"{name}.f32").write_bytes(values.tobytes())
        index["types"][name] = {
            "blocks": int(data.shape[0]),
            "values": int(values.size),
            "sha256_bin": hashlib.sha256(data.tobytes()).hexdigest(),
            "sha256_f32": hashlib.sha256(values.tobytes()).hexdigest(),
        }
    (OUT / "index.json").write_text(json.dumps(index, indent=1) + "\n")
    print(f"wrote {len(TYPES)} types to {OUT}")


if __name__ == "__main__":
    main()
