#!/usr/bin/env python3
"""
Summarise a C{py-spy record --format raw} file (collapsed stacks) as a top
list: the leaf frames with the most samples ("own %"), and optionally the
frames on the most stacks ("total %").

    py-spy record --nonblocking --idle --format raw -r 200 -d 10 -o site.txt -p PID
    python bench/pyspy_top.py site.txt [--top 10] [--by function] [--total]

Percentages are of every sample in the file; recorded with --idle, that
includes the time the process sat in epoll waiting for work.
"""

import argparse
import linecache
import re
import sys
from collections import Counter

FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def frames(stack):
    return [f for f in stack.split(";") if f]


def short(frame, by):
    m = FRAME.match(frame)
    if not m:
        return frame
    path = m.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    if by == "function" or not m.group("line"):
        return "%s (%s)" % (m.group("function"), path)
    return "%s (%s:%s)" % (m.group("function"), path, m.group("line"))


def idle(frame):
    """True for a sample taken while the reactor waited in epoll/poll/select."""
    m = FRAME.match(frame)
    if not m or not m.group("line") or not m.group("function").endswith("doPoll") and \
            not m.group("function").endswith("doSelect"):
        return False
    source = linecache.getline(m.group("file"), int(m.group("line")))
    return ".poll(" in source or "select(" in source


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("raw")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--by", choices=("line", "function"), default="line")
    parser.add_argument("--total", action="store_true", help="also list inclusive (on-stack) percentages")
    parser.add_argument("--busy", action="store_true",
                        help="leave out idle samples (leaf frame EPollReactor.doPoll, i.e. waiting in epoll)")
    parser.add_argument("--match", metavar="TEXT", help="list only frames containing TEXT (e.g. uhppoted_tunnel)")
    args = parser.parse_args(argv)
    own, total = Counter(), Counter()
    samples = 0
    with open(args.raw) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            stack, _, count = line.rpartition(" ")
            try:
                n = int(count)
            except ValueError:
                continue
            names = [short(fr, args.by) for fr in frames(stack)]
            if not names:
                continue
            if args.busy and idle(frames(stack)[-1]):
                continue
            samples += n
            own[names[-1]] += n
            for name in set(names):
                total[name] += n
    if not samples:
        print("no samples", file=sys.stderr)
        return 1
    print("%d samples" % samples)
    print("own%   frame")
    keep = (lambda name: args.match in name) if args.match else (lambda name: True)
    for name, n in [item for item in own.most_common() if keep(item[0])][: args.top]:
        print("%5.1f  %s" % (100.0 * n / samples, name))
    if args.total:
        print("total% frame")
        for name, n in [item for item in total.most_common() if keep(item[0])][: args.top]:
            print("%5.1f  %s" % (100.0 * n / samples, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
