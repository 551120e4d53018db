#!/usr/bin/env bash
# bench/run.sh BUILD_DIR: alloy's benchmarks (`make bench` builds first, then calls this).
#
# Inputs come from make_tiny_models (Llama-3.2-1B shapes, bf16) in bench-out/ and are reused
# while the stamp file says they were made with the same arguments. Each benchmark runs its
# command interleaved with bench/io_floor (read every input once + write one output of the
# same size, no fsync) because write speed on this kind of VM swings from run to run, takes
# medians, and rewrites its own section of docs/PERFORMANCE.md between
# `<!-- bench:<name>:begin -->` and `<!-- bench:<name>:end -->`; the rest of the file is kept.
#
# Two floors are measured: sequential (io_floor --threads 1) and parallel (one thread per core).
# Copying into the page cache is CPU-bound in the kernel here, so two threads write several times
# faster than one and a parallel tool beats the sequential floor; the verdict therefore uses the
# parallel floor (BENCH_FLOOR=sequential switches it).
#
# Environment: BENCH_OUT (default <repo>/bench-out), BENCH_RUNS (default 3),
# BENCH_ONLY (a space-separated subset of: convert merge upscale compare lora),
# BENCH_DOC (default <repo>/docs/PERFORMANCE.md), BENCH_FLOOR (parallel | sequential),
# BENCH_STRICT=1 (exit 3 on a MISS).
set -euo pipefail

die() { echo "bench: error: $*" >&2; exit 1; }
log() { echo "bench: $*" >&2; }

[[ $# -eq 1 ]] || die "usage: bench/run.sh BUILD_DIR"
[[ -d $1 ]] || die "build directory '$1' does not exist"
BUILD=$(cd "$1" && pwd)
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${BENCH_OUT:-$ROOT/bench-out}
RUNS=${BENCH_RUNS:-3}
DOC=${BENCH_DOC:-$ROOT/docs/PERFORMANCE.md}
GEN=$BUILD/examples/make_tiny_models
FLOOR=$BUILD/bench/io_floor
ALLOY=$BUILD/cli/alloy
TIME=/usr/bin/time
FLOOR_KIND=${BENCH_FLOOR:-parallel}
MISSES=0
[[ $FLOOR_KIND == parallel || $FLOOR_KIND == sequential ]] ||
  die "BENCH_FLOOR must be 'parallel' or 'sequential', not '$FLOOR_KIND'"

[[ -x $GEN ]] || die "$GEN is not built (make bench builds it; or: make -C $BUILD make_tiny_models)"
[[ -x $FLOOR ]] || die "$FLOOR is not built (make bench builds it; or: make -C $BUILD io_floor)"
[[ -x $ALLOY ]] || die "$ALLOY is not built (make bench builds it; or: make -C $BUILD alloy)"
[[ -x $TIME ]] || die "$TIME is missing: install the Debian package 'time' (make deps does)"

# ---- helpers ----

median() { sort -n | awk '{v[NR] = $1} END {if (NR == 0) exit 1; print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
json_field() { sed -nE "s/.*\"$1\": ([0-9.]+).*/\1/p"; }
dir_bytes() { find "$1" -name '*.safetensors' -printf '%s\n' | awk '{s += $1} END {printf "%.0f\n", s}'; }
rel() { echo "${1#"$ROOT"/}"; }
# judge RATIO TARGET [RSS_MIB MAX_RSS_MIB]: sets the caller's `verdict` to PASS when RATIO ≤ TARGET
# (and RSS ≤ its maximum), else to MISS, counted in MISSES.
judge() {
  if awk -v r="$1" -v t="$2" -v m="${3:-0}" -v x="${4:-0}" 'BEGIN {exit !(r <= t && (x == 0 || m <= x))}'; then
    verdict=PASS
  else
    verdict=MISS MISSES=$((MISSES + 1))
  fi
}

machine() {
  local cpu mem
  cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  mem=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "$(nproc) cores, $mem RAM, ${cpu:-unknown CPU}, Linux $(uname -r)"
}

# write_section NAME FILE: replaces NAME's marked section of $DOC with FILE (appends it when
# the markers are absent; creates $DOC with a short preamble when missing).
write_section() {
  local name=$1 body=$2 begin="<!-- bench:$1:begin -->" end="<!-- bench:$1:end -->" tmp
  mkdir -p "$(dirname "$DOC")"
  if [[ ! -f $DOC ]]; then
    cat >"$DOC" <<'EOF'
# alloy performance

Written by `bench/run.sh` (`make bench`). Each benchmark owns one section between
`<!-- bench:<name>:begin -->` and `<!-- bench:<name>:end -->` markers and rewrites it in place;
text outside the markers is kept. Times are wall-clock medians with a warm page cache.

The floor (`bench/io_floor`) reads every input byte once and writes one output of the same size
without fsync, from reused buffers. It is measured in the same run, interleaved with the command,
because write speed on small VMs swings from run to run. The parallel floor (one I/O thread per
core) is the one targets refer to: copying into the page cache is CPU-bound in the kernel on these
VMs, so a single writer thread (the sequential floor, also shown) is beaten by parallel tools.
EOF
  fi
  tmp=$(mktemp "$DOC.XXXXXX")
  if grep -qF "$begin" "$DOC"; then
    awk -v begin="$begin" -v end="$end" -v body="$body" '
      $0 == begin { while ((getline line < body) > 0) print line; skip = 1; next }
      $0 == end { skip = 0; next }
      !skip { print }' "$DOC" >"$tmp"
  else
    { cat "$DOC"; echo; cat "$body"; } >"$tmp"
  fi
  mv "$tmp" "$DOC"
}

# ---- inputs ----

GEN_ARGS=(--preset 1b --family llama --finetunes 2 --dtype bf16 --shard-size 2GB)
GEN_CMD="make_tiny_models $(rel "$OUT") ${GEN_ARGS[*]}"
mkdir -p "$OUT"
if [[ -f $OUT/.inputs-stamp && $(cat "$OUT/.inputs-stamp") == "$GEN_CMD" ]] &&
   [[ -f $OUT/llama-base/config.json && -f $OUT/llama-ft1/config.json && -f $OUT/llama-ft2/config.json ]]; then
  log "reusing inputs in $(rel "$OUT") ($GEN_CMD)"
else
  log "generating inputs: $GEN_CMD"
  rm -f "$OUT/.inputs-stamp"
  "$GEN" "$OUT" "${GEN_ARGS[@]}" >&2 || die "make_tiny_models failed"
  echo "$GEN_CMD" >"$OUT/.inputs-stamp"
fi
BASE=$OUT/llama-base
BASE_BYTES=$(dir_bytes "$BASE")
[[ $BASE_BYTES -gt 0 ]] || die "no .safetensors files in $BASE"

# ---- alloy convert: bf16 -> f16 of one model ----

bench_convert() {
  local conv=$OUT/conv-f16 floor_out=$OUT/conv-floor.bin tfile runlog
  local seq_s=() par_s=() alloy_s=() alloy_kib=() i json out_bytes s kib
  local cmd=("$ALLOY" convert "$BASE" "$conv" --dtype f16 --overwrite --quiet)
  local floor_cmd=("$FLOOR" --write-bytes "$BASE_BYTES" --out "$floor_out" "$BASE")
  tfile=$(mktemp) runlog=$(mktemp)
  "$ALLOY" convert --help >/dev/null 2>&1 || die "'alloy convert' is not available in $ALLOY"
  "$FLOOR" "$BASE" >/dev/null || die "io_floor failed"  # warm the page cache
  for ((i = 1; i <= RUNS; i++)); do
    # Every timed command starts with no dirty pages: outputs are deleted (their dirty pages
    # are dropped) and sync waits for any writeback in flight.
    rm -rf "$OUT"/conv-* && sync
    json=$("${floor_cmd[@]}" --threads 1) || die "io_floor failed"
    seq_s+=("$(json_field seconds <<<"$json")")
    rm -f "$floor_out" && sync
    json=$("${floor_cmd[@]}" --threads "$(nproc)") || die "io_floor failed"
    par_s+=("$(json_field seconds <<<"$json")")
    rm -f "$floor_out" && sync
    if ! "$TIME" -f '%e %M' -o "$tfile" "${cmd[@]}" >"$runlog" 2>&1; then
      cat "$runlog" >&2
      die "alloy convert failed: ${cmd[*]} ($(head -1 "$tfile"))"
    fi
    out_bytes=$(dir_bytes "$conv")
    # Same element count, 16 bits both sides: only the headers may differ.
    ((out_bytes > BASE_BYTES * 99 / 100 && out_bytes < BASE_BYTES * 101 / 100)) ||
      die "alloy convert wrote $out_bytes bytes of safetensors, expected about $BASE_BYTES"
    read -r s kib <"$tfile"
    alloy_s+=("$s") alloy_kib+=("$kib")
    log "convert run $i/$RUNS: floor ${par_s[-1]} s parallel, ${seq_s[-1]} s sequential; alloy $s s," \
      "peak RSS $((kib / 1024)) MiB"
  done
  rm -rf "$OUT"/conv-* "$tfile" "$runlog"

  local p q a k f ratio rss verdict body
  p=$(printf '%s\n' "${par_s[@]}" | median)
  q=$(printf '%s\n' "${seq_s[@]}" | median)
  a=$(printf '%s\n' "${alloy_s[@]}" | median)
  k=$(printf '%s\n' "${alloy_kib[@]}" | median)
  f=$p
  if [[ $FLOOR_KIND == sequential ]]; then f=$q; fi
  ratio=$(awk -v a="$a" -v f="$f" 'BEGIN {printf "%.2f", a / f}')
  rss=$(awk -v k="$k" 'BEGIN {printf "%.0f", k / 1024}')
  judge "$ratio" 1.3 "$rss" 256
  body=$(mktemp)
  cat >"$body" <<EOF
<!-- bench:convert:begin -->
## alloy convert (bf16 → f16, one Llama-3.2-1B-shaped model)

Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(machine); $RUNS interleaved runs, medians.

* Input: \`$GEN_CMD\` → \`$(rel "$BASE")\`, $BASE_BYTES bytes of safetensors.
* Floor: \`io_floor --threads $(nproc) --write-bytes $BASE_BYTES --out $(rel "$floor_out") $(rel "$BASE")\`
  (parallel: one thread per core); the sequential floor is the same with \`--threads 1\`.
  The verdict uses the $FLOOR_KIND floor.
* alloy: \`alloy convert $(rel "$BASE") $(rel "$conv") --dtype f16 --overwrite --quiet\`, timed with
  \`/usr/bin/time -f '%e %M'\`.

| | parallel floor | sequential floor | alloy | alloy / floor | peak RSS | target | result |
|---|---|---|---|---|---|---|---|
| convert | $p s | $q s | $a s | $ratio× | $rss MiB | ≤ 1.3× floor, RSS ≤ 256 MiB | **$verdict** |

Per run (s): parallel floor ${par_s[*]}; sequential floor ${seq_s[*]}; alloy ${alloy_s[*]}.
<!-- bench:convert:end -->
EOF
  write_section convert "$body"
  rm -f "$body"
  log "convert: floor $p s parallel, $q s sequential; alloy $a s; alloy / $FLOOR_KIND floor" \
    "$ratio, peak RSS $rss MiB: $verdict (see $(rel "$DOC"))"
}

# ---- alloy merge: linear, task_arithmetic, ties, dare_ties of base + 2 fine-tunes ----

MERGE_METHODS=(linear task_arithmetic ties dare_ties slerp)

# merge_recipe METHOD: a recipe over the three bench models (absolute paths).
merge_recipe() {
  local m=$1 ft1=$OUT/llama-ft1 ft2=$OUT/llama-ft2
  case $m in
    linear)
      printf 'merge_method: linear\nmodels:\n  - model: %s\n    parameters: {weight: 0.4}\n  - model: %s\n    parameters: {weight: 0.3}\n  - model: %s\n    parameters: {weight: 0.3}\ndtype: bfloat16\n' \
        "$BASE" "$ft1" "$ft2" ;;
    task_arithmetic)
      printf 'merge_method: task_arithmetic\nbase_model: %s\nmodels:\n  - model: %s\n    parameters: {weight: 0.5}\n  - model: %s\n    parameters: {weight: 0.5}\ndtype: bfloat16\n' \
        "$BASE" "$ft1" "$ft2" ;;
    slerp)
      printf 'merge_method: slerp\nbase_model: %s\nmodels:\n  - model: %s\n  - model: %s\nparameters: {t: 0.4}\ndtype: bfloat16\n' \
        "$BASE" "$BASE" "$ft1" ;;
    ties|dare_ties)
      printf 'merge_method: %s\nbase_model: %s\nmodels:\n  - model: %s\n    parameters: {weight: 0.5, density: 0.5}\n  - model: %s\n    parameters: {weight: 0.5, density: 0.5}\ndtype: bfloat16\n' \
        "$m" "$BASE" "$ft1" "$ft2" ;;
  esac
}

merge_target() { case $1 in linear|task_arithmetic) echo 1.15 ;; slerp) echo 1.3 ;; *) echo 1.5 ;; esac; }
# Inputs a method reads: slerp merges two models, the others three.
merge_inputs() { case $1 in slerp) echo 2 ;; *) echo 3 ;; esac; }

bench_merge() {
  local dir=$OUT/merge-recipes floor_out=$OUT/merge-floor.bin tfile runlog
  local seq_s=() par_s=() par2_s=() i m json s kib out_bytes
  local inputs=("$BASE" "$OUT/llama-ft1" "$OUT/llama-ft2")
  local floor_cmd=("$FLOOR" --write-bytes "$BASE_BYTES" --out "$floor_out" "${inputs[@]}")
  local floor2_cmd=("$FLOOR" --write-bytes "$BASE_BYTES" --out "$floor_out" "${inputs[@]:0:2}")
  local -A times=() rss=()
  tfile=$(mktemp) runlog=$(mktemp)
  mkdir -p "$dir"
  for m in "${MERGE_METHODS[@]}"; do merge_recipe "$m" >"$dir/$m.yaml"; done
  "$FLOOR" "${inputs[@]}" >/dev/null || die "io_floor failed"  # warm the page cache
  for ((i = 1; i <= RUNS; i++)); do
    rm -rf "$OUT"/merge-out-* "$floor_out" && sync
    json=$("${floor_cmd[@]}" --threads 1) || die "io_floor failed"
    seq_s+=("$(json_field seconds <<<"$json")")
    rm -f "$floor_out" && sync
    json=$("${floor_cmd[@]}" --threads "$(nproc)") || die "io_floor failed"
    par_s+=("$(json_field seconds <<<"$json")")
    rm -f "$floor_out" && sync
    json=$("${floor2_cmd[@]}" --threads "$(nproc)") || die "io_floor failed"
    par2_s+=("$(json_field seconds <<<"$json")")
    rm -f "$floor_out" && sync
    for m in "${MERGE_METHODS[@]}"; do
      local cmd=("$ALLOY" merge "$dir/$m.yaml" "$OUT/merge-out-$m" --overwrite --quiet)
      if ! "$TIME" -f '%e %M' -o "$tfile" "${cmd[@]}" >"$runlog" 2>&1; then
        cat "$runlog" >&2
        die "alloy merge failed: ${cmd[*]} ($(head -1 "$tfile"))"
      fi
      out_bytes=$(dir_bytes "$OUT/merge-out-$m")
      ((out_bytes > BASE_BYTES * 99 / 100 && out_bytes < BASE_BYTES * 101 / 100)) ||
        die "alloy merge ($m) wrote $out_bytes bytes of safetensors, expected about $BASE_BYTES"
      read -r s kib <"$tfile"
      times[$m]+="$s " rss[$m]+="$kib "
      rm -rf "$OUT/merge-out-$m" && sync
    done
    log "merge run $i/$RUNS: floor ${par_s[-1]} s parallel, ${seq_s[-1]} s sequential;" \
      "$(for m in "${MERGE_METHODS[@]}"; do printf '%s %s s; ' "$m" "$(awk '{print $NF}' <<<"${times[$m]}")"; done)"
  done
  rm -f "$tfile" "$runlog"

  local p p2 q f body a k ratio mib verdict target rows="" per_run=""
  p=$(printf '%s\n' "${par_s[@]}" | median)
  p2=$(printf '%s\n' "${par2_s[@]}" | median)
  q=$(printf '%s\n' "${seq_s[@]}" | median)
  for m in "${MERGE_METHODS[@]}"; do
    f=$p
    if [[ $(merge_inputs "$m") == 2 ]]; then f=$p2; fi
    if [[ $FLOOR_KIND == sequential ]]; then f=$q; fi
    a=$(tr ' ' '\n' <<<"${times[$m]}" | grep . | median)
    k=$(tr ' ' '\n' <<<"${rss[$m]}" | grep . | median)
    ratio=$(awk -v a="$a" -v f="$f" 'BEGIN {printf "%.2f", a / f}')
    mib=$(awk -v k="$k" 'BEGIN {printf "%.0f", k / 1024}')
    target=$(merge_target "$m")
    judge "$ratio" "$target" "$mib" 512
    rows+="| $m | $(merge_inputs "$m") | $f s | $a s | ${ratio}× | $mib MiB | ≤ ${target}× floor, RSS ≤ 512 MiB | **$verdict** |"$'\n'
    per_run+="$m ${times[$m]% }; "
    log "merge $m: $a s, ${ratio}× the $FLOOR_KIND floor, peak RSS $mib MiB: $verdict"
  done
  body=$(mktemp)
  cat >"$body" <<EOF
<!-- bench:merge:begin -->
## alloy merge (base + 2 fine-tunes, Llama-3.2-1B-shaped, bf16)

Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(machine); $RUNS interleaved runs, medians.

* Inputs: \`$GEN_CMD\` → \`$(rel "$BASE")\`, \`llama-ft1\`, \`llama-ft2\`; $BASE_BYTES bytes of
  safetensors each, and one output of that size.
* Floor: \`io_floor --threads $(nproc) --write-bytes $BASE_BYTES --out $(rel "$floor_out")\` over the
  three inputs: **$p s** parallel, $q s sequential (\`--threads 1\`); over the first two
  inputs (for slerp): **$p2 s** parallel. The verdict uses the $FLOOR_KIND floor.
* alloy: \`alloy merge $(rel "$dir")/METHOD.yaml OUT --overwrite --quiet\` (recipes written by
  \`bench/run.sh\`: linear weights 0.4/0.3/0.3; task_arithmetic weights 0.5/0.5; ties and
  dare_ties weight 0.5, density 0.5; slerp of base and ft1 at t = 0.4), timed with
  \`/usr/bin/time -f '%e %M'\`.

| method | inputs | floor | alloy | alloy / floor | peak RSS | target | result |
|---|---|---|---|---|---|---|---|
${rows}
Per run (s): parallel floor ${par_s[*]}; two-input floor ${par2_s[*]}; sequential floor ${seq_s[*]};
${per_run}
<!-- bench:merge:end -->
EOF
  write_section merge "$body"
  rm -f "$body"
}

# ---- alloy upscale: SOLAR-style depth up-scaling of one model (a pure copy) ----

bench_upscale() {
  local out=$OUT/upscale-out floor_out=$OUT/upscale-floor.bin tfile runlog
  local par_s=() alloy_s=() alloy_kib=() i json s kib out_bytes layers target_layers
  "$ALLOY" upscale --help >/dev/null 2>&1 || { log "upscale: 'alloy upscale' is not built; skipped"; return; }
  layers=$(sed -nE 's/.*"num_hidden_layers": *([0-9]+).*/\1/p' "$BASE/config.json" | head -1)
  target_layers=$((layers * 3 / 2))
  local cmd=("$ALLOY" upscale "$BASE" "$out" --layers "$target_layers" --overwrite --quiet)
  tfile=$(mktemp) runlog=$(mktemp)
  # One run first: the floor writes as many bytes as the upscaled model has.
  rm -rf "$out" && "${cmd[@]}" >"$runlog" 2>&1 || { cat "$runlog" >&2; die "alloy upscale failed: ${cmd[*]}"; }
  out_bytes=$(dir_bytes "$out")
  local floor_cmd=("$FLOOR" --write-bytes "$out_bytes" --out "$floor_out" "$BASE")
  for ((i = 1; i <= RUNS; i++)); do
    rm -rf "$out" "$floor_out" && sync
    json=$("${floor_cmd[@]}" --threads "$(nproc)") || die "io_floor failed"
    par_s+=("$(json_field seconds <<<"$json")")
    rm -f "$floor_out" && sync
    if ! "$TIME" -f '%e %M' -o "$tfile" "${cmd[@]}" >"$runlog" 2>&1; then
      cat "$runlog" >&2
      die "alloy upscale failed: ${cmd[*]} ($(head -1 "$tfile"))"
    fi
    read -r s kib <"$tfile"
    alloy_s+=("$s") alloy_kib+=("$kib")
    log "upscale run $i/$RUNS: floor ${par_s[-1]} s parallel; alloy $s s, peak RSS $((kib / 1024)) MiB"
  done
  rm -rf "$out" "$tfile" "$runlog"
  local p a k ratio rss verdict body
  p=$(printf '%s\n' "${par_s[@]}" | median)
  a=$(printf '%s\n' "${alloy_s[@]}" | median)
  k=$(printf '%s\n' "${alloy_kib[@]}" | median)
  ratio=$(awk -v a="$a" -v f="$p" 'BEGIN {printf "%.2f", a / f}')
  rss=$(awk -v k="$k" 'BEGIN {printf "%.0f", k / 1024}')
  judge "$ratio" 1.1 "$rss" 512
  body=$(mktemp)
  cat >"$body" <<EOF
<!-- bench:upscale:begin -->
## alloy upscale (SOLAR-style, $layers → $target_layers layers of the Llama-3.2-1B-shaped base, a pure copy)

Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(machine); $RUNS interleaved runs, medians.

* Floor: \`io_floor --threads $(nproc) --write-bytes $out_bytes --out $(rel "$floor_out") $(rel "$BASE")\`
  (read the model once, write the upscaled model's $out_bytes bytes).
* alloy: \`alloy upscale $(rel "$BASE") OUT --layers $target_layers --overwrite --quiet\`.

| | floor | alloy | alloy / floor | peak RSS | target | result |
|---|---|---|---|---|---|---|
| upscale | $p s | $a s | ${ratio}× | $rss MiB | ≤ 1.1× floor, RSS ≤ 512 MiB | **$verdict** |

Per run (s): floor ${par_s[*]}; alloy ${alloy_s[*]}.
<!-- bench:upscale:end -->
EOF
  write_section upscale "$body"
  rm -f "$body"
  log "upscale: floor $p s; alloy $a s; ratio $ratio, peak RSS $rss MiB: $verdict"
}

# ---- alloy compare: two models, every weight figure ----

bench_compare() {
  local a_dir=$OUT/llama-ft1 b_dir=$BASE tfile runlog
  local floor_s=() alloy_s=() alloy_kib=() i json s kib
  "$ALLOY" compare --help >/dev/null 2>&1 || { log "compare: 'alloy compare' is not built; skipped"; return; }
  local cmd=("$ALLOY" compare "$a_dir" "$b_dir" --quiet)
  local floor_cmd=("$FLOOR" --threads "$(nproc)" "$a_dir" "$b_dir")
  tfile=$(mktemp) runlog=$(mktemp)
  for ((i = 1; i <= RUNS; i++)); do
    json=$("${floor_cmd[@]}") || die "io_floor failed"
    floor_s+=("$(json_field seconds <<<"$json")")
    if ! "$TIME" -f '%e %M' -o "$tfile" "${cmd[@]}" >"$runlog" 2>&1; then
      cat "$runlog" >&2
      die "alloy compare failed: ${cmd[*]} ($(head -1 "$tfile"))"
    fi
    read -r s kib <"$tfile"
    alloy_s+=("$s") alloy_kib+=("$kib")
    log "compare run $i/$RUNS: read floor ${floor_s[-1]} s; alloy $s s, peak RSS $((kib / 1024)) MiB"
  done
  rm -f "$tfile" "$runlog"
  local f a k ratio rss verdict body
  f=$(printf '%s\n' "${floor_s[@]}" | median)
  a=$(printf '%s\n' "${alloy_s[@]}" | median)
  k=$(printf '%s\n' "${alloy_kib[@]}" | median)
  ratio=$(awk -v a="$a" -v f="$f" 'BEGIN {printf "%.2f", a / f}')
  rss=$(awk -v k="$k" 'BEGIN {printf "%.0f", k / 1024}')
  judge "$ratio" 1.3
  body=$(mktemp)
  cat >"$body" <<EOF
<!-- bench:compare:begin -->
## alloy compare (two Llama-3.2-1B-shaped models, bf16)

Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(machine); $RUNS interleaved runs, medians.

* Floor: \`io_floor --threads $(nproc) $(rel "$a_dir") $(rel "$b_dir")\` (stream-read both models, one
  thread per core, nothing written).
* alloy: \`alloy compare $(rel "$a_dir") $(rel "$b_dir") --quiet\` (cosine, relative L2, max |A − B|
  and sign agreement of every tensor).

| | read floor | alloy | alloy / floor | peak RSS | target | result |
|---|---|---|---|---|---|---|
| compare | $f s | $a s | ${ratio}× | $rss MiB | ≤ 1.3× floor | **$verdict** |

Per run (s): floor ${floor_s[*]}; alloy ${alloy_s[*]}.
<!-- bench:compare:end -->
EOF
  write_section compare "$body"
  rm -f "$body"
  log "compare: read floor $f s; alloy $a s; ratio $ratio, peak RSS $rss MiB: $verdict"
}

# ---- alloy lora: extract a rank-32 adapter from a fine-tune, then apply it ----

# timed LABEL CMD...: runs CMD under /usr/bin/time, dies on failure, prints "SECONDS KIB".
timed() {
  local label=$1 tfile runlog
  shift
  tfile=$(mktemp) runlog=$(mktemp)
  if ! "$TIME" -f '%e %M' -o "$tfile" "$@" >"$runlog" 2>&1; then
    cat "$runlog" >&2
    die "$label failed: $* ($(head -1 "$tfile"))"
  fi
  cat "$tfile"
  rm -f "$tfile" "$runlog"
}

bench_lora() {
  local ft=$OUT/llama-ft1 adapter=$OUT/lora-extract applied=$OUT/lora-applied
  local floor_out=$OUT/lora-floor.bin rank=32
  local ex_s=() ex_kib=() ap_s=() ap_kib=() floor_s=() i json s kib out_bytes
  "$ALLOY" lora extract --help >/dev/null 2>&1 || { log "lora: 'alloy lora extract' is not built; skipped"; return; }
  local extract=("$ALLOY" lora extract --base "$BASE" --model "$ft" "$adapter" --rank "$rank" --overwrite --quiet)
  local apply=("$ALLOY" lora apply "$BASE" "$adapter" "$applied" --overwrite --quiet)
  for ((i = 1; i <= RUNS; i++)); do
    read -r s kib < <(timed "alloy lora extract" "${extract[@]}")
    ex_s+=("$s") ex_kib+=("$kib")
    rm -rf "$applied" "$floor_out" && sync
    read -r s kib < <(timed "alloy lora apply" "${apply[@]}")
    ap_s+=("$s") ap_kib+=("$kib")
    out_bytes=$(dir_bytes "$applied")
    rm -rf "$applied" && sync
    json=$("$FLOOR" --threads "$(nproc)" --write-bytes "$out_bytes" --out "$floor_out" "$BASE" \
      "$adapter/adapter_model.safetensors") || die "io_floor failed"
    floor_s+=("$(json_field seconds <<<"$json")")
    rm -f "$floor_out"
    log "lora run $i/$RUNS: extract ${ex_s[-1]} s; apply ${ap_s[-1]} s, floor ${floor_s[-1]} s"
  done
  local adapter_bytes e ek a ak f ratio verdict body
  adapter_bytes=$(dir_bytes "$adapter")
  rm -rf "$adapter"
  e=$(printf '%s\n' "${ex_s[@]}" | median)
  ek=$(printf '%s\n' "${ex_kib[@]}" | median)
  a=$(printf '%s\n' "${ap_s[@]}" | median)
  ak=$(printf '%s\n' "${ap_kib[@]}" | median)
  f=$(printf '%s\n' "${floor_s[@]}" | median)
  ratio=$(awk -v a="$a" -v f="$f" 'BEGIN {printf "%.2f", a / f}')
  judge "$ratio" 1.3
  body=$(mktemp)
  cat >"$body" <<EOF
<!-- bench:lora:begin -->
## alloy lora extract and apply (rank $rank, Llama-3.2-1B-shaped fine-tune)

Measured $(date -u '+%Y-%m-%d %H:%M UTC') on $(machine); $RUNS runs, medians.

* extract: \`alloy lora extract --base $(rel "$BASE") --model $(rel "$ft") OUT --rank $rank\`: every
  2-D weight's ΔW by randomized SVD (2 power iterations), embeddings and norms saved whole; the
  adapter has $adapter_bytes bytes. The bench fine-tune is base + Gaussian noise, whose flat
  spectrum is the worst case for a sketch (real fine-tunes decay faster).
* apply: \`alloy lora apply $(rel "$BASE") ADAPTER OUT\` (W + B·A per changed tensor, in float64).
* Floor: \`io_floor --threads $(nproc) --write-bytes <output bytes> --out FILE BASE ADAPTER\`.

| | floor | alloy | alloy / floor | peak RSS | target | result |
|---|---|---|---|---|---|---|
| lora extract | – | $e s | – | $((ek / 1024)) MiB | – | – |
| lora apply | $f s | $a s | ${ratio}× | $((ak / 1024)) MiB | ≤ 1.3× floor | **$verdict** |

Per run (s): extract ${ex_s[*]}; apply ${ap_s[*]}; floor ${floor_s[*]}.
<!-- bench:lora:end -->
EOF
  write_section lora "$body"
  rm -f "$body"
  log "lora: extract $e s; apply $a s vs floor $f s, ratio $ratio: $verdict"
}

wants() { [[ -z ${BENCH_ONLY:-} || " $BENCH_ONLY " == *" $1 "* ]]; }

if wants convert; then bench_convert; fi
if wants merge; then bench_merge; fi
if wants upscale; then bench_upscale; fi
if wants compare; then bench_compare; fi
if wants lora; then bench_lora; fi

if ((MISSES > 0)) && [[ ${BENCH_STRICT:-0} == 1 ]]; then exit 3; fi
exit 0
