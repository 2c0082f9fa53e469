#!/usr/bin/env python3
"""Go/no-go for a second stage of the crisis screen over a causal LM's hidden states, on the
exemplars' validation split only (never tests/heldout/).

A second stage would re-read only the pieces the MiniLM screen raises and veto (lower to its own
level) the ones its head rates below a veto cut-off; it never lowers the lexicon's level or the
session carry. This script measures whether any of psy's LMs could do that:

  1. extract features of every exemplar (a-i) and of writer j's sessions with an LM read from
     its GGUF (transformers dequantises it; bf16 compute): per layer, the mean over the message's
     own tokens and the last token's state, with the text framed by a fixed preamble
     (`--framing plain`) or by the chat template asking whether the client is at risk
     (`--framing question`, which also records the logit of "yes" minus "no");
  2. train logistic heads (L2, full-batch L-BFGS) for P(>= moderate), P(>= high) and
     P(imminent) on the training split, split exactly as `psy train-screen` splits
     (FNV-1a of the folded text, one in five to validation);
  3. report (a) the head alone: false alarms at the cut-offs that keep 95% of acute messages at
     high and 90% of elevated ones at moderate; (b) the head as a veto over the shipped guard's
     validation readings (`scripts/screen_validation.sh` writes them): the largest veto cut-off
     on P(>= high) (a vetoed piece falls to moderate) and then on P(>= moderate) (it falls to
     low) that keeps the guard at >= 95% acute and >= 90% elevated on the messages.

The replay caps the screen's level of a turn (the highest of its message, sentence and context
views) at the head's level of the whole text (for a session, the context view as the screen is
trained on it); the lexicon's level stays, and a session level the carry raised above both stays
too (the readings do not hold earlier turns). Every figure is on the split the cut-offs are set
on: a fit.

  PYTHONPATH= /tmp/torch-venv/bin/python scripts/lm_probe_screen.py extract \
      --gguf ~/.cache/psy/assets/qwen2.5-coder/qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf \
      --framing plain --out /tmp/feat.npz
  PYTHONPATH= /tmp/torch-venv/bin/python scripts/lm_probe_screen.py evaluate /tmp/feat.npz \
      --readings target/screen-validation.jsonl

`lora` fine-tunes the LM itself as the reader (LoRA on a band of layers, a head on the mean of
the message's tokens after the band, the layers above dropped), trained on the training split as
the screen is, and writes the validation items' probabilities; `evaluate` then reports the reader
alone, in the screen's place beside the lexicon, and as a veto:

  PYTHONPATH= /tmp/torch-venv/bin/python scripts/lm_probe_screen.py lora \
      --gguf ~/.cache/psy/assets/qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf \
      --first 10 --last 18 --rank 16 --epochs 2 --seed 7 --out /tmp/lora-s7.npz
  PYTHONPATH= /tmp/torch-venv/bin/python scripts/lm_probe_screen.py evaluate /tmp/lora-s7.npz

Needs: pip install torch transformers gguf numpy peft
"""
import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np

LEVELS = {"none": 0, "low": 1, "moderate": 2, "high": 3, "imminent": 4}
EXEMPLARS = "plugins/safety/screen/exemplars"
EXTRA_SETS = ["plugins/safety/screen/candidates/j.jsonl"]
# The screen reads a session's last turn with this many earlier ones (score::CONTEXT_TURNS).
CONTEXT_TURNS = 2
PLAIN_PREAMBLE = "Message from a client:\n"
QUESTION_BEFORE = "Read this message from a client of a counseling service:\n\n"
QUESTION_AFTER = (
    "\n\nIs the client at risk of suicide, self-harm or harming someone right now? "
    "Answer yes or no."
)
MAX_MESSAGE_TOKENS = 256


def split_hash(text):
    """psy train-screen's FNV-1a over the text's alphanumerics, lowercased."""
    h = 0xCBF29CE484222325
    for b in "".join(c for c in text if c.isalnum()).lower().encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def context_text(turns):
    """The last turn, then the earlier ones newest first (exemplars::context_text)."""
    out = turns[-1]
    for t in list(reversed(turns[:-1]))[:CONTEXT_TURNS]:
        out += "\n" + t
    return out


def read_items(paths):
    items = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if not line.strip():
                    continue
                d = json.loads(line)
                text = context_text(d["messages"]) if "messages" in d else d["text"]
                level = LEVELS[d["level"]]
                items.append({
                    "id": f"{os.path.basename(path)}:{i + 1}",
                    "text": text,
                    "level": level,
                    # Helpers asking about a friend are trained as not at risk themselves.
                    "train_level": 0 if d["category"] == "helper-asking" else level,
                    "category": d["category"],
                    "session": "messages" in d,
                    "valid": split_hash(text) % 5 == 0,
                })
    return items


def exemplar_items(root):
    return read_items(sorted(glob.glob(os.path.join(root, EXEMPLARS, "*.jsonl"))))


def refuse_heldout(path):
    if "heldout" in os.path.abspath(path):
        sys.exit(f"{path}: the held-out sets are measured once with `psy eval risk`, never here")


def extract(args):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(args.threads)
    folder, name = os.path.split(os.path.expanduser(args.gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    model = model.eval().to(torch.bfloat16)
    if args.framing == "plain":
        before, after = PLAIN_PREAMBLE, ""
    else:
        chat = tok.apply_chat_template(
            [{"role": "user", "content": "@@@"}], tokenize=False, add_generation_prompt=True)
        head, tail = chat.split("@@@")
        before, after = head + QUESTION_BEFORE, QUESTION_AFTER + tail
    ids_of = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    pre, suf = ids_of(before), ids_of(after) if after else []
    yes = [ids_of(w)[0] for w in ("Yes", "yes")]
    no = [ids_of(w)[0] for w in ("No", "no")]
    items = exemplar_items(args.root) + read_items([os.path.join(args.root, p) for p in EXTRA_SETS])
    if args.limit:
        items = items[: args.limit]
    n_layers = model.config.num_hidden_layers
    layers = list(range(n_layers // 3, n_layers + 1, max(1, n_layers // 10)))
    if n_layers not in layers:
        layers.append(n_layers)
    seqs, spans = [], []
    for it in items:
        ids = ids_of(it["text"])[:MAX_MESSAGE_TOKENS]
        seqs.append(pre + ids + suf)
        spans.append((len(pre), len(pre) + len(ids)))
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))
    width = model.config.hidden_size
    mean = np.zeros((len(layers), len(items), width), np.float32)
    last = np.zeros((len(layers), len(items), width), np.float32)
    yes_no = np.zeros(len(items), np.float32)
    start = time.time()
    with torch.no_grad():
        for s in range(0, len(order), args.batch):
            idx = order[s: s + args.batch]
            longest = max(len(seqs[i]) for i in idx)
            inp = torch.zeros((len(idx), longest), dtype=torch.long)
            att = torch.zeros((len(idx), longest), dtype=torch.long)
            for r, i in enumerate(idx):
                inp[r, : len(seqs[i])] = torch.tensor(seqs[i])
                att[r, : len(seqs[i])] = 1
            out = model(input_ids=inp, attention_mask=att, output_hidden_states=True)
            for r, i in enumerate(idx):
                lg = out.logits[r, len(seqs[i]) - 1].float()
                yes_no[i] = (torch.logsumexp(lg[yes], 0) - torch.logsumexp(lg[no], 0)).item()
            for li, layer in enumerate(layers):
                h = out.hidden_states[layer].float()
                for r, i in enumerate(idx):
                    a, b = spans[i]
                    mean[li, i] = h[r, a:b].mean(0).numpy()
                    last[li, i] = h[r, len(seqs[i]) - 1].numpy()
    seconds = time.time() - start
    tokens = sum(map(len, seqs))
    print(f"{len(items)} texts, {tokens} tokens, {seconds:.0f} s", file=sys.stderr)
    np.savez(args.out, mean=mean, last=last, yn=yes_no, layers=np.array(layers),
             ids=np.array([it["id"] for it in items]), seconds=seconds, tokens=tokens)


def lora(args):
    """Fine-tune the LM's layers [first, last) with LoRA and a head on the mean of the message's
    own tokens after layer `last` (the layers above are dropped), on the training split only, as
    `psy train-screen` trains the MiniLM screen (the three cumulative outputs, helpers asking about
    someone else as not at risk). Writes the validation items' probabilities, which `evaluate` reads."""
    import random

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    folder, name = os.path.split(os.path.expanduser(args.gguf))
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    lm = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    base = lm.model
    base.layers = base.layers[: args.last]
    base.config.num_hidden_layers = args.last
    base = base.to(torch.bfloat16)
    del lm
    for prm in base.parameters():
        prm.requires_grad_(False)
    projections = ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                   "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
    cfg = LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.05,
                     target_modules=[f"layers.{n}.{m}" for n in range(args.first, args.last)
                                     for m in projections])
    model = get_peft_model(base, cfg)
    head = torch.nn.Linear(base.config.hidden_size, 3)
    ids_of = lambda s: tok(s, add_special_tokens=False)["input_ids"]
    pre = ids_of(PLAIN_PREAMBLE)
    items = exemplar_items(args.root)
    if args.limit:
        items = items[: args.limit]
    seqs = [pre + ids_of(it["text"])[:MAX_MESSAGE_TOKENS] for it in items]
    target = torch.tensor([[float(it["train_level"] >= k) for k in (2, 3, 4)] for it in items])

    def batches(idx, shuffle):
        idx = sorted(idx, key=lambda i: len(seqs[i]))
        out = [idx[s: s + args.batch] for s in range(0, len(idx), args.batch)]
        if shuffle:
            random.shuffle(out)
        return out

    def forward(idx):
        longest = max(len(seqs[i]) for i in idx)
        inp = torch.zeros((len(idx), longest), dtype=torch.long)
        att = torch.zeros((len(idx), longest), dtype=torch.long)
        own = torch.zeros((len(idx), longest, 1))
        for r, i in enumerate(idx):
            inp[r, : len(seqs[i])] = torch.tensor(seqs[i])
            att[r, : len(seqs[i])] = 1
            own[r, len(pre): len(seqs[i])] = 1
        h = model(input_ids=inp, attention_mask=att).last_hidden_state.float()
        return head((h * own).sum(1) / own.sum(1))

    train = [i for i, it in enumerate(items) if not it["valid"]]
    steps = args.epochs * len(batches(train, False))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": params, "lr": args.lr},
                             {"params": head.parameters(), "lr": args.head_lr}],
                            weight_decay=0.01)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / max(1, steps - warm))))
    start, step = time.time(), 0
    model.train()
    for epoch in range(args.epochs):
        total, n = 0.0, 0
        for idx in batches(train, True):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(forward(idx), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            total, n = total + loss.item() * len(idx), n + len(idx)
            if step % 20 == 0:
                print(f"epoch {epoch + 1} step {step}/{steps} loss {total / n:.4f} "
                      f"{time.time() - start:.0f} s", file=sys.stderr, flush=True)
        print(f"epoch {epoch + 1}: loss {total / n:.4f}, {time.time() - start:.0f} s",
              file=sys.stderr, flush=True)
    model.eval()
    p = np.zeros((len(items), 3), np.float32)
    with torch.no_grad():
        for idx in batches([i for i, it in enumerate(items) if it["valid"]], False):
            p[idx] = torch.sigmoid(forward(idx)).numpy()
    np.savez(args.out, p=p, ids=np.array([it["id"] for it in items]),
             seconds=time.time() - start, settings=json.dumps(vars(args)))
    print(f"wrote {args.out} ({time.time() - start:.0f} s)", file=sys.stderr)


def fit_logistic(x, y, l2):
    import torch

    x, y = torch.tensor(x), torch.tensor(y, dtype=torch.float32)
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=300, history_size=20,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, y)
        loss = loss + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), b.detach().numpy()


def head_probabilities(items, feats, l2):
    """P(>= moderate), P(>= high), P(imminent) of every item, heads fit on the training split."""
    x = feats[: len(items)].astype(np.float64)
    train = np.array([not it["valid"] for it in items])
    mu, sd = x[train].mean(0), x[train].std(0) + 1e-6
    xs = ((x - mu) / sd).astype(np.float32)
    tl = np.array([it["train_level"] for it in items])
    p = np.zeros((len(items), 3))
    for k, level in enumerate((2, 3, 4)):
        w, b = fit_logistic(xs[train], (tl[train] >= level).astype(np.float32), l2)
        p[:, k] = 1 / (1 + np.exp(-(xs @ w + b)))
    return p


def cut_for(scores, recall):
    s = np.sort(scores)[::-1]
    return s[int(math.ceil(recall * len(s))) - 1]


def head_alone(items, p):
    """False alarms of the head alone at the cut-offs that keep the recall constraints."""
    msg = np.array([it["valid"] and not it["session"] for it in items])
    # The guard's report counts helpers asking about someone else as not at risk, as trained.
    lvl = np.array([it["train_level"] for it in items])
    acute, elevated, calm = msg & (lvl >= 3), msg & (lvl == 2), msg & (lvl <= 1)
    high = cut_for(p[acute, 1], 0.95)
    moderate = cut_for(p[elevated | acute, 0], 0.90)
    alarms = ((p[calm, 1] >= high) | (p[calm, 0] >= moderate)).sum()
    return alarms, calm.sum()


def replay(readings, p_by_id, veto_high, veto_moderate):
    """The guard's level per reading with the screen's level capped by the head's."""
    out = []
    for r in readings:
        guard, lexicon = LEVELS[r["guard"]], LEVELS[r["lexicon"]]
        screen = max(LEVELS[r["message"]], LEVELS[r["sentence"]], LEVELS[r["context"]])
        p = p_by_id[r["id"]]
        cap = 4 if p[1] >= veto_high else (2 if p[0] >= veto_moderate else 1)
        capped = min(screen, cap) if screen >= 2 else screen
        carry = guard if guard > max(lexicon, screen) else 0
        out.append(max(lexicon, capped, carry))
    return np.array(out)


def tally(readings, levels, which):
    idx = [i for i, r in enumerate(readings) if r["set"] == which]
    lab = np.array([LEVELS[readings[i]["level"]] for i in idx])
    g = levels[idx]
    return ((g[lab >= 3] >= 3).sum(), (lab >= 3).sum(), (g[lab == 2] >= 2).sum(),
            (lab == 2).sum(), (g[lab <= 1] >= 2).sum(), (lab <= 1).sum())


def calibrate_veto(readings, p_by_id):
    """Largest veto cut-offs (P(>= high), then P(>= moderate)) keeping the guard's constraints."""
    base = tally(readings, np.array([LEVELS[r["guard"]] for r in readings]),
                 "validation messages")
    need_acute, need_elevated = math.ceil(0.95 * base[1]), math.ceil(0.90 * base[3])

    def holds(vh, vm):
        t = tally(readings, replay(readings, p_by_id, vh, vm), "validation messages")
        return t[0] >= need_acute and t[2] >= need_elevated

    vh = 0.0
    for c in sorted({float(p[1]) for p in p_by_id.values()}):
        if not holds(c, 0.0):
            break
        vh = c
    vm = 0.0
    for c in sorted({float(p[0]) for p in p_by_id.values()}):
        if c > vh or not holds(vh, c):
            break
        vm = c
    return vh, vm


def price_of_half(readings, p_by_id):
    """Guard figures on the messages at the smallest single veto cut-off (both outputs) that
    removes half of the shipped guard's false alarms; None when no cut-off does."""
    base = tally(readings, np.array([LEVELS[r["guard"]] for r in readings]),
                 "validation messages")
    for c in sorted({float(p[0]) for p in p_by_id.values()} | {float(p[1]) for p in p_by_id.values()}):
        t = tally(readings, replay(readings, p_by_id, c, c), "validation messages")
        if 2 * t[4] <= base[4]:
            return c, t
    return None


def as_screen(readings, p_by_id, keep=("lexicon",)):
    """The head in the screen's place: the guard's level as the highest of the head's and the
    `keep` detectors' (the lexicon; or also the shipped screen's sentence and context views), the
    head's cut-offs the largest that keep >= 95% acute and >= 90% elevated on the messages."""
    msgs = [r for r in readings if r["set"] == "validation messages"]
    lab = np.array([LEVELS[r["level"]] for r in msgs])
    kept = lambda r: max(LEVELS[r[k]] for k in keep)
    lex = np.array([kept(r) for r in msgs])
    p = np.array([p_by_id[r["id"]] for r in msgs])
    need_acute = math.ceil(0.95 * (lab >= 3).sum())
    need_elevated = math.ceil(0.90 * (lab == 2).sum())
    high = max(c for c in np.unique(p[:, 1])
               if ((np.maximum(lex, np.where(p[:, 1] >= c, 3, 1)) >= 3) & (lab >= 3)).sum()
               >= need_acute)

    def level(q, lx, moderate):
        return max(lx, 3 if q[1] >= high else (2 if q[0] >= moderate else 1))

    moderate = max(c for c in np.unique(p[:, 0])
                   if sum(level(q, lx, c) >= 2 for q, lx, lb in zip(p, lex, lab) if lb == 2)
                   >= need_elevated)
    levels = np.array([level(p_by_id[r["id"]], kept(r), moderate) for r in readings])
    return high, moderate, levels


def report_probabilities(items, readings, p):
    """`evaluate` on a file `lora` wrote: a fine-tuned reader's own probabilities."""
    p_by_id = {it["id"]: p[i] for i, it in enumerate(items)}
    alarms, calm = head_alone(items, p)
    print(f"reader alone at 95% acute / 90% elevated recall: false alarms {alarms}/{calm}")
    high, moderate, levels = as_screen(readings, p_by_id)
    m = tally(readings, levels, "validation messages")
    s = tally(readings, levels, "validation sessions")
    print(f"in the screen's place (cut-offs high {high:.4f}, moderate {moderate:.4f}), with the "
          f"lexicon: messages acute {m[0]}/{m[1]}, elevated {m[2]}/{m[3]}, false alarms "
          f"{m[4]}/{m[5]}; sessions {s[0]}/{s[1]}, {s[2]}/{s[3]}, {s[4]}/{s[5]}")
    high, moderate, levels = as_screen(readings, p_by_id, ("lexicon", "sentence", "context"))
    m = tally(readings, levels, "validation messages")
    s = tally(readings, levels, "validation sessions")
    print(f"in the message view's place (cut-offs high {high:.4f}, moderate {moderate:.4f}), with "
          f"the lexicon and the shipped sentence and context views: messages acute {m[0]}/{m[1]}, "
          f"elevated {m[2]}/{m[3]}, false alarms {m[4]}/{m[5]}; sessions {s[0]}/{s[1]}, "
          f"{s[2]}/{s[3]}, {s[4]}/{s[5]}")
    vh, vm = calibrate_veto(readings, p_by_id)
    after = replay(readings, p_by_id, vh, vm)
    m = tally(readings, after, "validation messages")
    s = tally(readings, after, "validation sessions")
    print(f"as a veto over the shipped screen (cut-offs {vh:.4f}, {vm:.4f}): messages acute "
          f"{m[0]}/{m[1]}, elevated {m[2]}/{m[3]}, false alarms {m[4]}/{m[5]}; sessions "
          f"{s[0]}/{s[1]}, {s[2]}/{s[3]}, {s[4]}/{s[5]}")


def evaluate(args):
    refuse_heldout(args.readings)
    items = exemplar_items(args.root)
    feats = np.load(args.features)
    with open(args.readings, encoding="utf-8") as f:
        readings = [json.loads(line) for line in f]
    base = np.array([LEVELS[r["guard"]] for r in readings])
    for which in ("validation messages", "validation sessions"):
        a, na, e, ne, fa, nf = tally(readings, base, which)
        print(f"shipped guard, {which}: acute {a}/{na}, elevated {e}/{ne}, false alarms {fa}/{nf}")
    if "p" in feats:
        got = dict(zip(feats["ids"], feats["p"]))
        report_probabilities(items, readings, np.array([got[it["id"]] for it in items]))
        return
    views = [("yes-no logit", feats["yn"][:, None])] if "yn" in feats else []
    for kind in ("mean", "last"):
        for li, layer in enumerate(feats["layers"]):
            views.append((f"{kind} of layer {layer}", feats[kind][li]))
    print("| features | head alone: false alarms | veto cut-offs (high, moderate) | "
          "guard messages: acute, elevated, false alarms | sessions | "
          "half the alarms vetoed costs (cut-off: acute, elevated) |")
    print("|---|---|---|---|---|---|")
    for name, x in views:
        p = head_probabilities(items, x, args.l2)
        alarms, calm = head_alone(items, p)
        p_by_id = {it["id"]: p[i] for i, it in enumerate(items)}
        vh, vm = calibrate_veto(readings, p_by_id)
        after = replay(readings, p_by_id, vh, vm)
        m = tally(readings, after, "validation messages")
        s = tally(readings, after, "validation sessions")
        half = price_of_half(readings, p_by_id)
        half = f"{half[0]:.3f}: {half[1][0]}, {half[1][2]}" if half else "no cut-off"
        print(f"| {name} | {alarms}/{calm} | {vh:.4f}, {vm:.4f} | {m[0]}/{m[1]}, {m[2]}/{m[3]}, "
              f"{m[4]}/{m[5]} | {s[0]}/{s[1]}, {s[2]}/{s[3]}, {s[4]}/{s[5]} | {half} |",
              flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=os.path.join(os.path.dirname(__file__), ".."))
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("extract")
    ex.add_argument("--gguf", required=True)
    ex.add_argument("--framing", choices=("plain", "question"), default="plain")
    ex.add_argument("--out", required=True)
    ex.add_argument("--threads", type=int, default=2)
    ex.add_argument("--batch", type=int, default=16)
    ex.add_argument("--limit", type=int, default=0)
    ev = sub.add_parser("evaluate")
    ev.add_argument("features")
    ev.add_argument("--readings", default="target/screen-validation.jsonl")
    ev.add_argument("--l2", type=float, default=1e-2)
    lo = sub.add_parser("lora")
    lo.add_argument("--gguf", required=True)
    lo.add_argument("--out", required=True)
    lo.add_argument("--first", type=int, default=10, help="lowest layer given adapters")
    lo.add_argument("--last", type=int, default=18, help="layers kept; the head reads its output")
    lo.add_argument("--rank", type=int, default=16)
    lo.add_argument("--lr", type=float, default=2e-4)
    lo.add_argument("--head-lr", type=float, default=1e-3)
    lo.add_argument("--epochs", type=int, default=2)
    lo.add_argument("--batch", type=int, default=16)
    lo.add_argument("--seed", type=int, default=7)
    lo.add_argument("--threads", type=int, default=2)
    lo.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    {"extract": extract, "evaluate": evaluate, "lora": lora}[args.cmd](args)


if __name__ == "__main__":
    main()
