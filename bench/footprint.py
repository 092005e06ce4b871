# -*- test-case-name: tests.loopback.test_footprint -*-
"""
What a plain tunnel half costs above a bare Twisted reactor.

Starts, in fresh interpreters of this Python, (1) a bare reactor listening
on one UDP and one TCP port and (2) a C{udp/listen -> tcp/server} tunnel
half, several times each, and prints for each the median time from the
process start to its TCP port listening (seen in C{/proc/PID/net/tcp}) and
its resident memory (C{VmRSS}) once idle (the least time too: on a busy
machine it is the steadier figure)::

    python bench/footprint.py [--runs 7] [--tree NAME=DIR ...]

Each C{--tree} runs the tunnel from another checkout (its folder first on
C{sys.path}), e.g. the tree before a change, in the same run. Each tree's
package is byte-compiled first (as C{pip install} does), so that no run
pays for compiling it, whatever C{PYTHONDONTWRITEBYTECODE} says.
"""

import argparse
import compileall
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import uhppoted_tunnel

BARE = """\
import sys
from twisted.internet import reactor
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
reactor.listenUDP(int(sys.argv[1]), DatagramProtocol(), interface="127.0.0.1")
reactor.listenTCP(int(sys.argv[2]), Factory.forProtocol(Protocol), interface="127.0.0.1")
reactor.run()
"""

TUNNEL = """\
import os, sys
if os.environ.get("FOOTPRINT_TREE"):
    sys.path.insert(0, os.environ["FOOTPRINT_TREE"])
from uhppoted_tunnel.app.cli import main
sys.exit(main(["--in", "udp/listen:127.0.0.1:" + sys.argv[1], "--out", "tcp/server:127.0.0.1:" + sys.argv[2],
               "--lockfile", sys.argv[3], "--log-level", "warn"]))
"""


def free_port(kind):
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening(pid, port):
    """
    Whether process C{pid} has a TCP socket listening on C{port}.
    """
    try:
        with open("/proc/{}/net/tcp".format(pid)) as f:
            lines = f.readlines()[1:]
    except OSError:
        return False
    wanted = ":{:04X}".format(port)
    return any(line.split()[1].endswith(wanted) and line.split()[3] == "0A" for line in lines)


def rss_kib(pid):
    with open("/proc/{}/status".format(pid)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise ValueError("no VmRSS")


def measure(script, env, folder, idle=1.0, timeout=20.0):
    """
    :return: C{(seconds to listen, RSS in KiB once idle)} of one run.
    """
    udp, tcp = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    lock = os.path.join(folder, "footprint-{}.pid".format(tcp))
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", script, str(udp), str(tcp), lock], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not listening(process.pid, tcp):
            if process.poll() is not None:
                raise RuntimeError("exited {}: {}".format(process.returncode, process.stderr.read().decode()))
            if time.perf_counter() - start > timeout:
                raise RuntimeError("not listening after {}s".format(timeout))
            time.sleep(0.001)
        elapsed = time.perf_counter() - start
        time.sleep(idle)
        return elapsed, rss_kib(process.pid)
    finally:
        process.terminate()
        process.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=DIR",
                        help="also run the tunnel from this checkout")
    args = parser.parse_args(argv)
    variants = [("bare reactor", BARE, None), ("udp->tcp half", TUNNEL, None)]
    for tree in args.tree:
        name, _, folder = tree.partition("=")
        variants.append(("udp->tcp half ({})".format(name), TUNNEL, os.path.abspath(folder)))
    here = os.path.dirname(os.path.dirname(os.path.abspath(uhppoted_tunnel.__file__)))
    for tree in [here] + [tree for _, _, tree in variants if tree]:
        compileall.compile_dir(os.path.join(tree, "uhppoted_tunnel"), quiet=1)
    with tempfile.TemporaryDirectory() as folder:
        results = []
        # interleaved, so that a busy machine weighs on every variant alike
        for _ in range(args.runs):
            for name, script, tree in variants:
                env = dict(os.environ)
                env.pop("FOOTPRINT_TREE", None)
                if tree:
                    env["FOOTPRINT_TREE"] = tree
                results.append((name, measure(script, env, folder)))
    base = None
    print("{:<28} {:>16} {:>8}   {}".format("", "listen ms", "RSS", "above the bare reactor"))
    print("{:<28} {:>16} {:>8}".format("", "(median, least)", "MiB"))
    for name, _, _ in variants:
        times = [r[0] * 1000 for n, r in results if n == name]
        sizes = [r[1] / 1024 for n, r in results if n == name]
        row = (statistics.median(times), min(times), statistics.median(sizes))
        base = base or row
        print("{:<28} {:>8.0f} {:>7.0f} {:>8.1f}   {:+.0f} ms ({:+.0f} ms least), {:+.1f} MiB".format(
            name, *row, row[0] - base[0], row[1] - base[1], row[2] - base[2]))


if __name__ == "__main__":
    main()
