#!/usr/bin/env python3
"""Agreement fixtures for psy-eval: quadratic-weighted Cohen's kappa from scikit-learn and
Krippendorff's alpha from the `krippendorff` package, on seeded synthetic ratings shaped like
judge scores (scales 0-1, 0-2, 0-3, 1-5, 0-6; two to five raters; missing ratings).

Usage: pip install numpy scikit-learn krippendorff && python3 scripts/reference/make_agreement_fixtures.py
Output: engine/eval/tests/fixtures/agreement.json
"""

import json
import math
import sys
from importlib.metadata import version
from pathlib import Path

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score

ROOT = Path(__file__).resolve().parents[2]


def noisy(rng, truth, lo, hi, noise):
    return np.clip(truth + rng.integers(-noise, noise + 1, size=truth.shape), lo, hi)


def main():
    rng = np.random.default_rng(13)
    kappa = []
    for lo, hi in [(0, 1), (0, 2), (0, 3), (1, 5), (0, 6)]:
        for n, noise in [(8, 0), (12, 1), (40, 1), (200, 2)]:
            truth = rng.integers(lo, hi + 1, size=n)
            a = noisy(rng, truth, lo, hi, noise)
            b = noisy(rng, truth, lo, hi, noise)
            labels = list(range(lo, hi + 1))
            case = {"a": a.tolist(), "b": b.tolist(), "labels": labels}
            with np.errstate(all="ignore"):
                k_obs = cohen_kappa_score(a, b, weights="quadratic")
                k_full = cohen_kappa_score(a, b, labels=labels, weights="quadratic")
            case["kappa_observed_labels"] = None if math.isnan(k_obs) else float(k_obs)
            case["kappa_full_scale"] = None if math.isnan(k_full) else float(k_full)
            kappa.append(case)
    # A skewed case where the scale's extremes are never used.
    a = [2, 3, 3, 2, 3, 4, 3, 2]
    b = [3, 3, 2, 2, 3, 4, 4, 2]
    kappa.append({"a": a, "b": b, "labels": [1, 2, 3, 4, 5],
                  "kappa_observed_labels": float(cohen_kappa_score(a, b, weights="quadratic")),
                  "kappa_full_scale": float(cohen_kappa_score(a, b, labels=[1, 2, 3, 4, 5], weights="quadratic"))})

    alpha = []
    # The package's documented example (Krippendorff's own data with missing values).
    doc = [[np.nan, np.nan, np.nan, np.nan, np.nan, 3, 4, 1, 2, 1, 1, 3, 3, np.nan, 3],
           [1, np.nan, 2, 1, 3, 3, 4, 3, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
           [np.nan, np.nan, 2, 1, 3, 4, 4, np.nan, 2, 1, 1, 3, 3, np.nan, 4]]
    datasets = [np.array(doc, dtype=float)]
    for raters, units, (lo, hi), missing, noise in [
        (2, 10, (0, 2), 0.0, 1), (2, 30, (1, 5), 0.1, 1), (3, 25, (0, 3), 0.2, 1),
        (4, 40, (0, 6), 0.3, 2), (5, 60, (1, 5), 0.25, 1), (3, 15, (0, 1), 0.1, 1),
        (2, 100, (0, 3), 0.05, 2),
    ]:
        truth = rng.integers(lo, hi + 1, size=units)
        data = np.stack([noisy(rng, truth, lo, hi, noise) for _ in range(raters)]).astype(float)
        data[rng.random(data.shape) < missing] = np.nan
        datasets.append(data)
    for data in datasets:
        case = {"ratings": [[None if math.isnan(x) else float(x) for x in row] for row in data]}
        for level in ["nominal", "ordinal", "interval"]:
            case[level] = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
        alpha.append(case)

    out = {
        "provenance": (
            f"python3 scripts/reference/make_agreement_fixtures.py; scikit-learn {version('scikit-learn')} "
            f"(cohen_kappa_score, weights='quadratic'), krippendorff {version('krippendorff')}, "
            f"numpy {version('numpy')}, Python {sys.version.split()[0]}"
        ),
        "kappa": kappa,
        "alpha": alpha,
    }
    dest = ROOT / "engine" / "eval" / "tests" / "fixtures" / "agreement.json"
    dest.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {dest}: {len(kappa)} kappa cases, {len(alpha)} alpha cases")


if __name__ == "__main__":
    main()
