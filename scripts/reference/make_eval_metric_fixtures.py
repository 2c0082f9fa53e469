#!/usr/bin/env python3
"""BLEU and ROUGE-L fixtures for psy-eval's metric tests, computed by sacrebleu and rouge-score.

Pairs of (hypothesis, reference) cover counseling-style replies, exact and partial matches,
empty and one-word edge cases, punctuation, numbers, HTML entities, hyphenation at a line
break, non-ASCII text and Chinese (for sacrebleu's `zh` tokenizer). For each pair: sacrebleu's
sentence_bleu (default: 13a, exp smoothing, effective order) and rouge-score's ROUGE-L with
use_stemmer=False; for the whole set: corpus_bleu with one and with two reference streams, and
the `zh` tokenizer on the Chinese pairs.

Usage: pip install sacrebleu rouge-score && python3 scripts/reference/make_eval_metric_fixtures.py
Output: engine/eval/tests/fixtures/metrics.json
"""

import json
import sys
from importlib.metadata import version
from pathlib import Path

import sacrebleu
from rouge_score import rouge_scorer
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a
from sacrebleu.tokenizers.tokenizer_zh import TokenizerZh

ROOT = Path(__file__).resolve().parents[2]

PAIRS = [
    ("It sounds like you have been carrying a lot on your own lately.",
     "It sounds like you have been carrying a lot by yourself recently."),
    ("What has been the hardest part of this week for you?",
     "What has been the hardest part of this week for you?"),
    ("I hear how tired you are.", "You sound exhausted, and that makes sense."),
    ("", "Tell me more about that."),
    ("Tell me more about that.", ""),
    ("", ""),
    ("Yes.", "Yes."),
    ("Okay", "Okay."),
    ("Hmm...", "Hmm?"),
    ("That's a lot to hold, isn't it?", "That is a lot to hold, is it not?"),
    ("You've slept 3.5 hours a night, on average, for 2 weeks.",
     "You have slept about 3.5 hours each night for two weeks."),
    ("Your rent went up by 1,000 dollars in 2024-2025.",
     "The rent rose by $1,000 between 2024 and 2025."),
    ("Work & family both pull at you &amp; it wears you down.",
     "Work and family both pull at you, and it wears you down."),
    ("You said it was \"fine\" - but was it?", "You called it \"fine\", yet was it really?"),
    ("Self-care isn't selfish; it's necessary.", "Self care is not selfish: it is necessary."),
    ("When did the panic first start?\nWas it at work?", "When did the panic start, at work?"),
    ("I'm won-\nderfully glad you came.", "I am wonderfully glad you came."),
    ("(Take a breath.) We can go slowly.", "Let's take a breath [together] and go slowly."),
    ("Email me at a@b.com or call 555-0100.", "Call 555-0100 or write to a@b.com."),
    ("THE SAME WORDS IN CAPITALS", "the same words in capitals"),
    ("Café, naïve, résumé — all words.", "Cafe, naive, resume - all words."),
    ("You feel stuck between two choices, and neither feels right.",
     "Neither choice feels right, and you feel stuck between the two."),
    ("Grief does not follow a schedule.", "There is no timetable for grief."),
    ("Can you say more?", "Could you tell me more about what happened after that?"),
    ("It makes sense that you would feel angry after being treated that way, and it also sounds like part of you is hurt.",
     "Anger makes sense after being treated like that; I also hear some hurt underneath it."),
    ("a a a a a a", "a a a"),
    ("the cat the cat the cat", "the cat sat on the mat"),
    ("1 2 3 4 5", "1 2 3 4 5 6"),
    ("word <skipped> word", "word word"),
    ("Are you safe right now?  Are you thinking of hurting yourself?",
     "Are you safe right now? Are you having thoughts of hurting yourself?"),
    ("It\u2019s okay to rest.", "It's okay to rest."),
    ("Sleep: 4h/night; mood 3/10.", "Sleep 4 h per night, mood 3 of 10."),
]

# A second reference stream for corpus BLEU with two references per hypothesis.
SECOND_REFS = [r[::-1] if i % 3 == 0 else r.upper() if i % 3 == 1 else "Tell me more." for i, (_, r) in enumerate(PAIRS)]

ZH_PAIRS = [
    ("听起来你最近一个人承受了很多。", "听起来你最近独自承担了很多压力。"),
    ("你现在安全吗？", "你现在是安全的吗？"),
    ("我们可以慢慢来，不着急。", "不着急，我们可以慢慢来。"),
    ("他说“没关系”，但你很难过。", "他说没关系，可你其实很难过。"),
    ("你这周睡了大约3.5个小时。", "这周你每晚只睡了3.5小时左右。"),
    ("Work压力很大，对吗？", "工作压力很大吧？"),
]


def bleu_dict(b):
    return {"score": b.score, "counts": b.counts, "totals": b.totals,
            "precisions": b.precisions, "bp": b.bp, "sys_len": b.sys_len, "ref_len": b.ref_len}


def main():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = []
    for hyp, ref in PAIRS:
        r = scorer.score(ref, hyp)["rougeL"]
        pairs.append({
            "hyp": hyp, "ref": ref,
            "tokens_13a": Tokenizer13a()(hyp.rstrip()),
            "sentence_bleu": bleu_dict(sacrebleu.sentence_bleu(hyp, [ref])),
            "rouge_l": {"precision": r.precision, "recall": r.recall, "fmeasure": r.fmeasure},
        })
    hyps = [h for h, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    zh = []
    zh_tok = TokenizerZh()
    for hyp, ref in ZH_PAIRS:
        zh.append({"hyp": hyp, "ref": ref, "tokens_zh": zh_tok(hyp.rstrip()),
                   "sentence_bleu": bleu_dict(sacrebleu.sentence_bleu(hyp, [ref], tokenize="zh"))})
    out = {
        "provenance": (
            f"python3 scripts/reference/make_eval_metric_fixtures.py; sacrebleu {version('sacrebleu')}, "
            f"rouge-score {version('rouge-score')}, Python {sys.version.split()[0]}"
        ),
        "pairs": pairs,
        "corpus_bleu": bleu_dict(sacrebleu.corpus_bleu(hyps, [refs])),
        "second_refs": SECOND_REFS,
        "corpus_bleu_two_refs": bleu_dict(sacrebleu.corpus_bleu(hyps, [refs, SECOND_REFS])),
        "zh_pairs": zh,
        "zh_corpus_bleu": bleu_dict(sacrebleu.corpus_bleu([h for h, _ in ZH_PAIRS],
                                                          [[r for _, r in ZH_PAIRS]], tokenize="zh")),
    }
    dest = ROOT / "engine" / "eval" / "tests" / "fixtures" / "metrics.json"
    dest.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    print(f"wrote {dest}: {len(pairs)} English pairs, {len(zh)} Chinese pairs")


if __name__ == "__main__":
    main()
