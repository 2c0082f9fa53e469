#!/usr/bin/env python3
"""Training-step throughput on the CPU: psy (Burn, `cargo bench --bench train`) beside PyTorch.

The same steps as benches/train.rs, same shapes, f32, same thread count, same token ids:
  * full fine-tuning of a random Qwen3 (hidden 256, 4 layers, 4/2 heads, head_dim 64,
    intermediate 768, vocab 32000, tied), batch 4 x 128;
  * LoRA (peft: r 16, alpha 32, dropout 0.05, all seven projections) on a random Qwen3 with the
    Qwen3-0.6B shape, batch 1 x 512.
One step = forward, mean cross-entropy over all shifted tokens, backward, clip_grad_norm_(1.0),
torch.optim.AdamW step, zero_grad.

Needs: pip install torch transformers peft
Usage: scripts/compare_train_speed.py [--threads 2] [--steps 5] [--skip-psy] [--only tiny|lora]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STEPS = {
    "tiny": dict(group="full-ft-tiny-qwen3", rows=4, seq=128),
    "lora": dict(group="lora-qwen3-0.6b-seq512", rows=1, seq=512),
}


def target_dir() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def psy_tokens_per_s(key: str, threads: int, skip: bool) -> float:
    s = STEPS[key]
    if not skip:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        subprocess.run(
            ["cargo", "bench", "--bench", "train", "--", s["group"]], cwd=ROOT, env=env, check=True
        )
    est = target_dir() / "criterion" / s["group"] / "step" / f"{s['rows']}x{s['seq']}" / "new" / "estimates.json"
    secs = json.loads(est.read_text())["median"]["point_estimate"] / 1e9
    return s["rows"] * s["seq"] / secs


def batch(rows, seq, vocab):
    import torch

    ids = [[(r * 1_000_003 + i * 7919 + 13) % vocab for i in range(seq)] for r in range(rows)]
    return torch.tensor(ids)


def qwen3(hidden, inter, layers, heads, kv, head_dim, vocab, attn):
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    cfg = Qwen3Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=layers,
        num_attention_heads=heads, num_key_value_heads=kv, head_dim=head_dim, rope_theta=1e6,
        tie_word_embeddings=True, max_position_embeddings=1024, attn_implementation=attn,
    )
    return Qwen3ForCausalLM(cfg).float()


def torch_tokens_per_s(key: str, steps: int, attn: str) -> float:
    import torch

    s = STEPS[key]
    if key == "tiny":
        model = qwen3(256, 768, 4, 4, 2, 64, 32000, attn)
        vocab = 32000
    else:
        from peft import LoraConfig, get_peft_model

        model = qwen3(1024, 3072, 28, 16, 8, 128, 151936, attn)
        vocab = 151936
        model = get_peft_model(
            model,
            LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, task_type="CAUSAL_LM",
                       target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
        )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    ids = batch(s["rows"], s["seq"], vocab)

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return s["rows"] * s["seq"] / statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--skip-psy", action="store_true", help="reuse the last criterion results")
    ap.add_argument("--only", choices=list(STEPS))
    a = ap.parse_args()
    import torch

    torch.set_num_threads(a.threads)
    keys = [a.only] if a.only else list(STEPS)
    rows = []
    for key in keys:
        psy = psy_tokens_per_s(key, a.threads, a.skip_psy)
        eager = torch_tokens_per_s(key, a.steps, "eager")
        sdpa = torch_tokens_per_s(key, a.steps, "sdpa")
        rows.append((key, psy, eager, sdpa))
    print(f"\nthreads {a.threads}, torch {torch.__version__}, load {os.getloadavg()}")
    print("| step | psy tok/s | PyTorch eager tok/s | PyTorch sdpa tok/s | psy / eager | psy / sdpa |")
    print("|---|---|---|---|---|---|")
    for key, psy, eager, sdpa in rows:
        s = STEPS[key]
        print(
            f"| {s['group']} {s['rows']}x{s['seq']} | {psy:.0f} | {eager:.0f} | {sdpa:.0f} "
            f"| {psy / eager:.2f} | {psy / sdpa:.2f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
