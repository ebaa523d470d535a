#!/usr/bin/env bash
# Makes a throwaway test CA and one server certificate signed by it, for the secure services
# (scripts/services.sh with TICKPIPE_SECURE=1) and the secure compose override
# (docker-compose.secure.yml). Never for production: the keys are unencrypted and valid 30 days.
#
#   scripts/test-certs.sh DIR DNS-NAME...
#
# Writes into DIR (created): ca.pem + ca.key, server.pem + server.key (subjectAltName: the DNS names
# given, nothing else), kafka-keystore.pem (key and certificate in one file: Kafka's PEM key store),
# and other-ca.pem, a second CA that signed nothing (the "unknown CA" of the failure tests).
# Does nothing if DIR already holds a server certificate valid for another day, so a running stack
# keeps its certificates; an expiring set is made anew.
set -euo pipefail

(($# >= 2)) || { echo "usage: $0 DIR DNS-NAME..." >&2; exit 2; }
dir=$1
shift
command -v openssl >/dev/null || { echo "$0: openssl is needed (apt-get install openssl)" >&2; exit 1; }
if [[ -s $dir/server.pem ]] && openssl x509 -checkend 86400 -noout -in "$dir/server.pem" >/dev/null; then
    exit 0
fi

mkdir -p "$dir"
san=$(printf 'DNS:%s,' "$@")
{
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 30 \
        -subj "/CN=tickpipe test CA"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$dir/other-ca.key" -out "$dir/other-ca.pem" \
        -days 30 -subj "/CN=some other CA"
    openssl req -newkey rsa:2048 -nodes -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=$1"
    printf '%s\n' "subjectAltName=${san%,}" "basicConstraints=CA:FALSE" \
        "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$dir/server.ext"
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" -CAcreateserial \
        -out "$dir/server.pem" -days 30 -extfile "$dir/server.ext"
} >"$dir/openssl.log" 2>&1 || { echo "$0: openssl failed:" >&2; cat "$dir/openssl.log" >&2; exit 1; }
cat "$dir/server.key" "$dir/server.pem" >"$dir/kafka-keystore.pem"
chmod 644 "$dir"/*.pem
chmod 600 "$dir"/*.key
