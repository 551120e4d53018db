#!/usr/bin/env bash
# Runs ctest in BUILD_DIR and ends with one line: "N passed, N failed".
# Arguments after JOBS go to ctest (e.g. -LE 'chromium|npm').
# Exit status: 0 only when every test passed and at least one ran.
set -uo pipefail
build=${1:?usage: run_ctest.sh BUILD_DIR [JOBS] [ctest args...]}
jobs=${2:-2}
shift $(( $# < 2 ? $# : 2 ))
log="$build/ctest.log"
ctest --test-dir "$build" -j "$jobs" --output-on-failure --timeout 600 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
summary=$(grep -E '^[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
if [ -z "$summary" ]; then
  echo "0 passed, 1 failed"
  echo "run_ctest: ctest printed no summary (status $status)" >&2
  exit 1
fi
failed=$(echo "$summary" | sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/')
total=$(echo "$summary" | sed -E 's/.* out of ([0-9]+).*/\1/')
echo "$((total - failed)) passed, $failed failed"
if [ "$status" -ne 0 ] || [ "$failed" -ne 0 ] || [ "$total" -eq 0 ]; then exit 1; fi
