#!/usr/bin/env python3
"""Checks a job written by `psy train M --export-job DIR --engine llamafactory` against
LLaMA-Factory's own preprocessing: for every exported example, the token ids LLaMA-Factory
builds from `DIR/data` with `DIR/train.yaml` must equal psy's (`DIR/psy_samples.jsonl`), and
its trained tokens must be psy's plus exactly the newline the template writes after each
trained end-of-turn token (LLaMA-Factory trains it; psy stops at the end-of-turn token).

Needs: pip install llamafactory (0.9.x; brings torch and transformers). No GPU: bf16 and
DeepSpeed are switched off for preprocessing only.

Usage: python3 scripts/reference/check_llamafactory_export.py DIR [--tokenizer PATH]
Prints one line per dataset and exits 1 on any mismatch.
"""
import argparse
import json
import os
import sys
import tempfile

import yaml


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("job")
    ap.add_argument("--tokenizer", help="tokenizer directory (default: the one psy used)")
    a = ap.parse_args()
    job = os.path.abspath(a.job)
    report = json.load(open(os.path.join(job, "export_report.json")))
    tok = a.tokenizer or report["tokenizer"]
    if os.path.isfile(tok):
        tok = os.path.dirname(tok)

    from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
    from llamafactory.hparams import get_train_args
    from llamafactory.model import load_tokenizer

    args = yaml.safe_load(open(os.path.join(job, "train.yaml")))
    args.pop("deepspeed", None)
    out = tempfile.mkdtemp(prefix="lf-check-")
    args.update(
        model_name_or_path=tok,
        dataset_dir=os.path.join(job, "data"),
        output_dir=out,
        bf16=False,
        preprocessing_num_workers=None,
        report_to="none",
    )
    model_args, data_args, training_args, _, _ = get_train_args(args)
    tokenizer_module = load_tokenizer(model_args)
    template = get_template_and_fix_tokenizer(tokenizer_module["tokenizer"], data_args)
    ds = get_dataset(template, model_args, data_args, training_args, stage="sft", **tokenizer_module)
    tk = tokenizer_module["tokenizer"]
    eos = set(tk.convert_tokens_to_ids(["<|im_end|>"]))
    newline = tk.encode("\n", add_special_tokens=False)

    psy = {}
    for line in open(os.path.join(job, "psy_samples.jsonl")):
        r = json.loads(line)
        psy.setdefault(r["dataset"], []).append(r)

    bad = 0
    for name, key in [("psy_train", "train_dataset"), ("psy_eval", "eval_dataset")]:
        ours = psy.get(name, [])
        theirs = ds.get(key)
        theirs = [] if theirs is None else list(theirs)
        if len(ours) != len(theirs):
            print(f"{name}: psy has {len(ours)} examples, LLaMA-Factory {len(theirs)}")
            bad += 1
            continue
        ids_equal = masks_equal = newline_only = 0
        for p, l in zip(ours, theirs):
            # psy's ids end at the trained end-of-turn token; LLaMA-Factory's carry the newline
            # its template writes after it.
            if l["input_ids"] not in (p["input_ids"], p["input_ids"] + newline):
                if bad < 5:
                    print(f"{name} #{p['index']} ({p['origin']}): token ids differ")
                bad += 1
                continue
            ids_equal += 1
            ours_t = {i for i, x in enumerate(p["labels"]) if x != -100}
            theirs_t = {i for i, x in enumerate(l["labels"]) if x != -100}
            # LLaMA-Factory's extra trained positions: the template's "\n" after a trained eos.
            extra = theirs_t - ours_t
            allowed = {i + 1 for i in ours_t if p["input_ids"][i] in eos}
            if ours_t <= theirs_t and extra <= allowed and len(extra) == len(allowed & set(range(len(l["input_ids"])))):
                masks_equal += 1
                newline_only += len(extra)
            else:
                if bad < 5:
                    print(f"{name} #{p['index']} ({p['origin']}): trained tokens differ "
                          f"(psy only {sorted(ours_t - theirs_t)[:8]}, LLaMA-Factory only {sorted(extra - allowed)[:8]})")
                bad += 1
        print(f"{name}: {len(ours)} examples; token ids equal in {ids_equal}, trained tokens equal "
              f"(up to the {newline_only} end-of-turn newlines LLaMA-Factory also trains) in {masks_equal}")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
