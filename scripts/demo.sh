#!/usr/bin/env bash
# make demo: builds tiny example checkpoints and runs alloy's commands on them.
set -euo pipefail
build=${1:-build}
alloy="$build/cli/alloy"
gen="$build/examples/make_tiny_models"
out=demo-out
rm -rf "$out"
mkdir -p "$out"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. tiny models: llama, mistral, qwen2, gemma (base + 2 fine-tunes each, bf16)"
"$gen" "$out/models" --family all --finetunes 2 --dtype bf16
"$gen" "$out/sharded" --family llama --finetunes 0 --dtype f32 --shard-size 200KB

step "2. alloy inspect"
"$alloy" inspect "$out/models/llama-base"
"$alloy" inspect "$out/sharded/llama-base" --json | head -n 20

step "3. alloy inspect --memory (what fine-tuning this model would cost)"
"$alloy" inspect "$out/models/qwen2-base" --memory

step "4. alloy convert: bf16 -> f16 (sharded output), and bf16 -> f32 -> bf16 (byte-identical)"
"$alloy" convert "$out/models/llama-ft1" "$out/llama-ft1-f16" --dtype f16 --out-shard-size 100KB
"$alloy" inspect "$out/llama-ft1-f16"
"$alloy" convert "$out/models/llama-ft1" "$out/llama-ft1-f32" --dtype f32
"$alloy" convert "$out/llama-ft1-f32" "$out/llama-ft1-bf16" --dtype bf16
cmp "$out/models/llama-ft1/model.safetensors" "$out/llama-ft1-bf16/model.safetensors"
echo "round trip bf16 -> f32 -> bf16: model.safetensors is byte-identical"

step "5. a malformed file is refused with exit code 2 and a precise message"
printf '\x10\x00\x00\x00\x00\x00\x00\x00{"w":{"dtype":"F32"' > "$out/broken.safetensors"
set +e
"$alloy" inspect "$out/broken.safetensors"
code=$?
set -e
echo "exit code: $code"
[ "$code" = 2 ]

step "done: outputs are in $out/"
