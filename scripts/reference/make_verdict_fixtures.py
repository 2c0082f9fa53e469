#!/usr/bin/env python3
"""Verdict fixtures for psy-eval's rubric tests, labelled by the `jsonschema` package.

For every shipped rubric (manifests/rubrics/*.toml) this script derives the verdict JSON schema
independently of the Rust code (from the TOML, with the rules written in
engine/eval/src/rubric/schema.rs), builds valid and invalid verdicts (missing and extra
dimensions, scores out of range or not integers, reasons too long or not strings, ...) and
labels each with jsonschema's Draft 2020-12 validator. The Rust test checks that its derived
schema equals this one and that `Rubric::parse_verdict` accepts exactly the verdicts
jsonschema accepts.

Usage: pip install jsonschema==4.* && python3 scripts/reference/make_verdict_fixtures.py
Output: engine/eval/tests/fixtures/verdicts.json
"""

import copy
import json
import random
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
REASON_MAX = 300


def derive_schema(rubric):
    props = {}
    for d in rubric["dimensions"]:
        lo, hi = d["scale"]
        props[d["id"]] = {
            "type": "object",
            "properties": {
                "reason": {"type": "string", "maxLength": REASON_MAX},
                "score": {"type": "integer", "minimum": lo, "maximum": hi},
            },
            "required": ["reason", "score"],
            "additionalProperties": False,
        }
    return {
        "type": "object",
        "properties": props,
        "required": [d["id"] for d in rubric["dimensions"]],
        "additionalProperties": False,
    }


def cases_for(rubric, rng):
    dims = rubric["dimensions"]

    def base():
        return {
            d["id"]: {"reason": f"Reason for {d['name']}.", "score": rng.randint(*d["scale"])}
            for d in dims
        }

    out = []
    for _ in range(4):
        out.append(("random in range", base()))
    first, last = dims[0], dims[-1]
    v = base(); v[first["id"]]["score"] = first["scale"][0]; out.append(("score at minimum", v))
    v = base(); v[last["id"]]["score"] = last["scale"][1]; out.append(("score at maximum", v))
    v = base(); v[first["id"]]["score"] = first["scale"][0] - 1; out.append(("score below minimum", v))
    v = base(); v[last["id"]]["score"] = last["scale"][1] + 1; out.append(("score above maximum", v))
    v = base(); v[first["id"]]["score"] = float(first["scale"][1]); out.append(("integral float score", v))
    v = base(); v[first["id"]]["score"] = first["scale"][0] + 0.5; out.append(("fractional score", v))
    v = base(); v[first["id"]]["score"] = str(first["scale"][0]); out.append(("score as string", v))
    v = base(); v[first["id"]]["score"] = True; out.append(("score as boolean", v))
    v = base(); v[first["id"]]["score"] = None; out.append(("score null", v))
    v = base(); v[first["id"]]["score"] = 2**63; out.append(("huge score", v))
    v = base(); v[first["id"]]["score"] = 1e300; out.append(("huge float score", v))
    v = base(); del v[last["id"]]; out.append(("missing dimension", v))
    v = base(); v["overall"] = {"reason": "x", "score": 1}; out.append(("extra dimension", v))
    v = base(); del v[first["id"]]["reason"]; out.append(("missing reason", v))
    v = base(); del v[first["id"]]["score"]; out.append(("missing score", v))
    v = base(); v[first["id"]]["confidence"] = 0.9; out.append(("extra field", v))
    v = base(); v[first["id"]]["reason"] = 3; out.append(("reason not a string", v))
    v = base(); v[first["id"]]["reason"] = "a" * REASON_MAX; out.append(("reason at limit", v))
    v = base(); v[first["id"]]["reason"] = "a" * (REASON_MAX + 1); out.append(("reason over limit", v))
    v = base(); v[first["id"]]["reason"] = "\u00e9\u4f60" * (REASON_MAX // 2); out.append(("non-ascii reason at limit", v))
    v = base(); v[first["id"]]["reason"] = ""; out.append(("empty reason", v))
    v = base(); v[first["id"]] = first["scale"][0]; out.append(("dimension is a bare number", v))
    v = base(); v[first["id"]] = [1]; out.append(("dimension is an array", v))
    v = base(); out.append(("keys in reverse order", dict(reversed(list(v.items())))))
    out.append(("empty object", {}))
    out.append(("top-level array", [base()]))
    out.append(("top-level string", "{}"))
    return out


def main():
    rng = random.Random(20261202)
    rubrics = {}
    for path in sorted((ROOT / "manifests" / "rubrics").glob("*.toml")):
        rubric = tomllib.loads(path.read_text())
        schema = derive_schema(rubric)
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        cases = []
        for name, verdict in cases_for(rubric, rng):
            cases.append({"name": name, "verdict": copy.deepcopy(verdict),
                          "valid": validator.is_valid(verdict)})
        rubrics[rubric["rubric"]["id"]] = {"schema": schema, "cases": cases}
    out = {
        "provenance": (
            f"python3 scripts/reference/make_verdict_fixtures.py; jsonschema {version('jsonschema')} "
            f"(Draft202012Validator), Python {sys.version.split()[0]}"
        ),
        "rubrics": rubrics,
    }
    dest = ROOT / "engine" / "eval" / "tests" / "fixtures" / "verdicts.json"
    dest.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    n = sum(len(r["cases"]) for r in rubrics.values())
    valid = sum(c["valid"] for r in rubrics.values() for c in r["cases"])
    print(f"wrote {dest} ({n} cases, {valid} valid)")


if __name__ == "__main__":
    main()
