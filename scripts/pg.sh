#!/usr/bin/env bash
# A local PostgreSQL for tests without Docker: Debian's binaries, our own cluster
# (not the Debian system service), trust auth, durability off for speed.
#
#   scripts/pg.sh up        start (idempotent: exits 0 when already up) and create the test database
#   scripts/pg.sh down      stop (pg_ctl stop -m fast); exits 0 when not running
#   scripts/pg.sh status    exit 0 when the server answers
#   scripts/pg.sh reset     stop and delete the cluster
#
# Listens on 127.0.0.1:5432 (PG_PORT) for user postgres without a password; database
# dunning_test (PG_DATABASE). TLS is on (ssl=on) with the test CA's server certificate
# (scripts/tls.sh, var/tls/ca.crt); user PG_TLS_USER (dunning_tls, password PG_TLS_PASSWORD,
# dunning-test-password) may log in over TLS only, with SCRAM-SHA-256, so that clients can be
# tested with sslmode=verify-full. A server started before TLS was added gets it at its next start. The cluster lives under var/pg (data/, server.log, run/ for
# the unix socket); another port gets var/pg/instance-PORT. The server refuses to run as
# root, so as root the cluster belongs to the OS user postgres; when that user cannot
# reach var/pg (a checkout under a private home), it goes to /tmp/dunning-pg-UID-PORT
# instead. PG_BASE overrides the folder. When no PostgreSQL is installed and we are root,
# Debian's postgresql package is installed; the cluster it creates is left alone unless
# it sits on our port, where it is stopped.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
port="${PG_PORT:-5432}"
db="${PG_DATABASE:-dunning_test}"
tls_user="${PG_TLS_USER:-dunning_tls}"
tls_password="${PG_TLS_PASSWORD:-dunning-test-password}"
addr="127.0.0.1:$port"
export PGCONNECT_TIMEOUT=3

now() { echo "${EPOCHREALTIME/,/.}"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
die() { echo "postgres: $*" >&2; exit 1; }
is_root() { [[ "$(id -u)" == 0 ]]; }

# The newest installed server binaries (or the version the cluster was made with).
bindir() {
  local want="${1:-}" d
  if [[ -n "$want" && -x "/usr/lib/postgresql/$want/bin/pg_ctl" ]]; then echo "/usr/lib/postgresql/$want/bin"; return; fi
  d="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin 2>/dev/null | sort -V | tail -1)"
  if [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]]; then echo "$d"; return; fi
  d="$(dirname "$(command -v pg_ctl 2>/dev/null || echo /nonexistent/x)")"
  [[ -x "$d/initdb" ]] && echo "$d"
  return 0
}

# Run as the cluster's owner: postgres when we are root, else ourselves.
as_pg() {
  if is_root; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}

psql_() { "$(bindir)/psql" -X -w -q -h 127.0.0.1 -p "$port" -U postgres "$@"; }
accepts() { psql_ -d postgres -Atc 'select 1' 2>/dev/null | grep -qx 1; }
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

install_postgres() {
  [[ -n "$(bindir)" ]] && return
  is_root || die "no PostgreSQL server binaries (initdb, pg_ctl) and not root to install them: apt-get install postgresql"
  echo "postgres: installing Debian's postgresql package" >&2
  export DEBIAN_FRONTEND=noninteractive
  if [[ -z "${DUNNING_APT_UPDATED:-}" ]]; then apt-get update -qq >/dev/null; export DUNNING_APT_UPDATED=1; fi
  apt-get install -y -qq -o DPkg::Lock::Timeout=300 postgresql >/dev/null
  [[ -n "$(bindir)" ]] || die "postgresql installed but no initdb/pg_ctl under /usr/lib/postgresql/*/bin"
}

# Where the cluster lives; as root, also make it the postgres user's.
choose_base() {
  if [[ -n "${PG_BASE:-}" ]]; then base="$PG_BASE"
  elif [[ "$port" == 5432 ]]; then base="$root/var/pg"
  else base="$root/var/pg/instance-$port"; fi
  if is_root; then
    mkdir -p "$base" && chown postgres:postgres "$base" && chmod 755 "$base"
    if [[ "$base" == "$root/var/pg/"* ]]; then chown postgres:postgres "$root/var/pg"; fi
    if ! runuser -u postgres -- test -w "$base" -a -x "$base" 2>/dev/null; then
      [[ -z "${PG_BASE:-}" ]] || die "the postgres user cannot write to PG_BASE=$base"
      base="${TMPDIR:-/tmp}/dunning-pg-$(id -u)-$port"
      mkdir -p "$base" && chown postgres:postgres "$base" && chmod 755 "$base"
    fi
  else
    mkdir -p "$base"
  fi
  data="$base/data"
  sockdir="$base/run"
  # A unix socket path has at most 107 bytes.
  if (( ${#sockdir} > 90 )); then sockdir=/tmp; fi
}

write_config() {
  as_pg mkdir -p "$sockdir"
  # The server's key must belong to the server's user with mode 0600: copies in the data dir
  # (cat runs as us: var/tls may be private to us).
  "$root/scripts/tls.sh" make
  local tls; tls="$("$root/scripts/tls.sh" dir)"
  cat "$tls/server.crt" | as_pg tee "$data/dunning-server.crt" >/dev/null
  cat "$tls/server.key" | as_pg tee "$data/dunning-server.key" >/dev/null
  as_pg chmod 600 "$data/dunning-server.key"
  # Our own host rules, first match wins: the TLS user only over TLS with a password;
  # everyone else trusted on the loopback (the test suite's user postgres).
  as_pg tee "$data/dunning_hba.conf" >/dev/null <<HBA
# Written by scripts/pg.sh on every start; edit the script, not this file.
local    all  all                        trust
hostssl  all  $tls_user  127.0.0.1/32    scram-sha-256
hostssl  all  $tls_user  ::1/128         scram-sha-256
host     all  $tls_user  all             reject
host     all  all        127.0.0.1/32    trust
host     all  all        ::1/128         trust
HBA
  as_pg tee "$data/dunning.conf" >/dev/null <<CONF
# Written by scripts/pg.sh on every start; edit the script, not this file.
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$sockdir'
max_connections = 200
# Room in the shared lock table for a full batch (1,000 account locks,
# dunning_runtime.locks.MAX_ACCOUNT_LOCKS) on every connection at once: docs/deploy.md.
max_locks_per_transaction = 1024
# Test speed over durability: nothing here needs to survive a crash of the machine.
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
hba_file = '$data/dunning_hba.conf'
ssl = on
ssl_cert_file = '$data/dunning-server.crt'
ssl_key_file = '$data/dunning-server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
log_timezone = 'UTC'
timezone = 'UTC'
CONF
  grep -q "^include_if_exists = 'dunning.conf'" "$data/postgresql.conf" ||
    echo "include_if_exists = 'dunning.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
}

ensure_database() {
  if ! psql_ -d postgres -Atc "select 1 from pg_database where datname = '$db'" | grep -qx 1; then
    psql_ -d postgres -c "create database \"$db\" owner postgres" >/dev/null
  fi
}

# The TLS user with its password, allowed to create its own schemas in the test database
# and databases of its own (the e2e harness makes one per platform).
ensure_tls_user() {
  psql_ -d postgres -v ON_ERROR_STOP=1 >/dev/null <<SQL
SELECT format('CREATE ROLE %I LOGIN', '$tls_user')
  WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$tls_user') \gexec
ALTER ROLE "$tls_user" LOGIN CREATEDB PASSWORD '$tls_password';
GRANT CONNECT, CREATE, TEMPORARY ON DATABASE "$db" TO "$tls_user";
SQL
}

# TLS on: started by this script since TLS was added (an older one is left as it is).
tls_on() { [[ "$(psql_ -d postgres -Atc 'show ssl')" == on ]]; }

server_version() { psql_ -d postgres -Atc 'show server_version' | cut -d' ' -f1; }

# Our postmaster is alive: the pid in postmaster.pid is a live (not zombie) postgres.
ours_running() {
  local p state
  [[ -n "${data:-}" && -f "$data/postmaster.pid" ]] || return 1
  p="$(head -1 "$data/postmaster.pid" 2>/dev/null)" && [[ "$p" =~ ^[0-9]+$ ]] || return 1
  state="$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" && [[ -n "$state" && "$state" != Z ]] || return 1
  grep -q postgres "/proc/$p/cmdline" 2>/dev/null
}

up() {
  local started; started="$(now)"
  mkdir -p "$root/var"
  exec 9>"$root/var/.pg-$port.lock"
  flock -w 300 9 || die "another pg.sh holds $root/var/.pg-$port.lock"
  if accepts; then
    ensure_database
    if tls_on; then ensure_tls_user
    else echo "postgres: the server on $addr runs without TLS (started before it was added); restart it for TLS" >&2; fi
    echo "postgres already up on $addr (PostgreSQL $(server_version), database $db)"
    return
  fi
  install_postgres
  choose_base
  local v=""; [[ -f "$data/PG_VERSION" ]] && v="$(cat "$data/PG_VERSION")"
  bin="$(bindir "$v")"
  if [[ -n "$v" ]] && ! "$bin/postgres" -V | grep -q " $v\."; then
    echo "postgres: $data was made by PostgreSQL $v, which is gone; making a new cluster" >&2
    as_pg "$bin/pg_ctl" -D "$data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$data"
  fi
  if ours_running; then
    :  # started a moment ago by someone else, or still recovering: wait for it below
  elif listening; then
    # Something holds the port but does not let postgres in without a password:
    # Debian's own cluster (its package starts one on 5432) is stopped, anything else is an error.
    local cluster
    cluster="$(pg_lsclusters -h 2>/dev/null | awk -v p="$port" '$3 == p && $4 ~ /online/ {print $1 " " $2}' | head -1)"
    [[ -n "$cluster" ]] || die "127.0.0.1:$port is taken by a server that does not let user postgres in without a password"
    echo "postgres: stopping Debian's cluster $cluster, which holds port $port" >&2
    # shellcheck disable=SC2086
    pg_ctlcluster $cluster stop >/dev/null
  fi
  if [[ ! -f "$data/PG_VERSION" ]]; then
    rm -rf "$data"
    as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 \
      --no-sync --no-instructions >"$base/initdb.log" 2>&1 ||
      { cat "$base/initdb.log" >&2; die "initdb failed"; }
  fi
  if ! ours_running; then
    # A server killed with SIGKILL leaves its lock files, and where nothing reaps it (a PID 1
    # that is no init) its zombie keeps the pid in them "alive": stale ones would block the start.
    rm -f "$data/postmaster.pid" "$sockdir/.s.PGSQL.$port.lock" "$sockdir/.s.PGSQL.$port"
    write_config
    # 9>&-: the server must not inherit (and so hold) our lock.
    if ! as_pg "$bin/pg_ctl" -D "$data" -l "$base/server.log" -w -t 60 -s start >/dev/null 2>&1 9>&-; then
      tail -20 "$base/server.log" >&2
      die "the server did not start; see $base/server.log"
    fi
  fi
  local deadline=$((SECONDS + 60))
  until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres && accepts; do
    ours_running || { tail -20 "$base/server.log" >&2; die "the server exited; see $base/server.log"; }
    (( SECONDS < deadline )) || die "the server does not answer on $addr; see $base/server.log"
    sleep 0.2
  done
  ensure_database
  ensure_tls_user
  echo "postgres up on $addr (TLS on, user $tls_user) in $(since "$started")s (PostgreSQL $(server_version), database $db, data $data)"
}

down() {
  choose_base_quiet
  if [[ -z "$bin" ]] || ! ours_running; then
    if accepts; then echo "postgres on $addr was not started from $data; left running"
    else echo "postgres is not running (from $data)"; fi
    return
  fi
  as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 -s stop >/dev/null
  echo "postgres stopped"
}

# For down/reset: find the cluster without creating or installing anything.
choose_base_quiet() {
  if [[ -n "${PG_BASE:-}" ]]; then base="$PG_BASE"
  elif [[ "$port" == 5432 ]]; then base="$root/var/pg"
  else base="$root/var/pg/instance-$port"; fi
  if [[ ! -f "$base/data/PG_VERSION" && -f "${TMPDIR:-/tmp}/dunning-pg-$(id -u)-$port/data/PG_VERSION" ]]; then
    base="${TMPDIR:-/tmp}/dunning-pg-$(id -u)-$port"
  fi
  data="$base/data"
  local v=""; [[ -f "$data/PG_VERSION" ]] && v="$(cat "$data/PG_VERSION")"
  bin="$(bindir "$v")"
}

bin=""
case "${1:-}" in
  up) up ;;
  down) down ;;
  status)
    if [[ -n "$(bindir)" ]] && accepts; then echo "postgres up on $addr (PostgreSQL $(server_version))"
    else echo "postgres down on $addr"; exit 1; fi ;;
  reset) down; choose_base_quiet; rm -rf "$data"; echo "postgres cluster deleted ($data)" ;;
  *) echo "usage: $0 up|down|status|reset" >&2; exit 2 ;;
esac
