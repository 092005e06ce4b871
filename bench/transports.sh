#!/bin/sh
# The transports side by side: 1 and 16 clients over each, in one run, so
# the figures compare (same machine, same minutes). JSON lines go to
# bench/results/<stamp>-transports.jsonl and to stdout.
#   bench/transports.sh                 # every transport loadgen.py knows
#   bench/transports.sh tcp ws wss      # these, in this order
# PYTHON picks the interpreter (default: python3). Each transport takes
# about 30 s; a transport whose pair cannot start (a missing server, say)
# is reported and the run goes on.
set -eu
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p bench/results
out=bench/results/$(date +%Y%m%d-%H%M%S)-transports.jsonl
lines=$(mktemp)
trap 'rm -f "$lines"' EXIT
status=0

if [ $# -eq 0 ]; then
    set -- $("$PYTHON" -c 'import sys; sys.path.insert(0, "bench"); import loadgen; print(" ".join(loadgen.TRANSPORTS))')
fi
for transport in "$@"; do
    for clients in 1 16; do
        "$PYTHON" bench/loadgen.py --transport "$transport" --clients "$clients" --duration 10 --udp-timeout 1s \
            >"$lines" || status=1
        cat "$lines"
        cat "$lines" >>"$out"
    done
done
echo "results: $out" >&2
exit $status
