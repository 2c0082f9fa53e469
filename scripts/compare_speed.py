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
RAYON_NUM_THREADS set to the same thread count and PSY_BENCH_PREFILL to the prompt lengths. For
the quantized models with 8-bit activations psy's prefill is also reported by the path before
the integer GEMM ("GEMM > 4": Burn's GEMM on dequantised tiles), measured in the same run.
psy's and llama.cpp's decode step both follow each prompt (decode at 512 tokens of context
with --prompt 512).

Needs: pip install torch transformers gguf llama-cpp-python
transformers' prefill is the median of several forwards after a warm-up, measured with the logits
of every position (`model(x)`) and with the last position's only (`logits_to_keep=1`, as
`generate` runs it and as psy's bench computes): the prefill goal is judged against the latter.

Usage: scripts/compare_speed.py [--threads N] [--prompt 64[,512]] [--decode 32] [--skip-psy]
       [--bench-filter REGEX]   (only the psy bench groups matching REGEX, e.g. 'gguf-q/|q4km-q/';
                                 the other engines run only for the models measured)
       [--skip-engines hf-smollm2,...]
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPT_LEN_BENCH = 64  # the default prompt, as PREFILL in benches/decode.rs


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


def psy_bench(threads, prompts, run=True, bench_filter=None):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads),
               PSY_BENCH_PREFILL=",".join(str(n) for n in prompts))
    target = Path(env.get("CARGO_TARGET_DIR", ROOT / "target"))
    # Results older than this run (a group the filter left out, or a bench that did not run)
    # are not reported as if they were measured now.
    since = time.time() if run else 0.0
    if run:
        cmd = ["cargo", "bench", "--bench", "decode"]
        if bench_filter:
            cmd += ["--", bench_filter]
        subprocess.run(cmd, cwd=ROOT, env=env, check=True)
    out = {}
    for group, key in (("smollm2-135m-gguf", "smollm2"), ("smollm2-135m-gguf-q", "smollm2-q"),
                       ("smollm2-135m-gguf-q-f32act", "smollm2-q-f32act"),
                       ("qwen2.5-1.5b-q4km-q", "qwen2.5-q"), ("qwen2.5-1.5b-q4km-q-f32act", "qwen2.5-q-f32act"),
                       ("qwen3-0.6b-shape-random", "qwen3")):
        for prefill in ("prefill", "prefill-gemm"):
            for n in prompts:
                res = {}
                for bench, length, count in ((prefill, n, n), ("decode", n, 1)):
                    est = target / "criterion" / group / bench / str(length) / "new" / "estimates.json"
                    if not est.is_file() or est.stat().st_mtime < since:
                        res = {"error": f"no criterion result for {group}/{bench}/{length} from this run"}
                        break
                    ns = json.loads(est.read_text())["mean"]["point_estimate"]
                    res[bench] = count / (ns * 1e-9)
                res["prefill"] = res.pop(prefill, None)
                out[(key, prefill, n)] = res
    return out


PREFILL_RUNS = 7  # timed prefill forwards per transformers measurement, after one warm-up


def torch_time(model, ids, decode, torch):
    """Prefill and per-token decode tokens/s with the KV cache, greedy.

    Prefill is timed PREFILL_RUNS times after a warm-up and reported as the median (with min
    and max), twice: `model(x)` as before, which computes logits for every position, and with
    `logits_to_keep=1` as `generate` calls it (only the last position's logits; psy's bench
    computes only those too). The second is the stricter reference.
    """
    import statistics

    def prefill_rates(**kwargs):
        rates = []
        for _ in range(PREFILL_RUNS):
            t = time.perf_counter()
            out = model(x, use_cache=True, **kwargs)
            rates.append(len(ids) / (time.perf_counter() - t))
        return out, rates

    with torch.inference_mode():
        x = torch.tensor([ids])
        model(x, use_cache=True)  # warm-up
        _, all_logits = prefill_rates()
        out, last_logits = prefill_rates(logits_to_keep=1)
        past = out.past_key_values
        tok = out.logits[:, -1:].argmax(-1)
        t = time.perf_counter()
        for _ in range(decode):
            out = model(tok, past_key_values=past, use_cache=True)
            past = out.past_key_values
            tok = out.logits[:, -1:].argmax(-1)
        dec = decode / (time.perf_counter() - t)
    return {"prefill": statistics.median(last_logits), "prefill_range": [min(last_logits), max(last_logits)],
            "prefill_all_logits": statistics.median(all_logits),
            "prefill_all_logits_range": [min(all_logits), max(all_logits)], "decode": dec}


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
    llm = Llama(model_path=str(path), n_threads=threads, n_threads_batch=threads,
                n_ctx=max(512, n_prompt + decode + 8), n_batch=512, verbose=False)
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
    ap.add_argument("--prompt", default=str(PROMPT_LEN_BENCH),
                    help="prompt length, or several separated by commas (e.g. 64,512)")
    ap.add_argument("--decode", type=int, default=32)
    ap.add_argument("--skip-psy", action="store_true", help="reuse the last criterion results")
    ap.add_argument("--bench-filter", help="criterion filter for psy's bench groups")
    ap.add_argument("--skip-engines", help="comma-separated engines not to run: " + ", ".join(sorted(ENGINES)))
    ap.add_argument("--only", choices=sorted(ENGINES), help=argparse.SUPPRESS)
    args = ap.parse_args()
    prompts = [int(n) for n in str(args.prompt).split(",")]

    if args.only:
        _, _, fn = ENGINES[args.only]
        print(json.dumps(fn(args.threads, prompts[0], args.decode)))
        return

    rows = []
    load_start = os.getloadavg()[0]
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    psy = psy_bench(args.threads, prompts, run=not args.skip_psy, bench_filter=args.bench_filter)
    labels = (("smollm2", "smollm2", "psy (f32)"), ("smollm2-q", "smollm2", "psy (Q4_1, int8 act)"),
              ("smollm2-q-f32act", "smollm2", "psy (Q4_1, f32 act)"),
              ("qwen2.5-q", "qwen2.5", "psy (Q4_K_M, int8 act)"),
              ("qwen2.5-q-f32act", "qwen2.5", "psy (Q4_K_M, f32 act)"), ("qwen3", "qwen3", "psy (f32)"))
    for n in prompts:
        for key, model, label in labels:
            res = psy[(key, "prefill", n)]
            if "error" in res and args.bench_filter:
                continue  # a group the filter left out
            rows.append((model, n, label, res))
            if key.endswith("-q"):
                rows.append((model, n, label.replace(")", ", GEMM > 4)"), psy[(key, "prefill-gemm", n)]))
        measured = {r[0] for r in rows if r[1] == n and "error" not in r[3]}
        for engine, (model, label, _) in ENGINES.items():
            if args.skip_engines and engine in args.skip_engines.split(","):
                continue
            if args.bench_filter and model not in measured:
                continue  # no psy figure of this model to compare with in this run
            one = argparse.Namespace(**{**vars(args), "prompt": n})
            res = run_isolated(engine, one)
            if "prefill_all_logits" in res:
                rows.append((model, n, label.replace(")", ", logits of all positions)"),
                             {"prefill": res["prefill_all_logits"], "range": res["prefill_all_logits_range"],
                              "decode": res["decode"]}))
                res = {**res, "range": res["prefill_range"]}
                label = label.replace(")", ", last logits only)")
            rows.append((model, n, label, res))

    cpu = next((l.split(":", 1)[1].strip() for l in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if l.startswith("Model name")), "?")
    print(f"\ncpu: {cpu}; started {started}; 1-minute load average at the start / end: "
          f"{load_start:.1f} / {os.getloadavg()[0]:.1f}")
    print(f"threads={args.threads} decode={args.decode} (tokens/s, batch 1)")
    print(f"{'model':<10} {'prompt':>6} {'engine':<50} {'prefill':>10} {'decode':>10}")
    for model, n, engine, r in sorted(rows, key=lambda r: (r[0], r[1]), reverse=True):
        if "error" in r or r.get("prefill") is None:
            print(f"{model:<10} {n:>6} {engine:<50} {'n/a':>10} {'n/a':>10}  ({r.get('error', '?')[:100]})")
        else:
            spread = f"  (prefill min-max {r['range'][0]:.1f}-{r['range'][1]:.1f})" if "range" in r else ""
            print(f"{model:<10} {n:>6} {engine:<50} {r['prefill']:>10.1f} {r['decode']:>10.2f}{spread}")
    print("psy: criterion mean. transformers prefill: median of %d forwards after a warm-up; the "
          "prefill goal (>= 1.0x transformers) is judged against 'last logits only' (as generate "
          "runs it, and as psy computes), the stricter reference." % PREFILL_RUNS)


if __name__ == "__main__":
    main()
