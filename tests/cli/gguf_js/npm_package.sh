# Sourced by the GGUF reader checks: `npm_package DIR PACKAGE@VERSION` installs
# the package into DIR/node_modules once (exit 77 = skipped when node/npm are
# missing or the registry cannot be reached).
npm_package() {
  local dir=$1 spec=$2
  local name=${spec%@*}
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "SKIP: node/npm not installed"; exit 77
  fi
  mkdir -p "$dir"
  if [ ! -d "$dir/node_modules/$name" ]; then
    ( cd "$dir" && npm install --no-audit --no-fund --silent "$spec" >npm.log 2>&1 ) || {
      echo "SKIP: npm install $spec failed:"; tail -5 "$dir/npm.log"; exit 77; }
  fi
}
