#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each and prints one summary line per
# target. Usage: tests/fuzz/run_fuzz.sh <fuzz build dir> <seconds> [target...]
#
# Working corpora go to <build>/corpus/<target>/ (seeded from the generated
# seeds, tests/fuzz/corpus/<target>/ and ../shared/recipes for the recipe
# targets; tests/fuzz/regressions/ is replayed by replay.sh, not used as
# seeds). A crash, leak, timeout or OOM input is copied to
# tests/fuzz/regressions/<target>/ and the script fails.
set -u
build=${1:?usage: run_fuzz.sh <build dir> <seconds> [target...]}
seconds=${2:?usage: run_fuzz.sh <build dir> <seconds> [target...]}
shift 2
# Seconds one input may take before it counts as a hang (and is kept as a
# finding). Raise it for runs niced in the background of a busy machine, where
# a starved process can sit for 10 s without running.
timeout=${FUZZ_TIMEOUT:-10}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
recipes="$root/../shared/recipes"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(safetensors_fuzz sharded_index_fuzz recipe_fuzz moe_recipe_fuzz lora_config_fuzz gguf_fuzz
  torch_fuzz pickle_fuzz tokenizer_fuzz)

max_len() {
  case $1 in
    safetensors_fuzz|gguf_fuzz|torch_fuzz|pickle_fuzz) echo 4096 ;;
    tokenizer_fuzz) echo 16384 ;;
    sharded_index_fuzz|lora_config_fuzz) echo 2048 ;;
    *) echo 8192 ;;
  esac
}
dict() {
  case $1 in
    recipe_fuzz|moe_recipe_fuzz) echo "$here/yaml.dict" ;;
    gguf_fuzz) echo "$here/gguf.dict" ;;
    torch_fuzz|pickle_fuzz) echo "$here/pickle.dict" ;;
    *) echo "$here/json.dict" ;;
  esac
}

# Generated seeds (binary safetensors files, the fixture's index and adapter config).
gen="$build/corpus-gen"
rm -rf "$gen" && mkdir -p "$gen"
"$build/tests/fuzz/fuzz_make_seeds" "$gen" >/dev/null || { echo "fuzz: seed generation failed"; exit 1; }
if [ -d "$recipes" ]; then
  for t in recipe_fuzz moe_recipe_fuzz; do
    mkdir -p "$gen/$t"
    find "$recipes" -name '*.yml' -o -name '*.yaml' | while read -r f; do
      cp "$f" "$gen/$t/shared-$(basename "$f")"
    done
  done
fi

status=0
summary=()
for t in "${targets[@]}"; do
  bin="$build/tests/fuzz/$t"
  work="$build/corpus/$t"
  art="$build/artifacts/$t"
  log="$build/logs/$t.log"
  rm -rf "$art"
  mkdir -p "$work" "$art" "$build/logs"
  seeds=()
  for d in "$gen/$t" "$here/corpus/$t"; do
    [ -d "$d" ] && seeds+=("$d")
  done
  echo "fuzz: $t for ${seconds}s (max_len $(max_len "$t"), log $log)"
  start=$(date +%s)
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout="$timeout" \
    -report_slow_units="$timeout" -rss_limit_mb=2048 \
    -dict="$(dict "$t")" -artifact_prefix="$art/" -print_final_stats=1 \
    "$work" "${seeds[@]}" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  [ -z "$execs" ] && execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  line=$(printf '%-20s %10s execs in %4ss  %-10s corpus %s files' "$t" "${execs:-?}" "$secs" "${cov:-}" \
    "$(ls "$work" | wc -l)")
  found=$(ls "$art" 2>/dev/null)
  if [ $rc -ne 0 ] || [ -n "$found" ]; then
    status=1
    mkdir -p "$here/regressions/$t"
    for f in $found; do cp "$art/$f" "$here/regressions/$t/$f"; done
    line="$line  FAILED (rc $rc): $(echo $found) -> tests/fuzz/regressions/$t/"
    grep -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' "$log" | sed 's/^/    /'
  fi
  summary+=("$line")
done
echo "fuzz summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
exit $status
