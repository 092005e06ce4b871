# -*- test-case-name: tests.loopback.test_flowcontrol -*-
"""
Peers that stop reading, against real tunnel processes on 127.0.0.1: the
memory of the half they are connected to stays flat, other peers are
served as usual, and the stalled peer is dropped after C{--stall-timeout}.
"""

import socket
import threading
import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import TestCase

from tests.gowire import go_packetize
from tests.loopback.processes import Client, connected_line, listening_line, run_tunnel, start_emulator
from uhppoted_tunnel.testing import packet

A = 405419896
#: a controller no site serves: a host sends its requests to every site
NOBODY = 303986753
#: requests for NOBODY: more frames than --max-send-queue and the socket buffers hold
FILLER = 16000
LOAD = 20.0
#: Requests a second the test sends while a peer is stalled.
RATE = 4000
LIMITS = ["--rate-limit", "1000000", "--rate-limit-burst", "1000000", "--stall-timeout", "5s",
          "--log-level", "info"]


def rss_mb(pid):
    """
    The resident set size of a process, in MB.
    """
    with open("/proc/{}/status".format(pid)) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise AssertionError("no VmRSS for {}".format(pid))


class Flood(DatagramProtocol):
    """
    Sends get-controller requests at a steady rate to a UDP port and counts
    the replies: to controller C{serial}. A host sends a request to the
    site that serves its controller, once it knows it, and a request for
    a controller no site serves to every site.
    """

    def __init__(self, port, rate, serial=A, limit=None):
        self.port = port
        self.serial = serial
        self.limit = limit
        self.per_tick = max(1, rate // 200)
        self.replies = 0
        self.sent = 0
        self.loop = LoopingCall(self.tick)

    def startProtocol(self):
        self.loop.start(0.005)

    def tick(self):
        request = packet(0x94, self.serial)
        for _ in range(self.per_tick):
            self.transport.write(request, ("127.0.0.1", self.port))
        self.sent += self.per_tick
        if self.limit is not None and self.sent >= self.limit:
            self.stop()

    def datagramReceived(self, data, address):
        self.replies += 1

    def stop(self):
        if self.loop.running:
            self.loop.stop()


def stalled_socket(port):
    """
    A stream peer with a tiny receive window that never reads.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    return sock


class StalledPeerTests(TestCase):
    timeout = 120

    def half(self, name, *args):
        return run_tunnel(self, name, *(list(args) + LIMITS))

    @inlineCallbacks
    def probe(self, client, count=5):
        """
        Unicast requests through the tunnel while it is loaded.

        :return: the round-trip times in seconds.
        """
        times = []
        for _ in range(count):
            # a datagram may be lost on a loaded machine: a lost probe is
            # asked again, and only answered ones are timed
            for attempt in range(3):
                start = time.monotonic()
                try:
                    reply = yield client.get_controller(A, timeout=2.0)
                except TimeoutError:
                    continue
                times.append(time.monotonic() - start)
                self.assertEqual(reply.controller, A)
                break
            else:
                self.fail("no answer to 3 probes in a row")
        return times

    @inlineCallbacks
    def test_stalledSiteAmongSites(self):
        """
        A host whose tcp/server out end has one site that stops reading
        among healthy ones, under 20 s of load: the host's memory grows by
        less than 10 MB, the healthy site's requests are answered within
        their usual latency, and the stalled peer is dropped with a warning.
        """
        emulator, emulator_port = yield start_emulator(self, A)
        host = self.half("host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0")
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        tcp_port = int((yield host.waitFor(listening_line("TCP"))).group(1))
        site = self.half("site", "--in", "tcp/client:127.0.0.1:{}".format(tcp_port),
                         "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s")
        yield site.waitFor(connected_line(tcp_port))
        client = Client(udp_port)
        usual = yield self.probe(client)

        mark = host.mark()
        rogue = stalled_socket(tcp_port)
        self.addCleanup(rogue.close)
        yield host.waitFor(connected_line(), since=mark)
        # requests for a controller no site serves reach the stalled site
        # too: a burst of them fills what may be queued for it
        filler = Flood(udp_port, RATE, serial=NOBODY, limit=FILLER)
        filler_port = reactor.listenUDP(0, filler, interface="127.0.0.1")
        self.addCleanup(filler_port.stopListening)
        self.addCleanup(filler.stop)
        flood = Flood(udp_port, RATE)
        port = reactor.listenUDP(0, flood, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.addCleanup(flood.stop)
        while filler.loop.running:
            yield deferLater(reactor, 0.1, lambda: None)
        yield deferLater(reactor, 2.0, lambda: None)
        before = rss_mb(host.pid)
        loaded = []
        end = time.monotonic() + LOAD - 2.0
        while time.monotonic() < end:
            loaded.extend((yield self.probe(client, 1)))
            yield deferLater(reactor, 0.5, lambda: None)
        after = rss_mb(host.pid)
        flood.stop()
        yield host.waitFor(r"closed 1 connection\(s\) that read nothing sent to them for 5s, the last to 127\.0\.0\.1:\d+ "
                           r"\(--stall-timeout\)")
        self.assertLess(after - before, 10.0, "host RSS {:.1f} -> {:.1f} MB".format(before, after))
        self.assertGreater(flood.replies, RATE * 5, "the healthy site relayed too little")
        slowest = sorted(loaded)[int(len(loaded) * 0.9)]
        self.assertLess(slowest, max(0.5, 20 * max(usual)), (usual, loaded))

    @inlineCallbacks
    def test_peerNeverReadsReplies(self):
        """
        A peer that sends requests to a tcp/server in end as fast as it can
        and never reads the replies: the half's memory grows by less than
        10 MB in 20 s, and the peer is dropped after --stall-timeout.
        """
        emulator, emulator_port = yield start_emulator(self, A)
        site = self.half("site", "--in", "tcp/server:127.0.0.1:0",
                         "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s")
        tcp_port = int((yield site.waitFor(listening_line("TCP"))).group(1))
        rogue = stalled_socket(tcp_port)
        self.addCleanup(rogue.close)
        stop = threading.Event()
        frames = b"".join(go_packetize(n, packet(0x94, A)) for n in range(1, 101))

        def flood():
            try:
                while not stop.is_set():
                    rogue.sendall(frames)
            except OSError:
                pass

        thread = threading.Thread(target=flood, daemon=True)
        thread.start()
        self.addCleanup(stop.set)
        yield site.waitFor(connected_line())
        yield deferLater(reactor, 1.0, lambda: None)
        before = rss_mb(site.pid)
        yield site.waitFor(r"closed 1 connection\(s\) that read nothing sent to them for 5s, the last to 127\.0\.0\.1:\d+ "
                           r"\(--stall-timeout\)",
                           # the replies that fill the peer's buffers come from the emulator, slower on a busy machine
                           timeout=3 * LOAD)
        yield deferLater(reactor, LOAD / 2, lambda: None)
        after = rss_mb(site.pid)
        stop.set()
        self.assertLess(after - before, 10.0, "site RSS {:.1f} -> {:.1f} MB".format(before, after))
