#!/usr/bin/env python3
"""
Instructions per request of a live pair, for any transport: both halves
run under valgrind's callgrind, which counts the instructions of every
thread of a process (grpcio's and libzmq's own threads included), so the
figure does not depend on what else the machine is doing, as requests per
second do. The pair is bench/loadgen.py's (the same links, flags and
servers); one client sends requests one after another.

After a warm-up, each half's counters are zeroed (callgrind_control
--zero), N requests go through, and each half dumps its counters
(callgrind_control --dump): the dump's total over N is the instructions a
request costs that half. A server between the halves (nats-server,
prosody, sshd) is not counted. One JSON line per transport goes to stdout.

    python bench/instructions.py tcp tls ws zmq grpc nats
    python bench/instructions.py --requests 2000 tcp

Needs valgrind (Debian's valgrind package). Under callgrind a half runs
some 50 times slower, so starting takes up to a minute or two.
"""

import argparse
import glob
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen  # noqa: E402

#: how long a pair under callgrind has to start
READY_TIMEOUT = 240.0
#: how long one request may take under callgrind
REQUEST_TIMEOUT = 10.0


def counted(command):
    """The half's command line, under callgrind."""

    def argv():
        return ["valgrind", "--tool=callgrind", "--collect-systime=no", "--dump-instr=no",
                "--callgrind-out-file=callgrind.%p"] + command()

    return argv


def exchange(target, count, timeout=REQUEST_TIMEOUT):
    """Send C{count} get-controller requests one after another; raise if one goes unanswered."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for i in range(count):
            request = loadgen.request_for(loadgen.SERIALS[i % 2])
            s.sendto(request, target)
            deadline = time.monotonic() + timeout
            while True:
                left = deadline - time.monotonic()
                ready, _, _ = select.select([s], [], [], max(0.0, left))
                if not ready:
                    raise TimeoutError("request %d of %d had no reply within %gs" % (i + 1, count, timeout))
                data = s.recv(2048)
                if len(data) >= 8 and data[4:8] == request[4:8]:
                    break


def control(option, pid):
    subprocess.run(["callgrind_control", option, str(pid)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=120)


def dumped(workdir, pid, deadline):
    """The instruction total of the half's newest dump."""
    while time.monotonic() < deadline:
        for path in sorted(glob.glob(os.path.join(workdir, "callgrind.%d.*" % pid)), reverse=True):
            with open(path) as f:
                for line in f:
                    m = re.match(r"(?:summary|totals): (\d+)", line)
                    if m:
                        return int(m.group(1))
        time.sleep(0.2)
    raise TimeoutError("callgrind wrote no dump for process %d" % pid)


def measure(transport, requests, warmup):
    workdir = tempfile.mkdtemp(prefix="uhppoted-instr-")
    emulator = tunnel = None
    try:
        emulator, address = loadgen.start_emulator(workdir)
        loadgen.READY_TIMEOUT = READY_TIMEOUT
        tunnel = loadgen.Tunnel("python", workdir, address, "5s", transport=transport)
        tunnel.start()
        target = (loadgen.LOCALHOST, tunnel.udp_port)
        exchange(target, warmup)
        halves = {"host": tunnel.host.pid, "site": tunnel.site.pid}
        for pid in halves.values():
            control("--zero", pid)
        exchange(target, requests)
        for pid in halves.values():
            control("--dump", pid)
        deadline = time.monotonic() + 60
        result = {"transport": transport, "requests": requests}
        for name, pid in halves.items():
            result[name] = round(dumped(workdir, pid, deadline) / requests)
        result["pair"] = result["host"] + result["site"]
        return result
    finally:
        if tunnel is not None:
            tunnel.stop()
        if emulator is not None:
            emulator.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("transports", nargs="*", default=["tcp"], help="as bench/loadgen.py --transport names them")
    parser.add_argument("--requests", type=int, default=1000, help="requests counted (default 1000)")
    parser.add_argument("--warmup", type=int, default=100, help="requests before counting (default 100)")
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        parser.error("valgrind is not installed (Debian's valgrind package)")
    unknown = [t for t in args.transports if t not in loadgen.TRANSPORTS]
    if unknown:
        parser.error("unknown transport(s): %s (known: %s)" % (", ".join(unknown), ", ".join(loadgen.TRANSPORTS)))
    loadgen.tunnel_command = counted(loadgen.tunnel_command)
    status = 0
    for transport in args.transports:
        try:
            print(json.dumps(measure(transport, args.requests, args.warmup)), flush=True)
        except (loadgen.NotReady, TimeoutError, subprocess.SubprocessError, OSError) as e:
            loadgen.log("%s: %s", transport, e)
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
