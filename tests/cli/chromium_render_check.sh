#!/usr/bin/env bash
# Renders an `alloy compare` HTML report in headless Chromium and checks that
# its script ran to the end without errors and that it drew something.
#
#   chromium_render_check.sh HTML_FILE WORK_DIR
#
# 1. --dump-dom: the page's body must carry data-rendered="ok" (set by the
#    renderer as its last step; window.onerror sets "error: ..." instead).
#    The same run logs the JS console to stderr, which must hold no uncaught
#    exception, error or refused (CSP) load.
# 2. --screenshot at 1400x1800: the PNG must exist, be 1400x1800 and be
#    at least 5 times larger than a screenshot of a blank white page taken the
#    same way (a blank page compresses to almost nothing).
#
# Exit status: 0 pass, 1 fail, 77 skip (CTest SKIP_RETURN_CODE) when chromium
# is not installed. Needs bash and coreutils only. Chromium runs with
# --no-sandbox because the tests may run as root (in CI containers).
set -u

if [ $# -ne 2 ]; then
  echo "usage: $0 HTML_FILE WORK_DIR" >&2
  exit 2
fi

if ! command -v chromium >/dev/null 2>&1; then
  echo "SKIP: chromium not installed: apt-get install chromium"
  exit 77
fi

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

html=$1
work=$2
[ -s "$html" ] || fail "no HTML file at $html"
mkdir -p "$work" || fail "cannot create $work"
work=$(cd "$work" && pwd)
html=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")

# Runs headless chromium with a fresh profile inside WORK_DIR (no state from
# an earlier run or from the user's own profile) under a timeout, so a hung
# browser fails the test instead of stalling CTest.
run=0
chromium_headless() {
  run=$((run + 1))
  local profile="$work/profile-$run"
  rm -rf "$profile"
  timeout -k 10 120 chromium --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
    --no-first-run --no-default-browser-check --disable-extensions --hide-scrollbars \
    --user-data-dir="$profile" "$@"
  local status=$?
  rm -rf "$profile"
  return $status
}

# ---- 1. the script ran to the end, with a clean console ----
dom="$work/dom.html"
log="$work/chromium.log"
chromium_headless --enable-logging=stderr --v=0 --dump-dom "file://$html" >"$dom" 2>"$log"
status=$?
[ $status -eq 0 ] || { tail -n 20 "$log" >&2; fail "chromium --dump-dom exited with $status"; }
# Console messages are logged as "...:INFO:CONSOLE:<line>] "<text>", source: ...".
console=$(grep -a 'CONSOLE' "$log" || true)
if [ -n "$console" ]; then
  echo "console output:"
  echo "$console"
fi
if echo "$console" | grep -a -q -E 'Uncaught|Error|error|Refused|Failed|Content Security Policy'; then
  fail "the page logged an error in the console (see above)"
fi
rendered=$(grep -a -o 'data-rendered="[^"]*"' "$dom" | head -n 1)
if [ "$rendered" != 'data-rendered="ok"' ]; then
  fail "the page did not finish rendering: ${rendered:-no data-rendered attribute on <body>}"
fi
echo "dump-dom: $rendered, $(wc -c <"$dom") bytes of DOM"

# ---- 2. a screenshot that is not blank ----
# The size of a PNG's IHDR width and height (big-endian, bytes 16..23).
png_dims() {
  local b
  b=($(od -An -tu1 -j16 -N8 "$1"))
  [ ${#b[@]} -eq 8 ] || return 1
  local width=$(((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]))
  local height=$(((b[4] << 24) | (b[5] << 16) | (b[6] << 8) | b[7]))
  echo "${width}x${height}"
}
is_png() {
  [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = "89504e470d0a1a0a" ]
}
screenshot() {  # URL OUT.png
  rm -f "$2"
  local log="$work/screenshot.log"
  chromium_headless --screenshot="$2" --window-size=1400,1800 "$1" >/dev/null 2>"$log"
  local status=$?
  if [ $status -ne 0 ]; then
    tail -n 20 "$log" >&2
    fail "chromium --screenshot exited with $status"
  fi
  [ -s "$2" ] || fail "no screenshot written to $2"
  is_png "$2" || fail "$2 is not a PNG"
  [ "$(png_dims "$2")" = "1400x1800" ] || fail "$2 is $(png_dims "$2"), not 1400x1800"
}

shot="$work/report.png"
blank_html="$work/blank.html"
blank="$work/blank.png"
printf '<!DOCTYPE html><html><body style="background:#fff"></body></html>\n' >"$blank_html"
screenshot "file://$html" "$shot"
screenshot "file://$blank_html" "$blank"
shot_bytes=$(wc -c <"$shot")
blank_bytes=$(wc -c <"$blank")
echo "screenshot: $shot ($shot_bytes bytes; blank page: $blank_bytes bytes)"
if [ "$shot_bytes" -lt $((blank_bytes * 5)) ]; then
  fail "the screenshot looks blank: $shot_bytes bytes against $blank_bytes for a blank page"
fi
echo "PASS"
