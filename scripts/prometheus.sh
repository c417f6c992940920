#!/usr/bin/env bash
# Prometheus for the metrics tests: Debian's `prometheus` package, never its service.
#
#   scripts/prometheus.sh install   install the package when `prometheus` is missing (root only;
#                                   apt-get update first); exits 0 when it is already there
#   scripts/prometheus.sh version   print the installed version (exit 1 when missing)
#
# The tests start their own server (tests/support/prometheus.py: a free loopback port, a
# generated config, storage in a temporary folder). The package's own service would
# listen on :9090 for everyone on the machine, so while installing, a policy-rc.d (the
# Debian way to say "install, do not start") keeps it from starting, unless the machine
# already has one of its own.
set -euo pipefail

die() { echo "prometheus: $*" >&2; exit 1; }

binary() { command -v prometheus 2>/dev/null || { [[ -x /usr/bin/prometheus ]] && echo /usr/bin/prometheus; }; }

version() {
  local bin
  bin="$(binary)" || return 1
  "$bin" --version 2>&1 | head -1
}

install() {
  if bin="$(binary)"; then
    echo "prometheus: already installed ($(version))"
    return 0
  fi
  [[ "$(id -u)" == 0 ]] || die "not installed, and only root can install Debian's prometheus package (run: sudo $0 install)"
  command -v apt-get >/dev/null || die "not installed, and no apt-get here to install Debian's prometheus package"
  export DEBIAN_FRONTEND=noninteractive
  local policy=/usr/sbin/policy-rc.d
  if [[ ! -e "$policy" ]]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    # shellcheck disable=SC2064  # expand now: remove only the file this run created
    trap "rm -f '$policy'" EXIT
  fi
  if [[ -z "${DUNNING_APT_UPDATED:-}" ]]; then
    echo "prometheus: apt-get update"
    apt-get update -qq >/dev/null || die "apt-get update failed"
  fi
  echo "prometheus: installing Debian's prometheus package"
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends prometheus >/dev/null \
    || die "apt-get install prometheus failed"
  binary >/dev/null || die "installed, but no prometheus binary found"
  echo "prometheus: $(version)"
}

case "${1:-}" in
  install) install ;;
  version) version || die "not installed (run: $0 install)" ;;
  *) echo "usage: $0 install|version" >&2; exit 2 ;;
esac
