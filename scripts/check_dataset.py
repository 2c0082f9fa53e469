#!/usr/bin/env python3
"""Checks a dataset in the PsyLLM pipeline record format, as the illustrative set must be:
valid JSON per line, unique post_ids, 2-4 rounds numbered 1..n, non-empty fields, reasoning
traces with the plan's six steps in order, no diagnostic label in a client-facing reply, and
crisis resources in every reply to a round whose risk is acute or elevated.

Exits non-zero with file:line messages on any problem; prints a summary.
Usage: scripts/check_dataset.py manifests/train/data/illustrative.jsonl
"""
import collections
import json
import re
import sys

STEPS = [
    "Emotion:",
    "Pattern:",
    "Diagnostic considerations (private, not for the client):",
    "Risk:",
    "Modality:",
    "Plan:",
]
BANNED = [
    "depression", "depressive", "disorder", "PTSD", "OCD", "bipolar", "ADHD", "schizophrenia",
    "borderline", "anorexia", "bulimia", "diagnosis", "diagnose", "DSM", "ICD", "agoraphobia",
    "insomnia",
]
BANNED_RE = re.compile(r"\b(" + "|".join(BANNED) + r")\b", re.IGNORECASE)
RESOURCE_RE = re.compile(r"988|911|emergency|crisis line|hotline", re.IGNORECASE)
MODALITIES = {
    "CBT", "ACT", "DBT", "MI", "person-centred", "psychodynamic", "family-systems", "SFBT",
    "behavioural-activation", "crisis",
}


def main(path):
    problems = []
    seen = set()
    per_modality = collections.Counter()
    rounds_total = chars = crisis_rounds = 0
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            where = f"{path}:{n}"
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                problems.append(f"{where}: invalid JSON: {e}")
                continue
            pid = rec.get("post_id")
            if not pid or pid in seen:
                problems.append(f"{where}: missing or duplicate post_id {pid!r}")
            seen.add(pid)
            if rec.get("illustrative") is not True:
                problems.append(f"{where}: not marked illustrative")
            if rec.get("modality") not in MODALITIES:
                problems.append(f"{where}: modality {rec.get('modality')!r} not one of {sorted(MODALITIES)}")
            per_modality[rec.get("modality")] += 1
            conv = rec.get("conversation") or []
            if not 2 <= len(conv) <= 4:
                problems.append(f"{where}: {len(conv)} rounds (expected 2-4)")
            for i, r in enumerate(conv, 1):
                at = f"{where}: round {i}"
                if r.get("round") != i:
                    problems.append(f"{at}: numbered {r.get('round')}")
                for k in ("patient", "counselor_think", "counselor_content"):
                    if not isinstance(r.get(k), str) or not r[k].strip():
                        problems.append(f"{at}: empty `{k}`")
                think = r.get("counselor_think", "")
                pos = [think.find(s) for s in STEPS]
                if -1 in pos or pos != sorted(pos):
                    problems.append(f"{at}: reasoning steps missing or out of order")
                reply = r.get("counselor_content", "")
                m = BANNED_RE.search(reply)
                if m:
                    problems.append(f"{at}: reply names the label `{m.group(0)}`")
                risk = think.split("Risk:", 1)[-1].strip().lower()
                if risk.startswith(("acute", "elevated")):
                    crisis_rounds += 1
                    if not RESOURCE_RE.search(reply):
                        problems.append(f"{at}: risk is {risk.split('.')[0]!r} but the reply gives no crisis resource")
                rounds_total += 1
                chars += sum(len(r.get(k, "")) for k in ("patient", "counselor_think", "counselor_content"))
    for p in problems:
        print(p)
    print(
        f"{len(seen)} dialogues, {rounds_total} rounds, {crisis_rounds} acute/elevated-risk rounds, "
        f"{chars} characters; per modality: "
        + ", ".join(f"{k} {v}" for k, v in sorted(per_modality.items()))
    )
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1]))
