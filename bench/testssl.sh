#!/usr/bin/env bash
# Run testssl.sh (Debian package testssl.sh) against a tls/server end and an
# https/ end of real uhppoted-tunnel processes on 127.0.0.1, with test-made
# certificates (tests/certs.py: a P-256 CA, a server certificate for
# localhost and 127.0.0.1, naming a CRL distribution point).
#
#   bench/testssl.sh [OUTPUT_DIR]
#
# Writes OUTPUT_DIR/{tls,https}.log (testssl's full report) and
# OUTPUT_DIR/{tls,https}.json, and prints each end's "NOT ok" and
# warning lines and the overall rating. Exit status: 0 when neither end
# has a "NOT ok" item other than the self-signed test CA's chain of trust,
# 1 otherwise, 2 when something could not start. Every address is
# 127.0.0.1; ports are chosen by the system. Takes a few minutes per end.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

TESTSSL=$(command -v testssl || command -v testssl.sh) || { echo "testssl is not installed (Debian package testssl.sh)"; exit 2; }
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
TUNNEL=("$PYTHON" -m uhppoted_tunnel.app.cli)

OUT=${1:-$(mktemp -d)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
# the server certificate names a CRL (on loopback; testssl does not fetch
# it without --phone-out) and lasts under 398 days, as a real CA's would
"$PYTHON" -c "import sys; from tests import certs
certs.make(sys.argv[1], crl_uri='http://127.0.0.1/ca.crl', server_days=396)" "$WORK/certs" || exit 2
mkdir -p "$WORK/html"
echo '<!DOCTYPE html><title>tunnel</title><p>tunnel</p>' > "$WORK/html/index.html"
TLS=(--ca-cert "$WORK/certs/ca.cert" --cert "$WORK/certs/server.cert" --key "$WORK/certs/server.key")

free_port() {
    "$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1]); s.close()"
}

# start NAME IN OUT: a tunnel in the background, logging to $WORK/NAME.log;
# waits (20 s deadline) for its "listening on" line for the TLS end's port
start() {
    local name=$1 in=$2 out=$3 port=$4
    "${TUNNEL[@]}" --in "$in" --out "$out" "${TLS[@]}" --html "$WORK/html" --config /dev/null \
        --lockfile "$WORK/$name.pid" > "$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 200); do
        grep -q "listening on 127.0.0.1:$port" "$WORK/$name.log" && return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || break
        sleep 0.1
    done
    echo "$name did not start:"; cat "$WORK/$name.log"; exit 2
}

TLS_PORT=$(free_port)
HTTPS_PORT=$(free_port)
UDP_PORT=$(free_port)
start tls "udp/listen:127.0.0.1:0" "tls/server:127.0.0.1:$TLS_PORT" "$TLS_PORT"
start https "https/127.0.0.1:$HTTPS_PORT" "udp/broadcast:127.0.0.1:$UDP_PORT" "$HTTPS_PORT"

status=0
for end in tls https; do
    port=TLS_PORT; [ "$end" = https ] && port=HTTPS_PORT
    rm -f "$OUT/$end.json"
    "$TESTSSL" --quiet --color 0 --warnings off --ip one --sneaky --jsonfile "$OUT/$end.json" \
        "127.0.0.1:${!port}" > "$OUT/$end.log" 2>&1
    echo "== $end end (127.0.0.1:${!port}): $OUT/$end.log"
    grep -E "NOT ok|Overall Grade|Grade cap|Rating specs|Service detected|ALPN" "$OUT/$end.log" | sed 's/^/   /'
    # the only NOT ok expected: the chain of trust of the self-signed test CA
    if grep "NOT ok" "$OUT/$end.log" | grep -vq "Chain of trust"; then
        status=1
    fi
done
echo "tunnel logs: warnings during the scans"
grep -hE "WARN|ERROR" "$WORK"/tls.log "$WORK"/https.log | sed 's/^/   /' | sort | uniq -c | sort -rn | head -20
exit $status
