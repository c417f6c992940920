#!/usr/bin/env bash
# Type-checks the Grafana dashboards against Grafana's published schema, without Grafana.
#
#   scripts/grafana-check.sh install         # npm ci into deploy/grafana/check/node_modules
#   scripts/grafana-check.sh [check [DIR]]   # install if needed, then tsc --noEmit over DIR
#                                            # (default deploy/grafana/dashboards)
#
# deploy/grafana/check/generate.mjs writes one .ts file per dashboard declaring the JSON
# as @grafana/schema's Dashboard (and each panel's options as its plugin's Options);
# tsc --noEmit then reports every field the schema does not allow. Versions are pinned in
# deploy/grafana/check/package-lock.json. Needs node >= 18 and npm (Debian: nodejs npm).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
check="$root/deploy/grafana/check"
out=""

need_node() {
  local missing=()
  command -v node >/dev/null || missing+=(node)
  command -v npm >/dev/null || missing+=(npm)
  if (( ${#missing[@]} )); then
    echo "grafana-check: ${missing[*]} not found (Debian: apt-get install nodejs npm)" >&2
    exit 3
  fi
  local major
  major="$(node -p 'process.versions.node.split(".")[0]')"
  if (( major < 18 )); then
    echo "grafana-check: node $(node --version) is too old, need >= 18" >&2
    exit 3
  fi
}

install() {
  need_node
  # npm ci: exactly the locked versions, node_modules recreated from scratch.
  (cd "$check" && npm ci --no-audit --no-fund --loglevel=error)
  echo "grafana-check: $(cd "$check" && node -p 'require("@grafana/schema/package.json").version' \
    | sed 's/^/@grafana\/schema /'), typescript $("$check/node_modules/.bin/tsc" --version | awk '{print $2}')"
}

installed() {
  [[ -x "$check/node_modules/.bin/tsc" && -f "$check/node_modules/@grafana/schema/package.json" ]] \
    && [[ "$check/node_modules/.package-lock.json" -nt "$check/package-lock.json" ]]
}

run_check() {
  local dir="${1:-$root/deploy/grafana/dashboards}"
  need_node
  installed || install
  dir="$(cd "$dir" && pwd)"
  out="$(mktemp -d "$check/generated.XXXXXX")"
  trap 'rm -rf "$out"' EXIT
  node "$check/generate.mjs" "$dir" "$out"
  # A tsconfig beside the generated files, so parallel runs never share one folder.
  printf '{"extends": "../tsconfig.json", "include": ["../json-of.ts", "*.ts"]}\n' >"$out/tsconfig.json"
  "$check/node_modules/.bin/tsc" -p "$out/tsconfig.json"
  echo "grafana-check: $(ls "$dir"/*.json | wc -l) dashboard(s) in $dir match Grafana's schema"
}

case "${1:-check}" in
  install) install ;;
  check) run_check "${2:-}" ;;
  *) echo "usage: $0 [install | check [DASHBOARD_DIR]]" >&2; exit 2 ;;
esac
