#!/usr/bin/env python3
"""Where the crisis guard's false alarms on the exemplars' validation split come from, and what
rules over the screen's readings would change: a breakdown of the readings that
`scripts/screen_validation.sh` writes (`psy train-screen --report --readings FILE`).

  scripts/screen_breakdown.py                                   # target/screen-validation.jsonl
  scripts/screen_breakdown.py READINGS [SCREEN_DIR]             # SCREEN_DIR holds screen.toml
  scripts/screen_breakdown.py READINGS SCREEN_DIR --ensemble OTHER.jsonl [...]

Prints, for messages and sessions: false alarms by the views that raised them (lexicon, the
screen's whole message, a sentence, the turn read with earlier turns, the session carry), by
category, and by how far above its cut-off the deciding view sits (in log-odds, the scale on
which a 0.02 cut-off and a 0.9 one compare); the acute items close to a cut-off; and the
validation figures under candidate rules (cut-offs moved, the category head as evidence against
a high rating, sentence views only with a moderate whole message). `--ensemble` averages the
piece probabilities of several screens read on the same split (each screen's readings from
`scripts/screen_validation.sh DIR`) and sets the cut-offs again with `psy train-screen`'s
rules before counting.

The candidate rules are replayed for single messages exactly (the guard there is the highest of
the lexicon and the screen's own views; the script checks that it reproduces the recorded
level). A session's level also depends on its earlier turns (the carry), which the readings do
not hold, so sessions are broken down, not replayed. Every figure here is on the split the
cut-offs were set on: a fit, never a held-out measurement (this never reads tests/heldout/).
"""
import argparse
import json
import math
import sys
import tomllib
from collections import Counter, defaultdict

LEVELS = {"none": 0, "low": 1, "moderate": 2, "high": 3, "imminent": 4}
# Categories that name a non-crisis reading of crisis words (the screen's look-alikes).
LOOKALIKES = {
    "idiom-hyperbole", "game", "fiction", "news", "grief", "medical-question", "professional",
    "helper-asking", "past-resolved",
}
# psy train-screen's calibration rules (src/train_screen.rs).
RECALL_HIGH, RECALL_MODERATE, RECALL_IMMINENT = 0.95, 0.90, 0.85
SENTENCE_EXTRA_ALARMS, GATE_ACUTE_LOSS = 2, 2
CONTEXT = "with earlier turns"


def logit(p):
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


class Cuts:
    """The screen's cut-offs, and the level each view gives (plugins/safety/src/screen/score.rs)."""

    def __init__(self, t):
        self.t = dict(t)

    def high(self, p, cut):
        return p[1] >= cut and p[0] >= self.t.get("high_gate", 0.0)

    def message(self, p):
        if self.high(p, self.t["high"]):
            return 4 if p[2] >= self.t["imminent"] else 3
        return 2 if p[0] >= self.t["moderate"] else 0

    def sentence(self, p):
        if self.high(p, self.t["sentence_high"]):
            return 3
        return 2 if p[0] >= self.t["sentence_moderate"] else 0

    def context(self, p):
        if self.high(p, self.t.get("context_high", self.t["high"])):
            return 3
        return 2 if p[0] >= self.t.get("context_moderate", self.t["moderate"]) else 0

    def level(self, piece):
        return {"message": self.message, "sentence": self.sentence, CONTEXT: self.context}[
            piece["kind"]](piece["p"])

    def cut_for(self, piece, level):
        """The probability and cut-off that decide `level` for `piece`, by name."""
        kind = {"message": "", "sentence": "sentence_", CONTEXT: "context_"}[piece["kind"]]
        if level >= 3:
            return piece["p"][1], self.t.get(kind + "high", self.t["high"]), "P(>=high)"
        return piece["p"][0], self.t.get(kind + "moderate", self.t["moderate"]), "P(>=moderate)"


def is_session(r):
    return any(p["kind"] == CONTEXT for p in r["pieces"])


def band(r):
    want = LEVELS[r["level"]]
    return "acute" if want >= 3 else "elevated" if want == 2 else "non-crisis"


def caught(r, level):
    b = band(r)
    return level >= 3 if b == "acute" else level >= 2 if b == "elevated" else level <= 1


def own_level(r, cuts, rule=None):
    """The screen's level from a single message's own pieces, under `rule` (piece -> level)."""
    best = 0
    for piece in r["pieces"]:
        if piece["kind"] == CONTEXT:
            continue
        lvl = cuts.level(piece)
        if rule:
            lvl = rule(r, piece, lvl)
        best = max(best, lvl)
    return best


def guard_level(r, cuts, rule=None):
    return max(LEVELS[r["lexicon"]], own_level(r, cuts, rule))


def figures(items, level_of):
    c = {b: [0, 0] for b in ("acute", "elevated", "non-crisis")}
    for r in items:
        b = band(r)
        c[b][1] += 1
        ok = caught(r, level_of(r))
        c[b][0] += ok if b != "non-crisis" else not ok
    return c


def show(c):
    a, e, f = c["acute"], c["elevated"], c["non-crisis"]
    return (f"acute {a[0]}/{a[1]} = {100 * a[0] / max(a[1], 1):.1f}%, elevated {e[0]}/{e[1]} = "
            f"{100 * e[0] / max(e[1], 1):.1f}%, false alarms {f[0]}/{f[1]} = "
            f"{100 * f[0] / max(f[1], 1):.1f}%")


def meets(c):
    a, e = c["acute"], c["elevated"]
    return a[0] >= RECALL_HIGH * a[1] and e[0] >= RECALL_MODERATE * e[1]


def raised_by(r, cuts):
    """The views that alone put an item above low (as `psy train-screen --report` counts)."""
    out = []
    if LEVELS[r["lexicon"]] > 1:
        out.append("lexicon")
    for kind, name in (("message", "message"), ("sentence", "sentence"), (CONTEXT, "context")):
        if any(p["kind"] == kind and cuts.level(p) > 1 for p in r["pieces"]):
            out.append(name)
    if not out and LEVELS[r["guard"]] > 1:
        out.append("session carry")
    return out


def deciding_margin(r, cuts):
    """The screen view rating the item highest, and how far (log-odds) above its cut-off."""
    best = None
    for piece in r["pieces"]:
        lvl = cuts.level(piece)
        if lvl < 2:
            continue
        p, cut, what = cuts.cut_for(piece, lvl)
        m = logit(p) - logit(cut)
        key = (lvl, m)
        if best is None or key > best[0]:
            best = (key, piece, p, cut, what)
    return best


def margin_bin(m):
    for edge, name in ((0.5, "< 0.5"), (2, "0.5-2"), (4, "2-4")):
        if m < edge:
            return name
    return ">= 4"


def breakdown(name, items, cuts, explain_sessions=False):
    print(f"\n## {name}: {show(figures(items, lambda r: LEVELS[r['guard']]))} (the guard, recorded)")
    alarms = [r for r in items if band(r) == "non-crisis" and LEVELS[r["guard"]] > 1]
    by = Counter()
    alone = Counter()
    for r in alarms:
        views = raised_by(r, cuts)
        by.update(views)
        if len(views) == 1:
            alone[views[0]] += 1
    print(f"false alarms by view (an alarm counts once per view): {dict(by)}; by one view alone: "
          f"{dict(alone)}")
    per_cat = defaultdict(lambda: [0, 0])
    for r in items:
        if band(r) == "non-crisis":
            per_cat[r["category"]][1] += 1
            per_cat[r["category"]][0] += LEVELS[r["guard"]] > 1
    print("by category (alarms/items): " + ", ".join(
        f"{c} {k}/{n}" for c, (k, n) in sorted(per_cat.items(), key=lambda x: -x[1][0])))
    bins = Counter()
    heads = Counter()
    rows = []
    for r in alarms:
        d = deciding_margin(r, cuts)
        if d is None:
            continue
        (lvl, m), piece, p, cut, what = d
        bins[margin_bin(m)] += 1
        heads["look-alike" if piece["category"] in LOOKALIKES else "crisis" if piece["category"]
              not in ("everyday-distress", "ordinary", "hopelessness") else "other non-crisis"] += 1
        rows.append((m, r["id"], r["category"], piece["kind"], what, p, cut, piece["category"],
                     piece["category_p"]))
    print(f"screen-raised alarms by margin above the cut-off (log-odds): {dict(sorted(bins.items()))}")
    print(f"  the deciding piece's category by the head: {dict(heads)}")
    for m, rid, cat, kind, what, p, cut, hc, hp in sorted(rows):
        print(f"  {m:+5.2f}  {rid:<13} {cat:<18} {kind:<18} {what} {p:.3f} (cut {cut:.3f}); "
              f"head: {hc} {hp:.2f}")
    # Acute items whose high rating rests on views close to their cut-offs, and acute misses.
    print("acute items the lexicon does not rate high, within 1.5 log-odds of the high cut-off "
          "(or the gate), and every acute miss (caught: +, missed: -):")
    for r in items:
        if band(r) != "acute" or LEVELS[r["lexicon"]] >= 3:
            continue
        ms = []
        for piece in r["pieces"]:
            if piece["kind"] == CONTEXT and not explain_sessions:
                continue
            p, cut, _ = cuts.cut_for(piece, 3)
            # High needs both P(>= high) over its cut-off and P(>= moderate) over the gate.
            gate = logit(piece["p"][0]) - logit(cuts.t.get("high_gate", 1e-7))
            ms.append((min(logit(p) - logit(cut), gate), piece))
        m, piece = max(ms, key=lambda x: x[0])
        if abs(m) < 1.5 or LEVELS[r["guard"]] < 3:
            sign = "+" if LEVELS[r["guard"]] >= 3 else "-"
            print(f"  {sign} {m:+5.2f}  {r['id']:<13} {r['category']:<20} {piece['kind']:<18} "
                  f"P {[round(x, 3) for x in piece['p']]}; head: {piece['category']} "
                  f"{piece['category_p']:.2f}; lexicon {r['lexicon']}")


def lookalike_veto(categories, confidence, below):
    """A piece rated high whose most likely category is a look-alike named with at least
    `confidence`, while its P(>= high) is under `below`, is rated none."""
    def rule(r, piece, lvl):
        if (lvl >= 3 and piece["category"] in categories and piece["category_p"] >= confidence
                and piece["p"][1] < below):
            return 0
        return lvl
    return rule


def sentence_needs_message(min_moderate):
    """A sentence may raise the level only when its whole message has P(>= moderate) >= x."""
    def rule(r, piece, lvl):
        if piece["kind"] != "sentence":
            return lvl
        whole = next(p for p in r["pieces"] if p["kind"] == "message")
        return lvl if whole["p"][0] >= min_moderate else 0
    return rule


def candidates(messages, cuts):
    base = figures(messages, lambda r: guard_level(r, cuts))
    recorded = figures(messages, lambda r: LEVELS[r["guard"]])
    differ = sum(
        1 for r in messages
        if min(guard_level(r, cuts), 3) != min(LEVELS[r["guard"]], 3))
    print(f"\n## Candidate rules on the validation messages (replayed: {show(base)}; "
          f"{differ} of {len(messages)} differ from the recorded guard)")
    if base != recorded:
        print("  (the replay does not reproduce the recorded figures: read the rows below as "
              "relative to the replay)")
    print(f"constraints: acute >= {RECALL_HIGH:.0%}, elevated >= {RECALL_MODERATE:.0%}; "
          "rows marked * meet them and lower false alarms")

    def row(label, c):
        mark = "*" if meets(c) and c["non-crisis"][0] < base["non-crisis"][0] else " "
        print(f" {mark} {label:<52} {show(c)}")

    for key, values in (
        ("high", (0.025, 0.03, 0.04, 0.05, 0.06, 0.08, 0.1)),
        ("high_gate", (0.15, 0.17, 0.2, 0.25, 0.3)),
        ("sentence_high", (0.97, 0.985, 0.99, 0.995)),
        ("moderate", (0.45, 0.5, 0.6, 0.7)),
    ):
        for v in values:
            moved = Cuts({**cuts.t, key: v})
            row(f"{key} = {v} (was {cuts.t.get(key, 0):.4g})",
                figures(messages, lambda r: guard_level(r, moved)))
    for name, cats in (("look-alikes", LOOKALIKES),
                       ("look-alikes + everyday", LOOKALIKES | {"everyday-distress", "ordinary"})):
        for conf in (0.3, 0.5, 0.7):
            for below in (0.05, 0.1, 0.3, 1.01):
                rule = lookalike_veto(cats, conf, below)
                row(f"veto: {name} head >= {conf}, P(>=high) < {below}",
                    figures(messages, lambda r: guard_level(r, cuts, rule)))
    for x in (0.001, 0.01, 0.05, 0.1, 0.3):
        rule = sentence_needs_message(x)
        row(f"sentence only with message P(>=moderate) >= {x}",
            figures(messages, lambda r: guard_level(r, cuts, rule)))


def threshold_for(scores, recall):
    """psy train-screen's cut-off: the largest that keeps `recall` of `scores` at or above it."""
    if not scores:
        return 0.5
    s = sorted(scores)
    misses = math.floor((1.0 - recall) * len(s))
    return min(max(s[min(misses, len(s) - 1)], 0.02), 0.98)


def calibrate(messages, sessions):
    """Cut-offs set with psy train-screen's rules on the readings' probabilities."""
    def whole(r):
        return next(p["p"] for p in r["pieces"] if p["kind"] == "message")

    def best(r):
        ps = [p["p"] for p in r["pieces"] if p["kind"] != CONTEXT]
        return [max(p[k] for p in ps) for k in range(3)]

    lv = lambda r: LEVELS[r["level"]]
    t = {
        "moderate": threshold_for([whole(r)[0] for r in messages if lv(r) >= 2], RECALL_MODERATE),
        "high": threshold_for([whole(r)[1] for r in messages if lv(r) >= 3], RECALL_HIGH),
        "imminent": threshold_for([whole(r)[2] for r in messages if lv(r) == 4], RECALL_IMMINENT),
    }
    for k, name in ((0, "sentence_moderate"), (1, "sentence_high")):
        cut = t["moderate" if k == 0 else "high"]
        cands = sorted((best(r)[k] for r in messages if lv(r) <= 1 and whole(r)[k] < cut
                        and best(r)[k] >= cut), reverse=True)
        t[name] = min(max(cands[SENTENCE_EXTRA_ALARMS] + 1e-4, cut), 0.999) if len(
            cands) > SENTENCE_EXTRA_ALARMS else cut
    keep = []
    for r in messages:
        if lv(r) < 3:
            continue
        m, s = whole(r), best(r)
        opts = ([m[0]] if m[1] >= t["high"] else []) + ([s[0]] if s[1] >= t["sentence_high"] else [])
        if opts:
            keep.append(max(opts))
    keep.sort()
    if len(keep) > GATE_ACUTE_LOSS:
        t["high_gate"] = min(keep[GATE_ACUTE_LOSS], t["moderate"])
    if sessions:
        ctx = [(lv(r), next(p["p"] for p in r["pieces"] if p["kind"] == CONTEXT)) for r in sessions]
        t["context_moderate"] = max(
            threshold_for([p[0] for l, p in ctx if l >= 2], RECALL_MODERATE), t["moderate"])
        t["context_high"] = max(
            threshold_for([p[1] for l, p in ctx if l >= 3], RECALL_HIGH), t["high"])
    return Cuts(t)


def ensemble(readings_sets):
    """Items with each piece's probabilities averaged over several screens' readings."""
    base = readings_sets[0]
    for other in readings_sets[1:]:
        if [r["id"] for r in other] != [r["id"] for r in base]:
            sys.exit("--ensemble: the readings files hold different items (same exemplars?)")
    out = []
    for rows in zip(*readings_sets):
        r = json.loads(json.dumps(rows[0]))
        for i, piece in enumerate(r["pieces"]):
            piece["p"] = [sum(x["pieces"][i]["p"][k] for x in rows) / len(rows) for k in range(3)]
        out.append(r)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("readings", nargs="?", default="target/screen-validation.jsonl")
    ap.add_argument("screen", nargs="?", default="plugins/safety/screen")
    ap.add_argument("--ensemble", nargs="+", default=[],
                    help="readings of other screens on the same split, averaged with READINGS")
    a = ap.parse_args()
    for path in [a.readings, a.screen, *a.ensemble]:
        if "heldout" in path.split("/"):
            sys.exit(f"{path}: the held-out sets are measured once with `psy eval risk`")

    def load(path):
        try:
            with open(path) as f:
                return [json.loads(line) for line in f if line.strip()]
        except (OSError, json.JSONDecodeError) as e:
            sys.exit(f"{path}: {e}")

    items = load(a.readings)
    if not items or "pieces" not in items[0]:
        sys.exit(f"{a.readings}: no per-piece readings; write them with "
                 "scripts/screen_validation.sh (psy train-screen --report --readings FILE)")
    try:
        with open(f"{a.screen}/screen.toml", "rb") as f:
            cuts = Cuts(tomllib.load(f)["thresholds"])
    except (OSError, KeyError, tomllib.TOMLDecodeError) as e:
        sys.exit(f"{a.screen}/screen.toml: {e}")
    # Candidate rules and ensembles are judged on the validation split alone; `--set` files are
    # broken down beside it.
    sets = defaultdict(list)
    for r in items:
        sets[r.get("set", "")].append(r)
    extra = {k: v for k, v in sets.items() if k and not k.startswith("validation")}
    items = [r for r in items if not r.get("set") or r["set"].startswith("validation")]
    messages = [r for r in items if not is_session(r)]
    sessions = [r for r in items if is_session(r)]
    print(f"readings: {a.readings}; cut-offs: {a.screen}/screen.toml {cuts.t}")
    if a.ensemble:
        items = ensemble([items] + [[r for r in load(p) if not r.get("set") or r["set"]
                                     .startswith("validation")] for p in a.ensemble])
        messages = [r for r in items if not is_session(r)]
        sessions = [r for r in items if is_session(r)]
        cuts = calibrate(messages, sessions)
        print(f"ensemble of {1 + len(a.ensemble)} screens, cut-offs set again: "
              f"{ {k: round(v, 4) for k, v in cuts.t.items()} }")
        print(f"messages, lexicon + the ensemble's own views: "
              f"{show(figures(messages, lambda r: guard_level(r, cuts)))}")
        print(f"messages, the ensemble's own views alone: "
              f"{show(figures(messages, lambda r: own_level(r, cuts)))}")
        print(f"sessions, last turn (lexicon + own + context views; no carry): " + show(figures(
            sessions, lambda r: max(LEVELS[r['lexicon']], max(cuts.level(p) for p in r['pieces'])))))
        return
    breakdown("validation messages", messages, cuts)
    breakdown("validation sessions", sessions, cuts, explain_sessions=True)
    for name, rows in extra.items():
        breakdown(name, rows, cuts, explain_sessions=True)
    candidates(messages, cuts)


if __name__ == "__main__":
    main()
