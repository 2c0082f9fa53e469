#!/usr/bin/env python3
"""Side-by-side CPU throughput: psy (Burn runtime) vs HF transformers vs llama.cpp.

Same shapes, prompt length, decode length and thread count for every engine, batch 1:
  * SmolLM2-135M-Instruct from its Q4_1 GGUF: psy runs it dequantised to f32 and with its weights
    kept quantized (Q4_1/Q8_0 blocks), multiplied with 8-bit activations (integer kernels, the
    default) and with f32 activations (the path before them); transformers dequantises it to f32; llama.cpp
    (llama-cpp-python) runs the Q4_1 weights directly.
  * Qwen2.5-Coder-1.5B-Instruct Q4_K_M (`scripts/setup.sh --qwen`): psy quantized (8-bit and f32
    activations) and llama.cpp, all on the file's K-quant weights (skipped when the file is absent).
  * A random Qwen3 with the Qwen3-0.6B shape (f32) in psy and transformers.

psy figures come from `cargo bench --bench decode` (criterion's estimates.json), run with
RAYON_NUM_THREADS set to the same thread count.

Needs: pip install torch transformers gguf llama-cpp-python
Usage: scripts/compare_speed.py [--threads N] [--prompt 64] [--decode 32] [--skip-psy]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT_LEN_BENCH = 64  # must match PREFILL in benches/decode.rs


def assets() -> Path:
    return Path(os.environ.get("PSY_ASSETS", Path.home() / ".cache/psy/assets"))


def gguf_path() -> Path:
    p = assets() / "smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    if not p.is_file():
        sys.exit(f"{p} missing: run scripts/setup.sh")
    return p


def qwen25_path() -> Path:
    return assets() / "qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"


def prompt_ids(n, vocab):
    # Same ids as benches/decode.rs.
    return [(i * 7919 + 13) % vocab for i in range(n)]


def psy_bench(threads, run=True):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    target = Path(env.get("CARGO_TARGET_DIR", ROOT / "target"))
    if run:
        subprocess.run(["cargo", "bench", "--bench", "decode"], cwd=ROOT, env=env, check=True)
    out = {}
    for group, key in (("smollm2-135m-gguf", "smollm2"), ("smollm2-135m-gguf-q", "smollm2-q"),
                       ("smollm2-135m-gguf-q-f32act", "smollm2-q-f32act"),
                       ("qwen2.5-1.5b-q4km-q", "qwen2.5-q"), ("qwen2.5-1.5b-q4km-q-f32act", "qwen2.5-q-f32act"),
                       ("qwen3-0.6b-shape-random", "qwen3")):
        res = {}
        for bench, n in (("prefill", PROMPT_LEN_BENCH), ("decode", 1)):
            est = target / "criterion" / group / bench / str(PROMPT_LEN_BENCH) / "new" / "estimates.json"
            if not est.is_file():
                res = {"error": f"no criterion result for {group} (asset missing?)"}
                break
            ns = json.loads(est.read_text())["mean"]["point_estimate"]
            res[bench] = n / (ns * 1e-9)
        out[key] = res
    return out


def torch_time(model, ids, decode, torch):
    """Prefill tokens/s and per-token decode tokens/s with the KV cache, greedy."""
    with torch.inference_mode():
        x = torch.tensor([ids])
        model(x, use_cache=True)  # warm-up
        t = time.perf_counter()
        out = model(x, use_cache=True)
        prefill = len(ids) / (time.perf_counter() - t)
        past = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        t = time.perf_counter()
        for _ in range(decode):
            out = model(tok, past_key_values=past, use_cache=True)
            past = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
        dec = decode / (time.perf_counter() - t)
    return {"prefill": prefill, "decode": dec}


def hf_smollm2(threads, n_prompt, decode):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    p = gguf_path()
    model = AutoModelForCausalLM.from_pretrained(str(p.parent), gguf_file=p.name, torch_dtype=torch.float32)
    model.eval()
    return torch_time(model, prompt_ids(n_prompt, model.config.vocab_size), decode, torch)


def hf_qwen3(threads, n_prompt, decode):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.set_num_threads(threads)
    cfg = Qwen3Config(vocab_size=151936, hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
                      num_attention_heads=16, num_key_value_heads=8, head_dim=128, tie_word_embeddings=True,
                      rope_theta=1e6, max_position_embeddings=4096)
    model = Qwen3ForCausalLM(cfg).eval()
    return torch_time(model, prompt_ids(n_prompt, cfg.vocab_size), decode, torch)


def llama_cpp(threads, n_prompt, decode, path=None):
    from llama_cpp import Llama

    path = path or gguf_path()
    if not path.is_file():
        raise SystemExit(f"{path} missing: run scripts/setup.sh --qwen")
    llm = Llama(model_path=str(path), n_threads=threads, n_threads_batch=threads, n_ctx=512,
                n_batch=512, verbose=False)
    ids = prompt_ids(n_prompt, llm.n_vocab())
    llm.eval(ids)  # warm-up
    llm.reset()
    t = time.perf_counter()
    llm.eval(ids)
    prefill = n_prompt / (time.perf_counter() - t)
    t = time.perf_counter()
    for i in range(decode):
        llm.eval([42 + i])
    dec = decode / (time.perf_counter() - t)
    return {"prefill": prefill, "decode": dec}


def llama_cpp_qwen25(threads, n_prompt, decode):
    return llama_cpp(threads, n_prompt, decode, qwen25_path())


ENGINES = {
    "hf-smollm2": ("smollm2", "transformers (f32)", hf_smollm2),
    "llama-smollm2": ("smollm2", "llama.cpp (Q4_1)", llama_cpp),
    "llama-qwen25": ("qwen2.5", "llama.cpp (Q4_K_M)", llama_cpp_qwen25),
    "hf-qwen3": ("qwen3", "transformers (f32)", hf_qwen3),
}


def run_isolated(engine, args):
    """Each engine in its own process: torch and llama.cpp ship clashing OpenMP runtimes."""
    cmd = [sys.executable, __file__, "--only", engine, "--threads", str(args.threads),
           "--prompt", str(args.prompt), "--decode", str(args.decode)]
    p = subprocess.run(cmd, capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr.strip().splitlines() or ["exit code %d" % p.returncode])[-1]
        return {"error": tail}
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--prompt", type=int, default=PROMPT_LEN_BENCH)
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--skip-psy", action="store_true", help="reuse the last criterion results")
    ap.add_argument("--only", choices=sorted(ENGINES), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.only:
        _, _, fn = ENGINES[args.only]
        print(json.dumps(fn(args.threads, args.prompt, args.decode)))
        return

    rows = []
    load_start = os.getloadavg()[0]
    psy = psy_bench(args.threads, run=not args.skip_psy)
    rows.append(("smollm2", "psy (f32)", psy["smollm2"]))
    rows.append(("smollm2", "psy (Q4_1, int8 act)", psy["smollm2-q"]))
    rows.append(("smollm2", "psy (Q4_1, f32 act)", psy["smollm2-q-f32act"]))
    rows.append(("qwen2.5", "psy (Q4_K_M, int8 act)", psy["qwen2.5-q"]))
    rows.append(("qwen2.5", "psy (Q4_K_M, f32 act)", psy["qwen2.5-q-f32act"]))
    rows.append(("qwen3", "psy (f32)", psy["qwen3"]))
    for engine, (model, label, _) in ENGINES.items():
        rows.append((model, label, run_isolated(engine, args)))

    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")), "?")
    print(f"\ncpu: {cpu}; 1-minute load average at the start / end: {load_start:.1f} / {os.getloadavg()[0]:.1f}")
    print(f"threads={args.threads} prompt={args.prompt} decode={args.decode} (tokens/s, batch 1)")
    print(f"{'model':<10} {'engine':<24} {'prefill':>10} {'decode':>10}")
    for model, engine, r in sorted(rows, key=lambda r: r[0], reverse=True):
        if "error" in r:
            print(f"{model:<10} {engine:<24} {'n/a':>10} {'n/a':>10}  ({r['error'][:100]})")
        else:
            print(f"{model:<10} {engine:<24} {r['prefill']:>10.1f} {r['decode']:>10.2f}")


if __name__ == "__main__":
    main()
