# -*- test-case-name: tests.loopback.test_ratelimit -*-
"""
The limit per sender against real tunnel processes on 127.0.0.1: one
application flooding the host's C{udp/listen} does not stop another being
answered.
"""

import time

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import TestCase

from tests.loopback.processes import Client, connected_line, listening_line, run_tunnel, start_emulator
from uhppoted_tunnel.testing import packet

A = 405419896


class Flooder(DatagramProtocol):
    """
    Sends get-controller requests as fast as a steady loop allows.
    """

    def __init__(self, port):
        self.port = port
        self.loop = LoopingCall(self.tick)

    def startProtocol(self):
        self.loop.start(0.005)

    def tick(self):
        for _ in range(20):
            self.transport.write(packet(0x94, A), ("127.0.0.1", self.port))

    def datagramReceived(self, data, address):
        pass

    def stop(self):
        if self.loop.running:
            self.loop.stop()


class FloodTests(TestCase):
    timeout = 90

    def half(self, name, *args):
        return run_tunnel(self, name, *args)

    @inlineCallbacks
    def test_politeSenderAnswered(self):
        """
        With the end's limit at 100/s, a sender at 127.0.0.2 sending 4,000
        requests a second takes at most its own share: a polite application
        at 127.0.0.1 asking every 200 ms is answered every time, and the
        flood is reported in a throttled warning naming the sender.
        """
        emulator, emulator_port = yield start_emulator(self, A)
        host = self.half("host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0",
                         "--rate-limit", "100", "--rate-limit-burst", "100")
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        tcp_port = int((yield host.waitFor(listening_line("TCP"))).group(1))
        site = self.half("site", "--in", "tcp/client:127.0.0.1:{}".format(tcp_port),
                         "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s",
                         "--rate-limit", "100000", "--rate-limit-burst", "100000")
        yield site.waitFor(connected_line(tcp_port))
        flooder = Flooder(udp_port)
        port = reactor.listenUDP(0, flooder, interface="127.0.0.2")
        self.addCleanup(port.stopListening)
        self.addCleanup(flooder.stop)
        yield deferLater(reactor, 1.0, lambda: None)
        client = Client(udp_port)
        answered = 0
        end = time.monotonic() + 5.0
        while time.monotonic() < end:
            reply = yield client.get_controller(A, timeout=1.0)
            self.assertEqual(reply.controller, A)
            answered += 1
            yield deferLater(reactor, 0.2, lambda: None)
        flooder.stop()
        self.assertGreaterEqual(answered, 10)
        yield host.waitFor(r"rate limit per sender exceeded: dropped \d+ request\(s\), the last from 127\.0\.0\.2")
        warnings = [line for _, line in host.lines if "rate limit" in line]
        self.assertLess(len(warnings), 5, warnings)
