#!/bin/sh
# The standard bench set; JSON lines go to bench/results/<stamp>.jsonl and to stdout.
#   bench/run.sh                      # the Python tunnel
#   bench/run.sh --compare "/opt/uhppoted-tunnel --in {in} --out {out} --udp-timeout {udp_timeout} --console"
# PYTHON picks the interpreter (default: python3), e.g. PYTHON=/tmp/venv/bin/python bench/run.sh
# Extra arguments go to every run. Takes about 2.5 minutes (twice that with --compare).
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p bench/results
stamp=$(date +%Y%m%d-%H%M%S)
out=bench/results/$stamp.jsonl
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
status=0

run() {
    "$PYTHON" bench/loadgen.py "$@" >"$lines" || status=1
    cat "$lines"
    cat "$lines" >>"$out"
}

run --clients 1 --duration 10 --udp-timeout 1s "$@"
run --clients 16 --duration 10 --udp-timeout 1s "$@"
run --clients 64 --duration 60 --trace-memory "bench/results/$stamp-memory-64.csv" "$@"
echo "results: $out" >&2
exit $status
