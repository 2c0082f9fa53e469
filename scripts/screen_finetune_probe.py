#!/usr/bin/env python3
"""Go/no-go for a better-trained MiniLM crisis screen, on the exemplars' validation split only
(never tests/heldout/).

Trains the screen in torch on exactly what `psy train-screen` trains on (every exemplar of the
training split: whole messages, and for a session its last turn read with the two before it,
split by FNV-1a of the folded text, one in five to validation; `scripts/lm_probe_screen.py`'s
loader), with the Rust trainer's model (all-MiniLM-L6-v2, mean pooling, L2 normalisation, a head
of one hidden layer with three cumulative level outputs trained with binary cross-entropy and a
24-way category output with half weight, AdamW, batches of similar length in a seeded order),
and writes the result as a screen directory in psy's own format:

  head.safetensors     the head (`member0.hidden.*`, `member0.level.*`, `member0.category.*`:
                       a screen of one member);
  adapter.safetensors  `member0.encoder.layer.N.<projection>.lora_a/.lora_b` with the scale
                       folded in;
                       a full fine-tune of the blocks' linear weights is written exactly, as a
                       "full-rank adapter" (lora_a the identity, lora_b the weight's change),
                       which psy merges as `W += lora_b · lora_a`;
  screen.toml          the shipped spec with the new hashes, the adapted encoder's probe and the
                       run's settings (thresholds are then set by psy itself).

psy then measures it exactly as it measures the shipped screen, so nothing about the guard is
re-implemented here:

  target/release/psy train-screen --recalibrate --out DIR   # cut-offs by psy's own rules;
                                                            # [validation] = the screen alone
  scripts/screen_validation.sh DIR                          # through the whole guard

`run` does all three (training, recalibration, the guard's report) and appends one JSON line of
figures to --log; `train` only trains and writes the directory, `measure` only measures it (psy
from $CARGO_TARGET_DIR/release, else target/release). Every figure is on the validation split the cut-offs are set on: a fit.

  PYTHONPATH= /tmp/torch-venv/bin/python scripts/screen_finetune_probe.py run \
      --name lora-top3 --mode lora --layers 3 --rank 8 --lr 1e-3 --epochs 6 --seed 7

Needs: pip install torch transformers safetensors tokenizers numpy
"""
import argparse
import hashlib
import json
import math
import os
import random
import re
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from lm_probe_screen import exemplar_items  # noqa: E402  (the split and the loader)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENCODER = os.path.expanduser("~/.cache/psy/assets/minilm")
SHIPPED = os.path.join(ROOT, "plugins/safety/screen")
CATEGORIES = [
    "wish-dead", "ideation-nonspecific", "ideation-method", "ideation-intent", "ideation-plan",
    "preparatory", "attempt-aborted", "attempt-interrupted", "attempt-actual", "attempt-ongoing",
    "self-harm", "harm-others", "hopelessness", "idiom-hyperbole", "game", "fiction", "news",
    "grief", "medical-question", "professional", "helper-asking", "past-resolved",
    "everyday-distress", "ordinary",
]
LOOKALIKES = set(CATEGORIES[13:])
PROJECTIONS = [
    "attention.self.query", "attention.self.key", "attention.self.value",
    "attention.output.dense", "intermediate.dense", "output.dense",
]
PROBE_TEXT = "I have been feeling low since the winter and I am not sure why."


def targets(level):
    return [float(level >= 2), float(level >= 3), float(level == 4)]


class Lora:
    """A low-rank adapter on one nn.Linear (A uniform in ±1/sqrt(in), B zero; dropout on the
    adapter's input, as psy's and PEFT's adapters do)."""

    def __init__(self, torch, lin, rank, scale, dropout, gen):
        nn = torch.nn
        inp, out = lin.in_features, lin.out_features
        bound = 1.0 / math.sqrt(inp)
        self.a = nn.Parameter((torch.rand(rank, inp, generator=gen) * 2 - 1) * bound)
        self.b = nn.Parameter(torch.zeros(out, rank))
        self.scale, self.drop = scale, nn.Dropout(dropout)
        base = lin.forward

        def forward(x):
            return base(x) + (self.drop(x) @ self.a.t() @ self.b.t()) * self.scale

        lin.forward = forward


def build(args, torch):
    from transformers import BertModel

    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    model = BertModel.from_pretrained(ENCODER, add_pooling_layer=False, attn_implementation="eager")
    model.eval()  # psy's encoder has no dropout; only the adapters drop (as in the Rust trainer)
    for p in model.parameters():
        p.requires_grad_(False)
    layers = model.encoder.layer
    tuned = list(range(len(layers) - args.layers, len(layers)))
    adapters = {}
    if args.mode == "lora":
        targets_ = args.targets.split(",") if args.targets else PROJECTIONS
        for i in tuned:
            for name in targets_:
                lin = layers[i].get_submodule(name)
                adapters[(i, name)] = Lora(torch, lin, args.rank, args.alpha / args.rank,
                                           args.dropout, gen)
        params = [p for a in adapters.values() for p in (a.a, a.b)]
    else:  # full: every linear weight (and bias) of the tuned blocks; LayerNorm stays
        params = []
        for i in tuned:
            for name in PROJECTIONS:
                lin = layers[i].get_submodule(name)
                lin.weight.requires_grad_(True)
                params.append(lin.weight)
                if args.train_bias:
                    lin.bias.requires_grad_(True)
                    params.append(lin.bias)
    nn = torch.nn
    head = nn.ModuleDict({
        "hidden": nn.Linear(384, args.hidden),
        "level": nn.Linear(args.hidden, 3),
        "category": nn.Linear(args.hidden, len(CATEGORIES)),
    })
    return model, head, adapters, params, tuned


def embed(model, torch, ids, mask):
    out = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
    h = out.last_hidden_state
    m = mask.unsqueeze(-1).to(h.dtype)
    pooled = (h * m).sum(1) / m.sum(1).clamp_min(1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def train(args):
    import torch
    from tokenizers import Tokenizer

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    items = exemplar_items(ROOT)
    train_items = [it for it in items if not it["valid"]]
    if args.limit:
        train_items = train_items[: args.limit]
    tok = Tokenizer.from_file(os.path.join(ENCODER, "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(args.max_len)
    enc = [tok.encode(it["text"]).ids for it in train_items]
    order = sorted(range(len(train_items)), key=lambda i: (len(enc[i]), i))
    batches = [order[k:k + args.batch] for k in range(0, len(order), args.batch)]

    model, head, adapters, params, tuned = build(args, torch)
    head_params = list(head.parameters())
    groups = [{"params": params, "lr": args.lr}, {"params": head_params, "lr": args.head_lr or args.lr}]
    opt = torch.optim.AdamW(groups, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay)
    steps = len(batches) * args.epochs
    warm = int(args.warmup * steps)

    def factor(step):
        if args.schedule == "constant":
            return 1.0
        if step < warm:
            return (step + 1) / max(1, warm)
        return max(0.0, (steps - step) / max(1, steps - warm))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    cat_index = {c: i for i, c in enumerate(CATEGORIES)}
    weights = []
    for it in train_items:
        w = 1.0
        if it["train_level"] <= 1 and it["category"] in LOOKALIKES:
            w = args.lookalike_weight
        weights.append(w)
    losses = []
    started = time.time()
    for epoch in range(args.epochs):
        random.shuffle(batches)
        total = 0.0
        for chunk in batches:
            width = max(len(enc[i]) for i in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for r, i in enumerate(chunk):
                ids[r, : len(enc[i])] = torch.tensor(enc[i])
                mask[r, : len(enc[i])] = 1
            y = torch.tensor([targets(train_items[i]["train_level"]) for i in chunk])
            if args.smooth:
                y = y * (1 - args.smooth) + 0.5 * args.smooth
            c = torch.tensor([cat_index[train_items[i]["category"]] for i in chunk])
            w = torch.tensor([weights[i] for i in chunk])
            for a in adapters.values():
                a.drop.train()
            if args.encoder_dropout:
                model.train()  # BERT's own dropout (0.1), as BERT fine-tuning uses it
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
                pooled = embed(model, torch, ids, mask)
            pooled = pooled.float()
            h = torch.relu(head["hidden"](pooled))
            lz, cz = head["level"](h), head["category"](h)
            bce = torch.nn.functional.binary_cross_entropy_with_logits(lz, y, reduction="none").mean(1)
            ce = torch.nn.functional.cross_entropy(cz, c, reduction="none")
            loss = ((bce + args.category_weight * ce) * w).sum() / w.sum()
            opt.zero_grad()
            loss.backward()
            if args.clip:
                torch.nn.utils.clip_grad_norm_(params + head_params, args.clip)
            opt.step()
            sched.step()
            total += loss.item()
        losses.append(total / len(batches))
        print(f"epoch {epoch + 1}: loss {losses[-1]:.4f} ({time.time() - started:.0f} s)",
              file=sys.stderr, flush=True)
    for a in adapters.values():
        a.drop.eval()
    model.eval()
    return model, head, adapters, tuned, losses, time.time() - started, tok


def export(args, torch, model, head, adapters, tuned, tok):
    """Writes the screen directory in psy's format (see the module's doc)."""
    from safetensors.torch import save_file
    from transformers import BertModel

    out = args.out
    os.makedirs(out, exist_ok=True)
    tensors = {}
    if args.mode == "lora":
        for (i, name), a in sorted(adapters.items()):
            tensors[f"encoder.layer.{i}.{name}.lora_a"] = a.a.detach().contiguous()
            tensors[f"encoder.layer.{i}.{name}.lora_b"] = (a.b.detach() * a.scale).contiguous()
    else:
        base = BertModel.from_pretrained(ENCODER, add_pooling_layer=False)
        for i in tuned:
            for name in PROJECTIONS:
                w = model.encoder.layer[i].get_submodule(name).weight.detach()
                w0 = base.encoder.layer[i].get_submodule(name).weight.detach()
                delta = w - w0
                if args.export_rank:  # a truncated SVD of the change: what a small file keeps
                    u, s, v = torch.linalg.svd(delta, full_matrices=False)
                    r = args.export_rank
                    tensors[f"encoder.layer.{i}.{name}.lora_a"] = v[:r].contiguous()
                    tensors[f"encoder.layer.{i}.{name}.lora_b"] = (u[:, :r] * s[:r]).contiguous()
                else:
                    tensors[f"encoder.layer.{i}.{name}.lora_a"] = torch.eye(w.shape[1])
                    tensors[f"encoder.layer.{i}.{name}.lora_b"] = delta.contiguous()
                if args.train_bias:
                    b = model.encoder.layer[i].get_submodule(name).bias.detach()
                    b0 = base.encoder.layer[i].get_submodule(name).bias.detach()
                    if (b - b0).abs().max() > 0:
                        print("note: bias changes are not written (psy's adapter format has "
                              "no bias)", file=sys.stderr)
    adapter_path = os.path.join(out, "adapter.safetensors")
    head_path = os.path.join(out, "head.safetensors")
    # A screen of one member: psy names member i's tensors `member<i>.<name>`.
    save_file({f"member0.{k}": v.float() for k, v in tensors.items()}, adapter_path)
    save_file({
        f"member0.{k}.{p}": getattr(head[k], p).detach().float().contiguous()
        for k in ("hidden", "level", "category") for p in ("weight", "bias")
    }, head_path)
    # The adapted encoder's probe, computed with the merged weights as psy will.
    with torch.no_grad():
        ids = torch.tensor([tok.encode(PROBE_TEXT).ids])
        probe = embed(model, torch, ids, torch.ones_like(ids))[0, :16].tolist()
    sha = lambda p: hashlib.sha256(open(p, "rb").read()).hexdigest()  # noqa: E731
    spec = open(os.path.join(SHIPPED, "screen.toml"), encoding="utf-8").read()
    spec = re.sub(r'weights_sha256 = "[0-9a-f]+"', f'weights_sha256 = "{sha(head_path)}"', spec)
    spec = re.sub(r'adapter_sha256 = "[0-9a-f]+"', f'adapter_sha256 = "{sha(adapter_path)}"', spec)
    # The shipped ensemble's members give way to this one member (an array of tables may
    # close the file).
    spec = re.sub(r"(?m)^\[\[members\]\]\n(?:(?!\[).*\n?)*", "", spec).rstrip("\n")
    spec += ("\n\n[[members]]\nseed = %d\nadapted_probe = [" % args.seed
             + ", ".join(f"{x:.9g}" for x in probe) + "]\n")
    for key, value in [("tuned_layers", args.layers), ("rank", args.rank if args.mode == "lora" else 0),
                       ("batch", args.batch), ("epochs", args.epochs),
                       ("learning_rate", args.lr), ("hidden", args.hidden)]:
        spec = re.sub(rf"(?m)^{key} = .*$", f"{key} = {value}", spec)
    with open(os.path.join(out, "screen.toml"), "w", encoding="utf-8") as f:
        f.write(spec)


def psy(args):
    return os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                        "release", "psy")


def measure(args):
    """psy's own calibration and the guard's report on the screen in args.out."""
    exemplars = os.path.join(ROOT, "plugins/safety/screen/exemplars")
    subprocess.run([psy(args), "train-screen", "--recalibrate", "--exemplars", exemplars,
                    "--out", args.out], check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    spec = open(os.path.join(args.out, "screen.toml"), encoding="utf-8").read()
    alone = {k: json.loads(re.search(rf"(?m)^{k} = (\[.*\])$", spec.split("[validation]")[1]).group(1))
             for k in ("acute", "elevated", "false_alarms")}
    readings = os.path.join(args.out, "readings.jsonl")
    report = subprocess.run(
        [psy(args), "train-screen", "--report", "--out", args.out, "--exemplars", exemplars,
         "--readings", readings], check=True, cwd=ROOT, capture_output=True, text=True)
    with open(os.path.join(args.out, "report.txt"), "w", encoding="utf-8") as f:
        f.write(report.stdout + report.stderr)
    return alone, report.stdout + report.stderr


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["run", "train", "measure"])
    ap.add_argument("--name", required=True)
    ap.add_argument("--out", help="screen directory (default /tmp/screen-probe/NAME)")
    ap.add_argument("--mode", choices=["lora", "full"], default="lora")
    ap.add_argument("--layers", type=int, default=3, help="upper blocks tuned")
    ap.add_argument("--targets", default="", help="LoRA projections (default: all six)")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=16.0, help="LoRA alpha (scale = alpha/rank)")
    ap.add_argument("--dropout", type=float, default=0.1, help="adapter input dropout")
    ap.add_argument("--encoder-dropout", action="store_true",
                    help="BERT's dropout in the encoder while training (psy's trainer has none)")
    ap.add_argument("--train-bias", action="store_true")
    ap.add_argument("--export-rank", type=int, default=0)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--head-lr", type=float, default=0.0, help="head learning rate (default --lr)")
    ap.add_argument("--schedule", choices=["constant", "linear"], default="constant")
    ap.add_argument("--warmup", type=float, default=0.1, help="warm-up share of steps (linear)")
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--clip", type=float, default=0.0)
    ap.add_argument("--category-weight", type=float, default=0.5)
    ap.add_argument("--lookalike-weight", type=float, default=1.0)
    ap.add_argument("--smooth", type=float, default=0.0, help="label smoothing of the levels")
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the encoder")
    ap.add_argument("--limit", type=int, default=0, help="train on the first N items (timing)")
    ap.add_argument("--log", default="/tmp/screen-probe/results.jsonl")
    args = ap.parse_args()
    args.out = args.out or f"/tmp/screen-probe/{args.name}"
    if "heldout" in os.path.abspath(args.out):
        sys.exit("the held-out sets are measured once with `psy eval risk`, never here")
    import torch

    record = {"name": args.name, "settings": {k: v for k, v in vars(args).items()
                                              if k not in ("command", "log", "out", "name")}}
    if args.command in ("run", "train"):
        model, head, adapters, tuned, losses, seconds, tok = train(args)
        export(args, torch, model, head, adapters, tuned, tok)
        record.update(losses=[round(x, 4) for x in losses], train_seconds=round(seconds))
        if args.command == "train":
            print(json.dumps(record))
            return
    alone, report = measure(args)
    record["screen_alone"] = alone
    record["report"] = [l for l in report.splitlines() if l.strip()][:40]
    os.makedirs(os.path.dirname(args.log), exist_ok=True)
    with open(args.log, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")
    print(json.dumps({k: record[k] for k in record if k != "report"}))
    print(report)


if __name__ == "__main__":
    main()
