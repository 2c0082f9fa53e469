#!/usr/bin/env python3
"""The rarer K-quants (Q2_K, Q3_K, Q5_K) end to end: psy's integer kernels (8-bit activations)
against its f32-activation path on real files, and beside llama.cpp on the same files.

No registry carries a Q2_K, Q3_K_M or Q5_K_M GGUF, so this script makes them: llama.cpp's own
quantizer (llama-cpp-python's `llama_model_quantize`, `allow_requantize`) turns
Qwen2.5-Coder-1.5B-Instruct Q4_K_M (`scripts/setup.sh --qwen`) into Q5_K_M, Q3_K_M and Q2_K
files, cached in ~/.cache/psy/assets/requant/. (SmolLM2 and the 0.5B have rows of 576 and 896
values, not whole 256-value super-blocks, so llama.cpp gives them no K-quant tensors.)

For each file it runs, one after another in this process's run:
  1. `psy generate --greedy` of a chat message with `PSY_WEIGHTS=quantized` (the default: integer
     kernels) and `PSY_WEIGHTS=quantized-f32act` (the path before them): generated ids equal?
     and each one's decode rate (`timings` of `--json`);
  2. llama.cpp (llama-cpp-python) on the same file: a prompt of the same length, then the same
     number of single-token decode steps, as `scripts/compare_speed.py` times it.

  CARGO_TARGET_DIR=... PYTHONPATH= /tmp/torch-venv/bin/python scripts/kquant_check.py --threads 2

Needs: pip install llama-cpp-python gguf; a release build of psy (the script builds it).
"""
import argparse
import collections
import ctypes
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = "qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
# llama.cpp's file types (llama.h: LLAMA_FTYPE_MOSTLY_*).
TARGETS = {"q5_k_m": 17, "q3_k_m": 12, "q2_k": 10}
MESSAGE = "I can't sleep before my exams and my mind keeps racing. What can I do tonight?"


def assets() -> Path:
    return Path(os.environ.get("PSY_ASSETS", Path.home() / ".cache/psy/assets"))


def requantize(name: str, ftype: int) -> Path:
    src = assets() / SOURCE
    if not src.is_file():
        raise SystemExit(f"{src} missing: run scripts/setup.sh --qwen")
    out = assets() / "requant" / f"qwen2.5-coder-1.5b-instruct-{name}.gguf"
    if out.is_file():
        return out
    import llama_cpp

    out.parent.mkdir(parents=True, exist_ok=True)
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True
    tmp = out.with_suffix(".part")
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
    if rc != 0:
        raise SystemExit(f"llama_model_quantize {name}: return code {rc}")
    tmp.rename(out)
    return out


def tensor_types(path: Path) -> dict:
    import gguf

    reader = gguf.GGUFReader(str(path))
    return dict(collections.Counter(t.tensor_type.name for t in reader.tensors))


def psy_generate(psy: Path, model: Path, weights: str, tokens: int, threads: int) -> dict:
    env = dict(os.environ, PSY_WEIGHTS=weights, RAYON_NUM_THREADS=str(threads))
    cmd = [str(psy), "generate", "--model", str(model), "--chat", MESSAGE, "--greedy",
           "--max-new-tokens", str(tokens), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f"psy generate ({weights}) failed: {p.stderr.strip()[-500:]}")
    return json.loads(p.stdout)


def llama_decode(model: Path, n_prompt: int, decode: int, threads: int) -> dict:
    """In a child process (llama.cpp's OpenMP runtime stays out of this one)."""
    code = f"""
import json, time
from llama_cpp import Llama
llm = Llama(model_path={str(model)!r}, n_threads={threads}, n_threads_batch={threads},
            n_ctx=512, n_batch=512, verbose=False)
ids = [(i * 7919) % 30000 + 100 for i in range({n_prompt})]
llm.eval(ids); llm.reset()
t = time.perf_counter(); llm.eval(ids); prefill = {n_prompt} / (time.perf_counter() - t)
t = time.perf_counter()
for i in range({decode}):
    llm.eval([42 + i])
print(json.dumps({{"prefill": prefill, "decode": {decode} / (time.perf_counter() - t)}}))
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        return {"error": (p.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=48, help="greedy tokens per run")
    ap.add_argument("--only", choices=sorted(TARGETS), action="append")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "--bin", "psy"], cwd=ROOT, check=True)
    psy = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "psy"
    for name in args.only or list(TARGETS):
        model = requantize(name, TARGETS[name])
        types = tensor_types(model)
        q = psy_generate(psy, model, "quantized", args.tokens, args.threads)
        f = psy_generate(psy, model, "quantized-f32act", args.tokens, args.threads)
        equal = q["generated_ids"] == f["generated_ids"]
        first_diff = next((i for i, (a, b) in enumerate(zip(q["generated_ids"], f["generated_ids"]))
                           if a != b), None)
        ref = llama_decode(model, q["timings"]["prefill_tokens"], q["timings"]["decode_tokens"],
                           args.threads)
        print(json.dumps({
            "file": name, "bytes": model.stat().st_size, "tensor_types": types,
            "greedy_ids_equal": equal, "ids": len(q["generated_ids"]), "first_difference": first_diff,
            "psy_int8_decode_tok_s": round(q["timings"]["decode_tokens_per_second"], 2),
            "psy_f32act_decode_tok_s": round(f["timings"]["decode_tokens_per_second"], 2),
            "psy_int8_prefill_tok_s": round(q["timings"]["prefill_tokens_per_second"], 2),
            "llama_cpp": {k: round(v, 2) if isinstance(v, float) else v for k, v in ref.items()},
            "prompt_tokens": q["timings"]["prefill_tokens"], "time": time.strftime("%H:%M:%S"),
            "text": q["text"][:120],
        }), flush=True)


if __name__ == "__main__":
    main()
