#!/bin/sh
# The transports side by side: 1 and 16 clients over each, in one run, so
# the figures compare (same machine, same minutes). JSON lines go to
# bench/results/<stamp>-transports.jsonl and to stdout, then a summary line
# per transport and client count (ratio to tcp, and to the Go pair).
#   bench/transports.sh                 # every transport loadgen.py knows
#   bench/transports.sh tcp ws wss      # these, in this order
# PYTHON picks the interpreter (default: python3). Each transport takes
# about 30 s; a transport whose pair cannot start (a missing server, say)
# is reported and the run goes on.
# GO_TUNNEL=/path/to/uhppoted-tunnel adds the Go tunnel's pair (loadgen
# --compare) to the tcp and tls runs, over the same transport; unset, the Go
# pair is skipped with a message.
# REACTOR=asyncio|uvloop runs the Python halves under that reactor
# (loadgen --reactor; default: the tunnel's own).
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
if [ -z "${GO_TUNNEL:-}" ]; then
    echo "transports: GO_TUNNEL is not set: the Go pair is skipped (set it to a uhppoted-tunnel binary to add it)" >&2
fi
for transport in "$@"; do
    for clients in 1 16; do
        if { [ "$transport" = tcp ] || [ "$transport" = tls ]; } && [ -n "${GO_TUNNEL:-}" ]; then
            set -- --compare "$GO_TUNNEL --in {in} --out {out} --udp-timeout {udp_timeout} --console {link_args}"
        else
            set --
        fi
        "$PYTHON" bench/loadgen.py --transport "$transport" --clients "$clients" --duration 10 --udp-timeout 1s \
            --reactor "${REACTOR:-default}" "$@" >"$lines" || status=1
        cat "$lines"
        cat "$lines" >>"$out"
    done
done
"$PYTHON" bench/summary.py "$out"
echo "results: $out" >&2
exit $status
