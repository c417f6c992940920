#!/usr/bin/env bash
# A real Apache Kafka broker without Docker: KRaft, one node that is both broker
# and controller, jars from Maven Central (scripts/kafka/pom.xml).
#
#   scripts/kafka.sh up        start (idempotent: exits 0 when already up)
#   scripts/kafka.sh down      stop (SIGTERM, then SIGKILL after 30 s); exits 0 when not running
#   scripts/kafka.sh status    exit 0 when the broker is running and answers
#   scripts/kafka.sh version   the Kafka version the jars are at
#   scripts/kafka.sh reset     stop and delete the broker's data (topics, offsets)
#
# Listens on 127.0.0.1:9092 (KAFKA_PORT), controller on the next port (KAFKA_CONTROLLER_PORT),
# and SASL_SSL on port + 3 (KAFKA_SASL_PORT, 9095): TLS with the test CA's server certificate
# (scripts/tls.sh, var/tls/ca.crt) and SCRAM-SHA-512 for user KAFKA_SASL_USER (dunning)
# with password KAFKA_SASL_PASSWORD (dunning-test-password), created when the data dir is
# formatted. A data dir formatted before the listener existed has no such user: run
# `scripts/kafka.sh reset` (it deletes topics and offsets) to have it. KAFKA_SASL_PORT=0: no
# SASL_SSL listener (say, a throwaway broker on a port whose + 3 is taken).
# Under var/kafka (KAFKA_HOME): libs/ the jars, data/ the log dirs, broker.log, broker.pid,
# server.properties. Another port gets its own instance-PORT/ folder beside them.
# Needs Java 17+ and Maven (installed from Debian's packages when missing and we are root);
# jars come from ~/.m2 or Maven Central (MAVEN_OPTS=-Dmaven.repo.local=... to use another cache).
# Heap: KAFKA_HEAP_OPTS (default -Xms128m -Xmx512m).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
home="${KAFKA_HOME:-$root/var/kafka}"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-$((port + 1))}"
libs="$home/libs"
if [[ "$port" == 9092 ]]; then inst="$home"; else inst="$home/instance-$port"; fi
pidfile="$inst/broker.pid"
log="$inst/broker.log"
config="$inst/server.properties"
sasl_port="${KAFKA_SASL_PORT:-$((port + 3))}"
sasl_user="${KAFKA_SASL_USER:-dunning}"
sasl_password="${KAFKA_SASL_PASSWORD:-dunning-test-password}"
addr="127.0.0.1:$port"

now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
die() { echo "kafka: $*" >&2; exit 1; }

# The broker's pid, when the pid file names a live kafka.Kafka on our config.
pid() {
  local p
  [[ -f "$pidfile" ]] && p="$(cat "$pidfile")" && [[ -n "$p" ]] || return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$p/cmdline" | grep -qF "kafka.Kafka $config" || return 1
  echo "$p"
}
running() { pid >/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Readiness: a real Kafka request. ApiVersions v0 with correlation id 42; the reply
# must echo the id and carry error code 0 (size:4 correlation:4 error:2).
answers() {
  local reply
  reply="$(
    exec 2>/dev/null
    exec 3<>"/dev/tcp/127.0.0.1/$port" || exit 1
    printf '\x00\x00\x00\x0a\x00\x12\x00\x00\x00\x00\x00\x2a\xff\xff' >&3
    timeout 3 head -c 10 <&3 | od -An -tx1 | tr -d ' \n'
  )" || return 1
  [[ "${reply:8:12}" == 0000002a0000 ]]
}

version() { ls "$libs" 2>/dev/null | sed -n 's/^kafka_2\.13-\(.*\)\.jar$/\1/p'; }

apt_install() {
  [[ "$(id -u)" == 0 ]] || die "$* missing and not root to install it; install: $*"
  echo "kafka: installing $* from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z "${DUNNING_APT_UPDATED:-}" ]]; then apt-get update -qq >/dev/null; export DUNNING_APT_UPDATED=1; fi
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends "$@" >/dev/null
}

java_major() { java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java\.specification\.version = //p'; }

need_java() {
  if ! command -v java >/dev/null || (( $(java_major || echo 0) < 17 )); then
    apt_install openjdk-17-jre-headless
    # A machine with an older default java keeps it first on PATH.
    if (( $(java_major || echo 0) < 17 )); then
      local jdk; jdk="$(find /usr/lib/jvm -maxdepth 1 -name 'java-17-openjdk-*' | head -1)"
      export PATH="$jdk/bin:$PATH"
    fi
  fi
}

resolve_jars() {
  # Re-resolve when the pom changed (say a new Kafka version), else reuse the jars.
  local stamp="$libs/.pom.sha256" sum
  sum="$(sha256sum "$root/scripts/kafka/pom.xml" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" ]]; then return; fi
  command -v mvn >/dev/null || apt_install maven
  local started; started="$(now)"
  local tmp="$home/libs.tmp"
  rm -rf "$tmp"
  if ! mvn -B -q -Dstyle.color=never -f "$root/scripts/kafka/pom.xml" \
    dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime \
    </dev/null >"$home/maven.log" 2>&1; then
    tail -20 "$home/maven.log" >&2
    die "resolving the broker jars from Maven Central failed; see $home/maven.log"
  fi
  echo "$sum" >"$tmp/.pom.sha256"
  rm -rf "$libs" && mv "$tmp" "$libs"
  echo "kafka: resolved $(ls "$libs" | wc -l) jars for Kafka $(version) in $(since "$started")s" >&2
}

write_config() {
  mkdir -p "$inst"
  local tls; tls="$("$root/scripts/tls.sh" dir)"
  local sasl_listener="" sasl_advertised="" sasl_map=""
  if (( sasl_port )); then
    sasl_listener=",SASL_SSL://127.0.0.1:$sasl_port" sasl_advertised=",SASL_SSL://127.0.0.1:$sasl_port"
    sasl_map=",SASL_SSL:SASL_SSL"
  fi
  cat >"$config" <<PROPS
# Written by scripts/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port$sasl_listener
advertised.listeners=PLAINTEXT://127.0.0.1:$port$sasl_advertised
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT$sasl_map
inter.broker.listener.name=PLAINTEXT
# Encrypted, authenticated clients: TLS with the test CA's certificate (PEM keystore:
# key, certificate, CA), SCRAM-SHA-512 users stored in the cluster's metadata.
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$tls/server-chain.pem
sasl.enabled.mechanisms=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$inst/data
num.partitions=8
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
# One node: every internal topic has one replica; few partitions start faster.
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=8
# Tests: no rebalance delay, and short consumer session timeouts allowed.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
num.network.threads=2
num.io.threads=4
log.retention.hours=24
PROPS
  cat >"$inst/log4j2.properties" <<'PROPS'
# Warnings and errors only, plus the line that says the broker started.
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
PROPS
}

java_opts() {
  # Small heap: CI has 2 cores and the tests share the machine.
  # shellcheck disable=SC2086
  echo ${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m} -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true -Dlog4j2.configurationFile="$inst/log4j2.properties"
}

format_storage() {
  [[ -f "$inst/data/meta.properties" ]] && return
  rm -rf "$inst/data"
  local cluster_id
  # shellcheck disable=SC2046
  cluster_id="$(java $(java_opts) -cp "$libs/*" kafka.tools.StorageTool random-uuid 2>>"$log" | tail -1)"
  # shellcheck disable=SC2046
  java $(java_opts) -cp "$libs/*" kafka.tools.StorageTool format \
    --cluster-id "$cluster_id" --config "$config" --ignore-formatted \
    --add-scram "SCRAM-SHA-512=[name=$sasl_user,password=$sasl_password]" >>"$log" 2>&1 ||
    { tail -20 "$log" >&2; die "formatting $inst/data failed"; }
  # A SCRAM user can only be added at format time here (no kafka-configs among the jars).
  echo "$sasl_user" >"$inst/data/.scram-user"
}

# An old data dir (formatted before the SASL_SSL listener) has no SCRAM user: say so.
check_scram_user() {
  (( sasl_port )) || return 0
  [[ "$(cat "$inst/data/.scram-user" 2>/dev/null)" == "$sasl_user" ]] && return
  echo "kafka: $inst/data was formatted without SCRAM user $sasl_user: SASL_SSL on" \
    "127.0.0.1:$sasl_port refuses every login until \`$0 reset\` (deletes topics and offsets)" >&2
}

up() {
  mkdir -p "$inst"
  exec 9>"$inst/.lock"
  flock -w 300 9 || die "another kafka.sh holds $inst/.lock"
  if running; then
    if answers; then echo "kafka already up on $addr (pid $(pid))"; return; fi
    # Started by someone else a moment ago: wait for it below.
    local started; started="$(now)"
  else
    if port_open "$port"; then
      if answers; then echo "kafka already up on $addr (not started by this script; reusing it)"; return; fi
      die "127.0.0.1:$port is taken by something that is not a Kafka broker"
    fi
    port_open "$controller_port" && die "controller port 127.0.0.1:$controller_port is taken (KAFKA_CONTROLLER_PORT)"
    (( sasl_port )) && port_open "$sasl_port" && die "SASL_SSL port 127.0.0.1:$sasl_port is taken (KAFKA_SASL_PORT)"
    local started; started="$(now)"
    need_java
    resolve_jars
    "$root/scripts/tls.sh" make
    write_config
    if [[ -s "$log" ]]; then mv -f "$log" "$log.1"; fi
    : >"$log"
    rm -f "$pidfile"
    format_storage
    check_scram_user
    # setsid + nohup: the broker outlives the shell, the CI step or the terminal that started it.
    # shellcheck disable=SC2046,SC2016
    setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pidfile" \
      java $(java_opts) -cp "$libs/*" kafka.Kafka "$config" </dev/null >>"$log" 2>&1 9>&- &
    local waited=0
    until [[ -s "$pidfile" ]] || (( waited++ > 50 )); do sleep 0.1; done
  fi
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  while (( SECONDS < deadline )); do
    if ! running; then
      tail -20 "$log" >&2
      die "the broker exited during start-up; see $log"
    fi
    if grep -q "Kafka Server started" "$log" && answers; then
      echo "kafka up on $addr$( (( sasl_port )) && echo " and SASL_SSL 127.0.0.1:$sasl_port") in $(since "$started")s (Apache Kafka $(version), KRaft, pid $(pid))"
      return
    fi
    sleep 0.2
  done
  tail -20 "$log" >&2
  die "the broker did not answer on $addr within ${KAFKA_START_TIMEOUT:-120}s; see $log (still running as pid $(pid || echo '?'))"
}

down() {
  local p
  if ! p="$(pid)"; then
    rm -f "$pidfile"
    echo "kafka is not running (from $inst)"
    return
  fi
  kill -TERM "$p" 2>/dev/null || true
  # pid, not kill -0: where PID 1 reaps nothing, a dead broker stays a zombie.
  for _ in $(seq 1 300); do running || break; sleep 0.1; done
  if running; then
    kill -KILL "$p" 2>/dev/null || true
    echo "kafka did not stop within 30s; killed pid $p" >&2
  fi
  rm -f "$pidfile"
  echo "kafka stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status)
    if running && answers; then echo "kafka up on $addr (pid $(pid), Kafka $(version))"
    elif answers; then echo "kafka up on $addr (not started by this script)"
    else echo "kafka down on $addr"; exit 1; fi ;;
  version) v="$(version)"; [[ -n "$v" ]] || die "no jars in $libs yet (run: $0 up)"; echo "$v" ;;
  reset) down; rm -rf "$inst/data"; echo "kafka data deleted ($inst/data)" ;;
  *) echo "usage: $0 up|down|status|version|reset" >&2; exit 2 ;;
esac
