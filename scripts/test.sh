#!/usr/bin/env bash
# Sets up the default assets and runs the whole test suite: formatting, lints, every test
# in release mode (one profile everywhere), and a type-check of the `cuda` feature.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/psy-target}"

# Each step prints its start and, at the next step (and at the end), how long the previous one
# took, so a slow CI run shows where its time went.
START=$(date +%s)
LAST=$START
LAST_NAME=""
step() {
  local now
  now=$(date +%s)
  [ -n "$LAST_NAME" ] && printf '    (%s: %ds)\n' "$LAST_NAME" "$((now - LAST))"
  LAST=$now
  LAST_NAME="$*"
  printf '\n==> %s\n' "$*"
}

step "assets (the test assets; the main job's 1.5B model is not needed here)"
scripts/setup.sh --test

# A target dir shared between clones at different paths can hold this workspace's crates built
# from another clone (cargo's hash for path crates does not include the path). Rebuild ours.
step "fresh build of the workspace crates (dependencies are reused)"
cargo clean --release $(cargo metadata --no-deps --format-version 1 \
  | python3 -c 'import json,sys; print(" ".join("-p " + p["name"] for p in json.load(sys.stdin)["packages"]))')

step "illustrative dataset check"
python3 scripts/check_dataset.py manifests/train/data/illustrative.jsonl

step "import cycles between files of psy-core, psy-lm, psy-eval and the CLI package"
python3 scripts/check_cycles.py

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo build (release)"
cargo build --release --workspace --all-targets

step "cargo clippy -D warnings"
cargo clippy --release --workspace --all-targets -- -D warnings

step "cargo test (release)"
cargo test --release --workspace

step "cuda feature type-check (DOCS_RS=1: burn-cuda's build script would download LLVM)"
DOCS_RS=1 CARGO_TARGET_DIR="${CARGO_TARGET_DIR}-cuda" cargo check --release -p psy-lm --features cuda

step "all checks passed"
printf '    total %ds\n' "$(($(date +%s) - START))"
