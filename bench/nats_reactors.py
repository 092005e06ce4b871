"""
tcp and nats pairs under Twisted's default (epoll) reactor and under its
asyncio reactor, in one run: what docs/howto/nats.rst quotes (the NATS
ends' loop stepped by the default reactor against the asyncio reactor's
own loop, and the asyncio reactor's cost for every other transport). Needs nats-server (Debian package nats-server) and the nats
extra.

    python bench/nats_reactors.py [--duration 5]
"""

import argparse
import json
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import loadgen  # noqa: E402

RUN = "import sys; from uhppoted_tunnel.app.cli import main; sys.exit(main())"
INSTALL = "from twisted.internet import asyncioreactor; asyncioreactor.install(); "


def command(reactor):
    return [sys.executable, "-c", (INSTALL if reactor == "asyncio" else "") + RUN]


def pair(workdir, emulator, transport, reactor, clients, nats_port, duration):
    udp = loadgen.free_port(socket.SOCK_DGRAM)
    if transport == "tcp":
        port = loadgen.free_port(socket.SOCK_STREAM)
        out, inbound = "tcp/server:127.0.0.1:%d" % port, "tcp/client:127.0.0.1:%d" % port
    else:
        out = inbound = "nats/client:127.0.0.1:%d" % nats_port
    config = os.path.join(workdir, "empty.toml")
    open(config, "w").close()
    common = ["--udp-timeout", "5s", "--rate-limit", "1000000", "--rate-limit-burst", "1000000",
              "--log-level", "warn", "--config", config]
    tag = "%s-%s-%d" % (transport, reactor, clients)
    env = loadgen.child_env()
    host = loadgen.Child(tag + "-host", command(reactor) + [
        "--in", "udp/listen:127.0.0.1:%d" % udp, "--out", out,
        "--lockfile", os.path.join(workdir, tag + "-host.pid")] + common, workdir, env)
    if transport == "tcp":
        deadline = time.time() + loadgen.READY_TIMEOUT
        while not loadgen.tcp_listening(port) and time.time() < deadline:
            time.sleep(0.05)
    site = loadgen.Child(tag + "-site", command(reactor) + [
        "--in", inbound, "--out", "udp/broadcast:127.0.0.1:%d" % emulator[1][1],
        "--lockfile", os.path.join(workdir, tag + "-site.pid"),
        "--nats-serial", ",".join(str(serial) for serial in loadgen.SERIALS)] + common, workdir, env)
    try:
        if not loadgen.probe(("127.0.0.1", udp), time.time() + loadgen.READY_TIMEOUT):
            raise SystemExit("%s relayed nothing:\n%s\n%s" % (tag, host.output(), site.output()))
        figures = loadgen.load("epoll", clients, ("127.0.0.1", udp), 1.0, duration,
                               {"host": host.pid, "site": site.pid, "emulator": emulator[0].pid})
        print(json.dumps({"transport": transport, "reactor": reactor, "clients": clients,
                          "requests_per_s": figures["requests_per_s"], "p50_ms": figures["p50_ms"],
                          "p99_ms": figures["p99_ms"], "timeouts": figures["timeouts"]}), flush=True)
    finally:
        site.stop()
        host.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=5.0)
    args = parser.parse_args()
    server = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/sbin")
    if server is None:
        raise SystemExit("nats-server is not installed (Debian package nats-server)")
    workdir = tempfile.mkdtemp(prefix="uhppoted-bench-")
    port = loadgen.free_port(socket.SOCK_STREAM)
    with open(os.path.join(workdir, "nats.conf"), "w") as f:
        f.write("listen: 127.0.0.1:%d\n" % port)
    nats = loadgen.Child("nats-server", [server, "-c", os.path.join(workdir, "nats.conf")], workdir,
                         loadgen.child_env())
    emulator = loadgen.start_emulator(workdir)
    try:
        for clients in (1, 16):
            for transport in ("tcp", "nats"):
                for reactor in ("epoll", "asyncio"):
                    pair(workdir, emulator, transport, reactor, clients, port, args.duration)
    finally:
        emulator[0].stop()
        nats.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
