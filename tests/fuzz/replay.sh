#!/usr/bin/env bash
# Runs each fuzz target once over its committed seeds and regression inputs
# (no mutation). Fails when any input crashes, leaks or times out.
# Usage: tests/fuzz/replay.sh <fuzz build dir> [target...]
set -u
build=${1:?usage: replay.sh <build dir> [target...]}
shift
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors_fuzz sharded_index_fuzz recipe_fuzz moe_recipe_fuzz lora_config_fuzz gguf_fuzz
  torch_fuzz pickle_fuzz tokenizer_fuzz)
status=0
for t in "${targets[@]}"; do
  files=()
  for d in "$here/corpus/$t" "$here/regressions/$t"; do
    [ -d "$d" ] && while IFS= read -r f; do files+=("$f"); done < <(find "$d" -type f ! -name '.*')
  done
  [ ${#files[@]} -eq 0 ] && { echo "replay: $t: no inputs"; continue; }
  if "$build/tests/fuzz/$t" -timeout=10 -rss_limit_mb=2048 "${files[@]}" >"$build/logs-replay-$t.log" 2>&1; then
    echo "replay: $t: ${#files[@]} inputs OK"
  else
    echo "replay: $t: FAILED (see $build/logs-replay-$t.log)"; status=1
  fi
done
exit $status
