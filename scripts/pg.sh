#!/usr/bin/env bash
# A local PostgreSQL for tests, without Docker: Debian's package, our own cluster.
#   scripts/pg.sh up | down | status
# Listens on 127.0.0.1:5432 (PG_PORT), trust auth for user postgres, database dunning_test.
# The cluster runs as the OS user postgres (the server refuses root) under
# /tmp/dunning-pg-<port> (PG_DATA overrides), a path that user can always reach.
set -euo pipefail

port="${PG_PORT:-5432}"
data="${PG_DATA:-/tmp/dunning-pg-$port}"
db="${PG_DATABASE:-dunning_test}"

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

as_postgres() {
  if [[ "$(id -un)" == postgres ]]; then "$@"; else su postgres -s /bin/bash -c "$(printf '%q ' "$@")"; fi
}

ready() { "$(bindir)/pg_isready" -q -h 127.0.0.1 -p "$port" 2>/dev/null; }

install() {
  if [[ -z "$(bindir)" ]]; then
    echo "postgres: installing Debian's postgresql package" >&2
    apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
  fi
  # The package starts its own cluster on 5432; ours replaces it.
  if command -v pg_lsclusters >/dev/null; then
    pg_lsclusters -h 2>/dev/null | awk -v p="$port" '$3 == p && $4 == "online" {print $1, $2}' |
      while read -r version name; do pg_ctlcluster "$version" "$name" stop || true; done
  fi
}

up() {
  local started=$SECONDS
  install
  local bin; bin="$(bindir)"
  if ready && psql -h 127.0.0.1 -p "$port" -U postgres -Atc 'select 1' >/dev/null 2>&1; then
    echo "postgres already up on 127.0.0.1:$port"
  else
    if [[ ! -f "$data/PG_VERSION" ]]; then
      mkdir -p "$data"; chown postgres:postgres "$data"; chmod 700 "$data"
      as_postgres "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    # Test settings: durability traded for speed, nothing here needs to survive a crash.
    as_postgres "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start -o \
      "-h 127.0.0.1 -p $port -k $data -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" >/dev/null
  fi
  psql -h 127.0.0.1 -p "$port" -U postgres -Atc "select 1 from pg_database where datname = '$db'" | grep -q 1 ||
    psql -h 127.0.0.1 -p "$port" -U postgres -qc "create database $db"
  echo "$(psql -h 127.0.0.1 -p "$port" -U postgres -Atc 'show server_version' | cut -d' ' -f1 | sed 's/^/postgres /') up on 127.0.0.1:$port in $((SECONDS - started))s"
}

down() {
  local bin; bin="$(bindir)"
  if [[ -n "$bin" && -f "$data/postmaster.pid" ]]; then
    as_postgres "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null && echo "postgres stopped"
  else
    echo "postgres is not running from $data"
  fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) if ready; then echo "postgres up on 127.0.0.1:$port"; else echo "postgres down"; exit 1; fi ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
