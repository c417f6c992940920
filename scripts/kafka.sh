#!/usr/bin/env bash
# A real Apache Kafka broker without Docker: KRaft, single node, jars from Maven Central.
#   scripts/kafka.sh up | down | status
# Data, jars and logs live under var/kafka (KAFKA_HOME overrides); port 9092 (KAFKA_PORT).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
home="${KAFKA_HOME:-$root/var/kafka}"
port="${KAFKA_PORT:-9092}"
controller_port="${KAFKA_CONTROLLER_PORT:-9093}"
pidfile="$home/broker.pid"
log="$home/broker.log"

running() { [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

need_java() {
  if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    echo "kafka: installing a JDK and Maven from Debian's packages" >&2
    apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless maven >/dev/null
  fi
}

resolve_jars() {
  # Re-resolve when the pom changed (a new Kafka version), else reuse the jars.
  local stamp="$home/libs/.pom.sha"
  local sum; sum="$(sha256sum "$root/scripts/kafka/pom.xml" | cut -d' ' -f1)"
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$sum" ]]; then return; fi
  rm -rf "$home/libs"
  if ! mvn -B -Dstyle.color=never -f "$root/scripts/kafka/pom.xml" dependency:copy-dependencies \
    -DoutputDirectory="$home/libs" -DincludeScope=runtime >"$home/maven.log" 2>&1; then
    echo "kafka: resolving the broker jars failed; see $home/maven.log" >&2; tail -20 "$home/maven.log" >&2; exit 1
  fi
  echo "$sum" >"$stamp"
}

write_config() {
  cat >"$home/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$home/data
num.partitions=8
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
PROPS
  cat >"$home/log4j2.properties" <<'PROPS'
status = warn
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.console.ref = console
logger.kafka.name = kafka.server.KafkaRaftServer
logger.kafka.level = info
PROPS
}

up() {
  mkdir -p "$home"
  if running; then echo "kafka already up on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return; fi
  local started=$SECONDS
  need_java
  resolve_jars
  write_config
  if [[ ! -f "$home/data/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(java -cp "$home/libs/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)"
    java -Dlog4j2.configurationFile="$home/log4j2.properties" -cp "$home/libs/*" \
      kafka.tools.StorageTool format -t "$cluster_id" -c "$home/server.properties" >/dev/null
  fi
  : >"$log"
  # Small heap: CI has 2 cores and the tests share the machine.
  nohup java -Xms256m -Xmx768m -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$home/log4j2.properties" \
    -cp "$home/libs/*" kafka.Kafka "$home/server.properties" >>"$log" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 240); do
    if ! running; then echo "kafka exited during start-up; last lines of $log:" >&2; tail -20 "$log" >&2; exit 1; fi
    if port_open && grep -q "Kafka Server started" "$log"; then
      echo "kafka $(ls "$home/libs" | sed -n 's/^kafka_2.13-\(.*\)\.jar$/\1/p') up on 127.0.0.1:$port in $((SECONDS - started))s"
      return
    fi
    sleep 0.5
  done
  echo "kafka did not start within 120 s; last lines of $log:" >&2; tail -20 "$log" >&2; exit 1
}

down() {
  if ! running; then echo "kafka is not running"; rm -f "$pidfile"; return; fi
  local pid; pid="$(cat "$pidfile")"
  kill "$pid"
  for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
  rm -f "$pidfile"
  echo "kafka stopped"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if running; then echo "kafka up (pid $(cat "$pidfile"))"; else echo "kafka down"; exit 1; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
