#!/usr/bin/env bash
# A test certificate authority and one server certificate for 127.0.0.1 and localhost,
# made once with openssl, for the local Kafka (SASL_SSL listener) and PostgreSQL (ssl=on).
# Not for production: the CA's key lies unencrypted beside its certificate.
#
#   scripts/tls.sh make     create what is missing or expires within a day (idempotent)
#   scripts/tls.sh dir      print the folder
#
# Under var/tls (TLS_DIR):
#   ca.crt, ca.key              the test CA (clients trust ca.crt)
#   server.crt, server.key      the server's certificate (SAN: IP 127.0.0.1, DNS localhost)
#                               and its unencrypted PKCS#8 key
#   server-chain.pem            server.key + server.crt + ca.crt: Kafka's PEM keystore
# Called by kafka.sh and pg.sh; each run of them uses the same files.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dir="${TLS_DIR:-$root/var/tls}"
days="${TLS_DAYS:-825}"

die() { echo "tls: $*" >&2; exit 1; }

# Still good for at least a day (a certificate that expires mid-run fails the run).
fresh() { [[ -f "$1" ]] && openssl x509 -noout -checkend 86400 -in "$1" >/dev/null 2>&1; }

make_all() {
  command -v openssl >/dev/null || die "openssl missing; install it: apt-get install openssl"
  mkdir -p "$dir"
  # kafka.sh and pg.sh run in parallel in CI: one maker at a time.
  exec 8>"$dir/.lock"
  flock -w 60 8 || die "another tls.sh holds $dir/.lock"
  local made=0
  if ! fresh "$dir/ca.crt" || [[ ! -f "$dir/ca.key" ]]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/ca.key" 2>/dev/null
    openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" -subj "/CN=dunning test CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out "$dir/ca.crt"
    rm -f "$dir/server.crt"  # signed by the old CA
    made=1
  fi
  if ! fresh "$dir/server.crt" || [[ ! -f "$dir/server.key" ]]; then
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/server.key" 2>/dev/null
    openssl req -new -key "$dir/server.key" -subj "/CN=localhost" -out "$dir/server.csr"
    printf '%s\n' "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
      "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" -CAcreateserial \
      -days "$days" -sha256 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
    rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
    made=1
  fi
  cat "$dir/server.key" "$dir/server.crt" "$dir/ca.crt" >"$dir/server-chain.pem.tmp"
  mv -f "$dir/server-chain.pem.tmp" "$dir/server-chain.pem"
  chmod 600 "$dir/ca.key" "$dir/server.key" "$dir/server-chain.pem"
  if (( made )); then echo "tls: made a test CA and a server certificate for 127.0.0.1/localhost in $dir"; fi
}

case "${1:-}" in
  make) make_all ;;
  dir) echo "$dir" ;;
  *) echo "usage: $0 make|dir" >&2; exit 2 ;;
esac
