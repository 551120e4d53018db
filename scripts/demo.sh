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
"$gen" "$out/models" --family all --finetunes 2 --dtype bf16 --lora-rank 4
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

step "6. alloy merge: TIES of two fine-tunes (dry run first, then the merge)"
m="$out/models"
cat > "$out/ties.yaml" <<EOF
merge_method: ties
base_model: $m/llama-base
models:
  - model: $m/llama-ft1
    parameters: {weight: 0.6, density: 0.5}
  - model: $m/llama-ft2
    parameters: {weight: 0.4, density: 0.5}
dtype: bfloat16
EOF
"$alloy" merge "$out/ties.yaml" "$out/merged-ties" --dry-run
"$alloy" merge "$out/ties.yaml" "$out/merged-ties"
ls "$out/merged-ties"

step "7. alloy merge: slerp with a per-layer gradient, one model carrying a LoRA adapter"
cat > "$out/slerp.yaml" <<EOF
merge_method: slerp
base_model: $m/mistral-base
slices:
  - sources:
      - model: $m/mistral-base
        layer_range: [0, 2]
      - model: $m/mistral-ft1+$m/mistral-lora
        layer_range: [0, 2]
parameters:
  t:
    - filter: self_attn
      value: [0, 0.5, 1]
    - value: 0.5
dtype: bfloat16
EOF
"$alloy" merge "$out/slerp.yaml" "$out/merged-slerp"

step "8. alloy merge: a frankenmerge (passthrough slices interleaving two models: 2 + 2 -> 3 layers)"
cat > "$out/franken.yaml" <<EOF
merge_method: passthrough
slices:
  - sources:
      - model: $m/qwen2-ft1
        layer_range: [0, 2]
  - sources:
      - model: $m/qwen2-ft2
        layer_range: [1, 2]
dtype: bfloat16
EOF
"$alloy" merge "$out/franken.yaml" "$out/merged-franken" --json | grep -E '^  "(tensors|bytes_written)"'
grep -E '"num_hidden_layers"' "$out/merged-franken/config.json"

step "9. the same recipe gives the same bytes at any thread count"
"$alloy" merge "$out/ties.yaml" "$out/merged-ties-1t" --threads 1 --quiet
cmp "$out/merged-ties/model.safetensors" "$out/merged-ties-1t/model.safetensors"
echo "--threads 1 and all cores: model.safetensors is byte-identical"

step "10. alloy compare: how the TIES merge relates to its parents, and where the fine-tunes conflict"
"$alloy" compare "$m/llama-ft1" "$m/llama-ft2" "$out/merged-ties" --base "$m/llama-base" \
  --metric tau_cosine --top 3 --html "$out/compare.html" --json "$out/compare.json"
echo "open $out/compare.html in a browser for heatmaps, charts and the sortable tensor table"

step "11. alloy lora: extract an adapter from a fine-tune, concatenate two, apply one"
"$alloy" lora extract --base "$m/llama-base" --model "$m/llama-ft1" "$out/llama-ft1-lora" --rank 8
"$alloy" lora concat "$out/llama-both-lora" "$m/llama-lora" "$out/llama-ft1-lora" --weights 1 0.5
"$alloy" lora inspect "$out/llama-both-lora" | tail -n 3
"$alloy" lora apply "$m/llama-base" "$out/llama-both-lora" "$out/llama-both"

step "12. alloy upcycle: the llama base as a 4-expert Mixtral (sparse upcycling)"
"$alloy" upcycle "$m/llama-base" "$out/llama-4x" --experts 4 --top-k 2
"$alloy" inspect "$out/llama-4x" | head -n 4

step "done: outputs are in $out/"
