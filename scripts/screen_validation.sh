#!/usr/bin/env bash
# The crisis guard's validation table: a screen measured through the whole guard (lexicon,
# screen, session) on the exemplars' validation split (messages and sessions), false alarms by
# the detector that raised them and by category, 95% Wilson intervals. Never on tests/heldout/
# (psy refuses it here: the held-out sets are measured once, with `psy eval risk`).
#
#   scripts/screen_validation.sh                 # the shipped screen
#   scripts/screen_validation.sh /tmp/candidate  # a screen written by `psy train-screen --out DIR`
#   EXTRA="--set more.jsonl" scripts/screen_validation.sh
#   EXEMPLARS=/tmp/ex scripts/screen_validation.sh /tmp/candidate   # a candidate's own split
#
# Compare screens on the same split: a screen trained on more exemplars has a larger split, so
# measure the shipped screen with EXEMPLARS set to the candidate's directory too.
# Each item's per-detector readings (levels, each view's probabilities, and for false alarms and
# --set items the nearest training exemplars) go to target/screen-validation.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
screen_dir="${1:-plugins/safety/screen}"
cargo build --release --bin psy >&2
bin="${CARGO_TARGET_DIR:-target}/release/psy"
mkdir -p target
# shellcheck disable=SC2086
"$bin" train-screen --report --out "$screen_dir" \
    --exemplars "${EXEMPLARS:-plugins/safety/screen/exemplars}" \
    --readings target/screen-validation.jsonl ${EXTRA:-}
