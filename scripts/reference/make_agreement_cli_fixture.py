#!/usr/bin/env python3
"""Reference numbers for `psy eval agree` (tests/eval_agreement.rs): two judged cells and a
human-ratings CSV with hand-chosen scores, compared as the command does.

Per measure present on both sides, over the items both rated:
- quadratic-weighted Cohen's kappa (scikit-learn) of the scores rounded half away from zero
  (Rust's f64::round; Python's round() would round 2.5 to 2), with labels = the rubric's whole
  scale for shipped rubrics (psyllm-v2 1..5, cpsycoun professionalism 0..3), otherwise None
  (scikit-learn then uses the observed union, as psy does);
- Krippendorff's alpha (the `krippendorff` package), interval level, on the unrounded scores;
- the mean absolute difference.

The scores below are the same as in tests/eval_agreement.rs; paste the printed numbers there.

Usage: pip install numpy scikit-learn krippendorff && \
       python3 scripts/reference/make_agreement_cli_fixture.py
"""

import math
from importlib.metadata import version

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score

EMPATHY = "psyllm-v2.empathy_insight"
PROF = "cpsycoun.professionalism"
WARMTH = "site-rubric.warmth"

# Judge A: means over two repeats (so halves occur), items d1#1..d8#1; d9#1 only here.
JUDGE_A = {
    EMPATHY: [4.5, 2, 1, 5, 4, 2, 1.5, 4, 3],
    PROF: [2.5, 3, 1, 0.5, 2, 3, 1, 2],
    WARMTH: [3, 7, 5, 5, 9, 7, 3, 5],
}
# Judge B: one repeat, items d1#1..d8#1 (its d9#1 judge call failed).
JUDGE_B = {
    EMPATHY: [4, 2, 2, 5, 5, 1, 1, 4],
    PROF: [2, 3, 1, 1, 2, 2, 0, 2],
    WARMTH: [3, 5, 5, 7, 9, 7, 3, 3],
}
# Humans (CSV): empathy on d1..d6 and d10 (d10 only here), professionalism on d1..d8.
HUMAN = {
    EMPATHY: {1: 5, 2: 2, 3: 1, 4: 4, 5: 4, 6: 3, 10: 2},
    PROF: {1: 3, 2: 3, 3: 2, 4: 1, 5: 2, 6: 3, 7: 1, 8: 1},
}
SCALES = {EMPATHY: list(range(1, 6)), PROF: list(range(0, 4)), WARMTH: None}


def round_half_away(x):
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


def as_items(scores):
    if isinstance(scores, dict):
        return {f"d{i}#1": float(v) for i, v in scores.items()}
    return {f"d{i + 1}#1": float(v) for i, v in enumerate(scores)}


def compare(name, a, b):
    print(f"== {name}")
    for measure in sorted(set(a) & set(b)):
        ia, ib = as_items(a[measure]), as_items(b[measure])
        keys = sorted(set(ia) & set(ib))
        x = [ia[k] for k in keys]
        y = [ib[k] for k in keys]
        kappa = cohen_kappa_score(
            [round_half_away(v) for v in x],
            [round_half_away(v) for v in y],
            labels=SCALES[measure],
            weights="quadratic",
        )
        observed = cohen_kappa_score(
            [round_half_away(v) for v in x],
            [round_half_away(v) for v in y],
            weights="quadratic",
        )
        alpha = krippendorff.alpha(
            reliability_data=np.array([x, y]), level_of_measurement="interval"
        )
        mad = float(np.mean(np.abs(np.array(x) - np.array(y))))
        print(
            f"{measure}: n={len(keys)} kappa={kappa!r} (observed labels: {observed!r}) "
            f"alpha={alpha!r} mad={mad!r} only_a={sorted(set(ia) - set(ib))} "
            f"only_b={sorted(set(ib) - set(ia))}"
        )


def main():
    print(
        f"scikit-learn {version('scikit-learn')}, krippendorff {version('krippendorff')}, "
        f"numpy {version('numpy')}"
    )
    compare("judge A vs judge B", JUDGE_A, JUDGE_B)
    compare("judge A vs humans", JUDGE_A, HUMAN)


if __name__ == "__main__":
    main()
