#!/usr/bin/env bash
# Zipkin, the trace store of the trace test (tests/telemetry/test_trace_flow.py): the server's
# executable jar from Maven Central (io.zipkin:zipkin-server, classifier exec), in-memory storage.
#
#   scripts/zipkin.sh fetch       resolve the jar into .tools/ (from ~/.m2 or Maven Central) unless there
#   scripts/zipkin.sh path        print the jar's path; exit 1 when it is not fetched
#   scripts/zipkin.sh run PORT    run Zipkin in the foreground on 127.0.0.1:PORT (the test starts it
#                                 so and stops it with SIGTERM); fetches the jar first when needed
#
# Needs Java 17+ and Maven (installed from Debian's packages when missing and we are root).
# Heap: ZIPKIN_HEAP_OPTS (default -Xms64m -Xmx384m).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
version="3.6.1"
tools="$root/.tools"
jar="$tools/zipkin-server-$version-exec.jar"

die() { echo "zipkin: $*" >&2; exit 1; }
now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
java_major() { java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p'; }

apt_install() {
  [[ "$(id -u)" == 0 ]] || die "$* missing and not root to install it; install: $*"
  echo "zipkin: installing $* from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z "${DUNNING_APT_UPDATED:-}" ]]; then apt-get update -qq >/dev/null; export DUNNING_APT_UPDATED=1; fi
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$@" >/dev/null
}

fetch() {
  if [[ -f "$jar" ]]; then echo "zipkin: $jar is there"; return 0; fi
  command -v mvn >/dev/null || apt_install maven
  local start; start="$(now)"
  mkdir -p "$tools"
  local log="$tools/zipkin-maven.log"
  if ! mvn -B -q -Dstyle.color=never dependency:copy \
    -Dartifact="io.zipkin:zipkin-server:$version:jar:exec" -DoutputDirectory="$tools" \
    </dev/null >"$log" 2>&1; then
    tail -20 "$log" >&2
    die "resolving io.zipkin:zipkin-server:$version:exec from Maven Central failed; see $log"
  fi
  [[ -f "$jar" ]] || die "maven ran but $jar is not there; see $log"
  echo "zipkin: fetched $jar in $(since "$start") s"
}

run() {
  local port="${1:?usage: scripts/zipkin.sh run PORT}"
  [[ -f "$jar" ]] || fetch >&2
  if ! command -v java >/dev/null || (( $(java_major || echo 0) < 17 )); then
    die "Java 17+ is needed (Debian: openjdk-17-jre-headless)"
  fi
  # In-memory storage; the HTTP port on loopback only; no self-tracing, no banner.
  export STORAGE_TYPE=mem QUERY_PORT="$port" SELF_TRACING_ENABLED=false
  # shellcheck disable=SC2086
  exec java ${ZIPKIN_HEAP_OPTS:--Xms64m -Xmx384m} -XX:+UseSerialGC -jar "$jar" \
    --armeria.ports[0].ip=127.0.0.1 --armeria.ports[0].port="$port" --armeria.ports[0].protocols[0]=http \
    --spring.main.banner-mode=off
}

case "${1:-}" in
  fetch) fetch ;;
  path) [[ -f "$jar" ]] || die "not fetched: run scripts/zipkin.sh fetch"; echo "$jar" ;;
  run) shift; run "$@" ;;
  *) die "usage: scripts/zipkin.sh fetch|path|run PORT" ;;
esac
