#!/usr/bin/env python3
"""
Many sites, one host: N fake site halves in this process (Go wire format,
one emulated controller each, L{tests.loopback.gosites}) dial one real host
half (C{udp/listen} -> C{tcp/server}) over loopback; C{--clients}
closed-loop UDP clients send unicast get-controller requests to it.

    python bench/hub.py --sites 1000 --requests 2000 --clients 16

Reports: the time one broadcast get-controller takes to find every
controller; unicast latency p50/p99 and requests unanswered; the request
frames that reached a site not serving their serial (the routing matrix
must keep this at 0); the host's peak RSS (C{VmHWM}).
"""

import argparse
import os
import random
import resource
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet import reactor  # noqa: E402
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks  # noqa: E402
from twisted.internet.protocol import DatagramProtocol  # noqa: E402
from twisted.internet.task import deferLater  # noqa: E402

from tests.loopback.gosites import dial  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIRST_SERIAL = 100000001
GET_CONTROLLER = 0x94
TIMEOUT = 2.0


def request(serial):
    return bytes([0x17, GET_CONTROLLER, 0, 0]) + serial.to_bytes(4, "little") + bytes(56)


def free_port(kind=socket.SOCK_STREAM):
    s = socket.socket(socket.AF_INET, kind)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def start_host(folder, udp_port, tcp_port, sites):
    config = os.path.join(folder, "empty.toml")
    with open(config, "w") as f:
        f.write("# none\n")
    script = os.path.join(os.path.dirname(sys.executable), "uhppoted-tunnel")
    command = [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "uhppoted_tunnel.app.cli"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    limit = str(max(2 * sites, 1024))
    return subprocess.Popen(command + [
        "--in", "udp/listen:127.0.0.1:%d" % udp_port, "--out", "tcp/server:127.0.0.1:%d" % tcp_port,
        "--config", config, "--lockfile", os.path.join(folder, "host.pid"), "--log-level", "warn",
        "--rate-limit", "1000000", "--rate-limit-burst", "1000000", "--max-connections", limit,
        "--max-connections-per-source", limit], env=env)


def wait_listening(port, deadline=20.0):
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit("the host never listened on TCP %d" % port)


def peak_rss(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return None


class Discovery(DatagramProtocol):
    def __init__(self, expected):
        self.expected = expected
        self.serials = set()
        self.done = Deferred()

    def datagramReceived(self, data, address):
        self.serials.add(int.from_bytes(data[4:8], "little"))
        if len(self.serials) == self.expected and not self.done.called:
            self.done.callback(None)


class UnicastClient(DatagramProtocol):
    """
    A closed-loop client: one request at a time, the next as soon as the
    reply comes (or after L{TIMEOUT}).
    """

    def __init__(self, target, serials, count, latencies):
        self.target = target
        self.serials = serials
        self.left = count
        self.latencies = latencies
        self.lost = 0
        self.wrong = 0
        self.finished = Deferred()
        self.pending = None

    def startProtocol(self):
        self.next()

    def next(self):
        if self.left == 0:
            self.finished.callback(None)
            return
        self.left -= 1
        self.serial = random.choice(self.serials)
        self.sent = time.perf_counter()
        self.timer = reactor.callLater(TIMEOUT, self.timedOut)
        self.transport.write(request(self.serial), self.target)

    def timedOut(self):
        self.lost += 1
        self.next()

    def datagramReceived(self, data, address):
        if int.from_bytes(data[4:8], "little") != self.serial or not self.timer.active():
            self.wrong += 1
            return
        self.timer.cancel()
        self.latencies.append(time.perf_counter() - self.sent)
        self.next()


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))] if values else float("nan")


@inlineCallbacks
def run(args, report):
    folder = tempfile.mkdtemp()
    udp_port, tcp_port = free_port(socket.SOCK_DGRAM), free_port()
    host = start_host(folder, udp_port, tcp_port, args.sites)
    try:
        yield deferLater(reactor, 0, lambda: None)
        wait_listening(tcp_port)
        serials = list(range(FIRST_SERIAL, FIRST_SERIAL + args.sites))
        sites = []
        for start in range(0, len(serials), 100):
            sites += (yield gatherResults([dial(reactor, tcp_port, serial) for serial in serials[start:start + 100]]))
        # the host has accepted them all when a broadcast reaches every one
        target = ("127.0.0.1", udp_port)
        yield deferLater(reactor, 0.5, lambda: None)
        discovery = Discovery(args.sites)
        port = reactor.listenUDP(0, discovery, interface="127.0.0.1")
        # a thousand replies at once overflow a default receive buffer (about
        # 270 datagrams): ask for more, as an application expecting them would
        port.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        started = time.perf_counter()
        port.write(request(0), target)
        timeout = reactor.callLater(10.0, lambda: discovery.done.called or discovery.done.callback(None))
        yield discovery.done
        if timeout.active():
            timeout.cancel()
        report["discovery_s"] = time.perf_counter() - started
        report["discovered"] = len(discovery.serials)
        yield port.stopListening()
        latencies = []
        clients = []
        per_client = args.requests // args.clients
        ports = []
        for _ in range(args.clients):
            client = UnicastClient(target, serials, per_client, latencies)
            clients.append(client)
        started = time.perf_counter()
        for client in clients:
            ports.append(reactor.listenUDP(0, client, interface="127.0.0.1"))
        yield gatherResults([client.finished for client in clients])
        report["unicast_s"] = time.perf_counter() - started
        report["requests"] = per_client * args.clients
        report["answered"] = len(latencies)
        report["lost"] = sum(client.lost for client in clients)
        report["p50_ms"] = percentile(latencies, 50) * 1000
        report["p99_ms"] = percentile(latencies, 99) * 1000
        report["misrouted"] = sum(site.misrouted for site in sites)
        report["unicast_frames"] = sum(site.received - site.broadcasts for site in sites)
        report["host_peak_rss_mb"] = peak_rss(host.pid)
        for p in ports:
            yield p.stopListening()
        for site in sites:
            site.transport.loseConnection()
    finally:
        host.terminate()
        host.wait()


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * args.sites + 256)), hard))
    report = {"sites": args.sites, "clients": args.clients}
    failure = []

    def go():
        d = run(args, report)
        d.addErrback(failure.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    if failure:
        failure[0].printTraceback()
        return 1
    print(("sites {sites}: discovery found {discovered} in {discovery_s:.3f} s; {answered}/{requests} unicast "
           "answered ({lost} lost) at {clients} clients, p50 {p50_ms:.2f} ms, p99 {p99_ms:.2f} ms; "
           "{unicast_frames} unicast frames at sites, {misrouted} at a site not serving the serial; "
           "host peak RSS {host_peak_rss_mb:.1f} MB").format(**report))
    return 0 if report["misrouted"] == 0 and report["discovered"] == args.sites else 1


if __name__ == "__main__":
    sys.exit(main())
