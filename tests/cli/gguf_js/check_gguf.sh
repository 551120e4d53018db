#!/usr/bin/env bash
# Independent-reader check of alloy's GGUF writer: converts a tiny model to
# GGUF (f32, q8_0, f16), and reads each file with the npm package
# @huggingface/gguf. Exit 77 (skipped) when node/npm are missing or the package
# cannot be installed (no registry access).
# Usage: check_gguf.sh ALLOY MAKE_TINY_MODELS WORKDIR
set -euo pipefail
alloy=$1 make_tiny=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/npm_package.sh"
npm_package "$work/js" @huggingface/gguf@0.4.6
cp "$here/check_gguf.mjs" "$work/js/"
rm -rf "$work/models"
"$make_tiny" "$work/models" --family llama --finetunes 1 --dtype f32 >/dev/null
for t in f32 q8_0 f16; do
  "$alloy" convert "$work/models/llama-base" "$work/tiny-$t.gguf" --dtype "$t" --overwrite --quiet 2>/dev/null
done
"$alloy" convert "$work/models/llama-ft1" "$work/ft1-q8_0.gguf" --dtype q8_0 --overwrite --quiet 2>/dev/null
cat > "$work/merge.yml" <<YAML
merge_method: slerp
base_model: $work/tiny-q8_0.gguf
models:
  - model: $work/tiny-q8_0.gguf
  - model: $work/ft1-q8_0.gguf
parameters:
  t: [0, 0.5, 1]
YAML
"$alloy" merge "$work/merge.yml" "$work/merged.gguf" --overwrite --quiet
for f in tiny-f32 tiny-q8_0 tiny-f16 merged; do
  "$alloy" inspect "$work/$f.gguf" --json --tensors > "$work/$f.json"
  ( cd "$work/js" && node check_gguf.mjs "$work/$f.gguf" "$work/$f.json" )
done
