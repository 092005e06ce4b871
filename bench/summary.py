#!/usr/bin/env python3
"""
One summary line per transport and client count from loadgen's JSON lines
(what C{bench/transports.sh} writes): requests per second and p99, and the
ratio to the tcp pair's and to the Go tunnel's (its C{"tunnel": "compare"}
lines, from C{--compare}) at the same client count: the Go pair over the
same transport where there is one (tcp, tls), else the Go tcp pair.

    python bench/summary.py bench/results/20261206-233000-transports.jsonl
"""

import argparse
import json
import sys


def read(lines):
    python, go = {}, {}
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        result = json.loads(line)
        if result.get("metrics"):
            continue
        key = (result.get("transport", "tcp"), result["clients"])
        (go if result.get("tunnel") == "compare" else python)[key] = result
    return python, go


def ratio(mine, theirs):
    if theirs is None or not theirs.get("requests_per_s"):
        return "-"
    return "{:.0%}".format(mine["requests_per_s"] / theirs["requests_per_s"])


def times(mine, theirs):
    if theirs is None or not theirs.get("requests_per_s"):
        return "no Go figure"
    return "{:.1f}x Go's {}, p99 {:.2f} of Go's".format(
        mine["requests_per_s"] / theirs["requests_per_s"], theirs.get("transport", "tcp"),
        mine["p99_ms"] / theirs["p99_ms"] if theirs.get("p99_ms") else float("nan"))


def added(result):
    """What the pair adds to a request's p50 over the direct path, in ms."""
    if result.get("direct_p50_ms") is None:
        return ""
    return "  adds {:.3f} ms".format(result["p50_ms"] - result["direct_p50_ms"])


def summary(python, go):
    for (transport, clients), result in python.items():
        tcp = python.get(("tcp", clients))
        theirs = go.get((transport, clients)) or go.get(("tcp", clients))
        yield ("summary: {:<8} {:>2} client(s): {:>9,.0f} req/s  p99 {:6.2f} ms  {:>5} of tcp  {}{}".format(
            transport, clients, result["requests_per_s"], result["p99_ms"], ratio(result, tcp),
            times(result, theirs), added(result) if clients == 1 else ""))
    for (transport, clients), result in go.items():
        yield ("summary: go-{:<5} {:>2} client(s): {:>9,.0f} req/s  p99 {:6.2f} ms{}".format(
            transport, clients, result["requests_per_s"], result["p99_ms"], added(result) if clients == 1 else ""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("results", help="a file of loadgen JSON lines")
    args = parser.parse_args(argv)
    with open(args.results) as f:
        python, go = read(f)
    for line in summary(python, go):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
