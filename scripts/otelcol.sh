#!/usr/bin/env bash
# Build the OpenTelemetry Collector of deploy/otelcol/manifest.yaml with the official builder
# (go.opentelemetry.io/collector/cmd/builder) into .tools/otelcol, for the trace test.
#
#   scripts/otelcol.sh build     build unless .tools/otelcol is there for this very manifest
#   scripts/otelcol.sh path      print the binary's path; exit 1 when it is not built
#
# Needs Go >= 1.25 (the builder's go.mod), found as `go` on PATH or /usr/local/go/bin/go
# (GO=... overrides). Modules come from the Go module proxy into Go's module cache; a cold
# build takes about 2.5 minutes on 2 cores. The binary is rebuilt when the manifest changes
# (its sha256 is kept beside the binary).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
builder_version="v0.148.0"  # the collector release of every component in the manifest
manifest="$root/deploy/otelcol/manifest.yaml"
tools="$root/.tools"
binary="$tools/otelcol"
stamp="$tools/otelcol.manifest.sha256"
min_go="1.25"

die() { echo "otelcol: $*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

find_go() {
  local go="${GO:-}"
  if [[ -z "$go" ]]; then
    if command -v go >/dev/null; then go="$(command -v go)"; elif [[ -x /usr/local/go/bin/go ]]; then go=/usr/local/go/bin/go; fi
  fi
  [[ -n "$go" && -x "$go" ]] || die "Go is missing: install Go >= $min_go (https://go.dev/dl/) at /usr/local/go or on PATH, or set GO=/path/to/go"
  local have
  have="$("$go" env GOVERSION | sed 's/^go//')"
  if [[ "$(printf '%s\n%s\n' "$min_go" "$have" | sort -V | head -1)" != "$min_go" ]]; then
    die "Go $have at $go is too old: the collector builder $builder_version needs Go >= $min_go"
  fi
  echo "$go"
}

want() { sha256sum "$manifest" | cut -d' ' -f1; }
built() { [[ -x "$binary" && -f "$stamp" && "$(cat "$stamp")" == "$(want)" ]]; }

build() {
  if built; then echo "otelcol: $binary is up to date ($("$binary" --version 2>/dev/null || echo '?'))"; return 0; fi
  local go start
  go="$(find_go)"
  start="$(now)"
  work="$(mktemp -d)"  # global: the EXIT trap runs after build() returned
  trap 'rm -rf "$work"' EXIT
  echo "otelcol: building with $("$go" version) and builder $builder_version (about 2.5 min cold)"
  GOBIN="$work/bin" "$go" install "go.opentelemetry.io/collector/cmd/builder@$builder_version"
  # The builder runs `go` itself: put ours first on PATH.
  (cd "$work" && PATH="$(dirname "$go"):$PATH" "$work/bin/builder" --config="$manifest" \
    --output-path="$work/out" >"$work/builder.log" 2>&1) || { cat "$work/builder.log" >&2; die "the build failed"; }
  mkdir -p "$tools"
  install -m 0755 "$work/out/otelcol-dunning" "$binary"
  want >"$stamp"
  echo "otelcol: built $binary in $(since "$start") s: $("$binary" --version)"
}

case "${1:-build}" in
  build) build ;;
  path) built || die "not built: run scripts/otelcol.sh build"; echo "$binary" ;;
  *) die "usage: scripts/otelcol.sh build|path" ;;
esac
