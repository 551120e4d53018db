#!/usr/bin/env bash
# llama.cpp's own loader on GGUF files alloy writes: a tiny Llama model
# converted to GGUF (f32 and q8_0) and a merge of two GGUF models are loaded
# through the npm package node-llama-cpp (prebuilt llama.cpp, CPU), which
# evaluates a fixed prompt. The next-token distribution must be finite, and for
# the f32 file equal (to 0.01) the one computed from the HF checkpoint by the
# formulas (llama_reference.py, numpy) — a wrong Q/K permutation is off by
# ~0.4. Exit 77 (skipped) when node/npm are missing or the package cannot be
# installed. Usage: check_llama_cpp.sh ALLOY MAKE_TINY_MODELS WORKDIR
set -euo pipefail
alloy=$1 make_tiny=$2 work=$3
here=$(cd "$(dirname "$0")" && pwd)
source "$here/npm_package.sh"
npm_package "$work/js" node-llama-cpp@3.22.1
cp "$here/llama_next_token.mjs" "$work/js/"
rm -rf "$work/models"
"$make_tiny" "$work/models" --family llama --finetunes 1 --dtype f32 --base-std 0.4 --vocab 64 >/dev/null
m="$work/models"
"$alloy" convert "$m/llama-base" "$work/base-f32.gguf" --dtype f32 --overwrite --quiet 2>/dev/null
"$alloy" convert "$m/llama-base" "$work/base-q8_0.gguf" --dtype q8_0 --overwrite --quiet 2>/dev/null
"$alloy" convert "$m/llama-ft1" "$work/ft1-f32.gguf" --dtype f32 --overwrite --quiet 2>/dev/null
cat > "$work/slerp.yml" <<YAML
merge_method: slerp
base_model: $work/base-f32.gguf
models:
  - model: $work/base-f32.gguf
  - model: $work/ft1-f32.gguf
parameters:
  t: 0.3
YAML
"$alloy" merge "$work/slerp.yml" "$work/slerp.gguf" --overwrite --quiet

tokens=1,40,41,42,43,7,9
for f in base-f32 base-q8_0 slerp; do
  ( cd "$work/js" && node llama_next_token.mjs "$work/$f.gguf" "$tokens" ) > "$work/$f.json"
  echo "llama.cpp loaded $f.gguf"
done
if ! /usr/bin/python3 -c "import numpy" 2>/dev/null; then
  echo "numpy not installed: checked loading and finite outputs only"; exit 0
fi
/usr/bin/python3 "$here/llama_reference.py" "$m/llama-base" "$tokens" > "$work/reference.json"
/usr/bin/python3 - "$work" <<'PY'
import json, math, sys
w = sys.argv[1]
# Only the f32 file is compared: with weights this large (std 0.4, to make
# attention sensitive to the Q/K layout) the model is chaotic, and Q8_0's
# 0.4% weight error alone moves the reference distribution by ~0.1.
ref = json.load(open(f"{w}/reference.json"))["probs"]
for name, tol in (("base-f32", 0.01),):
    got = json.load(open(f"{w}/{name}.json"))["probs"]
    assert len(got) == len(ref), (name, len(got), len(ref))
    diff = max(abs(a - b) for a, b in zip(got, ref))
    top = (max(range(len(ref)), key=ref.__getitem__), max(range(len(got)), key=got.__getitem__))
    print(f"{name}: max |p_llama.cpp - p_reference| = {diff:.2e}, top-1 {top[1]} (reference {top[0]})")
    assert diff <= tol, f"{name}: llama.cpp disagrees with the reference forward pass"
    assert top[0] == top[1]
for name in ("base-q8_0", "slerp"):
    s = json.load(open(f"{w}/{name}.json"))["probs"]
    assert all(math.isfinite(p) for p in s) and abs(sum(s) - 1) < 1e-3, name
    print(f"{name}: finite distribution")
PY
