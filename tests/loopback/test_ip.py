# -*- test-case-name: tests.loopback.test_ip -*-
"""
A tunnel whose out end is C{ip/out}, on real sockets on 127.0.0.1.
"""

import datetime

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.logger import LogLevel, formatEvent
from twisted.trial.unittest import TestCase

from uhppoted_tunnel import emulator
from uhppoted_tunnel.app import config
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.testing import LogWatcher
from uhppoted_tunnel.app.tunnel import TunnelService

GET_CONTROLLER = 0x94

A, B, C, D = 405419896, 303986753, 201020304, 423187757


class TCPController(Protocol):
    """
    A controller on TCP, as newer firmware serves it: each 64-byte request
    on a connection is answered with one 64-byte reply on it.
    """

    def connectionMade(self):
        self.buffer = b""
        self.factory.connections.add(self)
        self.lost = Deferred()

    def dataReceived(self, data):
        self.buffer += data
        while len(self.buffer) >= 64:
            request, self.buffer = self.buffer[:64], self.buffer[64:]
            self.factory.requests.append(request)
            reply = self.factory.controller.handle(request, datetime.datetime.now())
            if reply is not None:
                self.transport.write(reply)

    def connectionLost(self, reason):
        self.factory.connections.discard(self)
        self.lost.callback(None)


class TCPControllerFactory(Factory):
    protocol = TCPController

    def __init__(self, controller):
        self.controller = controller
        self.requests = []
        self.connections = set()

    def close(self):
        """
        Close every connection.

        :return: a Deferred firing once they are closed.
        """
        connections = list(self.connections)
        for connection in connections:
            connection.transport.loseConnection()
        return gatherResults([connection.lost for connection in connections])


class LoopbackTests(TestCase):
    """
    A tunnel whose out end is ip/out, on real sockets on 127.0.0.1: one
    controller on UDP, one on TCP, one reached only by broadcast.
    """

    timeout = 60

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.log = LogWatcher()
        self.addCleanup(self.log.stop)
        self.udp_a = emulator.listen(reactor, [emulator.Controller(A)], "127.0.0.1", 0)
        self.addCleanup(self.udp_a.stopListening)
        self.broadcast_c = emulator.listen(reactor, [emulator.Controller(C)], "127.0.0.1", 0)
        self.addCleanup(self.broadcast_c.stopListening)
        self.tcp_b = TCPControllerFactory(emulator.Controller(B))
        self.tcp_port = port = reactor.listenTCP(0, self.tcp_b, interface="127.0.0.1")
        self.addCleanup(self.tcp_b.close)
        self.addCleanup(lambda: port.connected and port.stopListening())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[site]\n"
                    'in = "udp/listen:127.0.0.1:0"\n'
                    'out = "ip/out:127.0.0.1:{}"\n'
                    'udp-timeout = "1s"\n'
                    "rate-limit = 1000\n"
                    "[site.controllers]\n"
                    '{} = "udp::127.0.0.1:{}"\n'
                    '{} = "tcp::127.0.0.1:{}"\n'.format(self.broadcast_c.getHost().port, A, self.udp_a.getHost().port,
                                                        B, port.getHost().port))
        options = Options()
        options.parseOptions(["--config", path + "#site"])
        self.tunnel = TunnelService(options, reactor)
        self.tunnel.startService()
        self.addCleanup(self.tunnel.stopService)
        self.address = "127.0.0.1:{}".format(self.tunnel.in_.port.getHost().port)

    def client(self):
        from uhppoted.uhppote import Uhppote

        return Uhppote(bind="127.0.0.1", broadcast=self.address, listen="127.0.0.1:0")

    @inlineCallbacks
    def test_routes(self):
        """
        The uhppoted client reaches A through its UDP address, B through
        its TCP address, and C through the broadcast address; none of them
        is asked on another path.
        """
        client = self.client()
        reply = yield deferToThread(client.get_controller, (A, self.address), timeout=2)
        self.assertEqual(reply.controller, A)
        self.assertEqual((self.udp_a.protocol.received, self.broadcast_c.protocol.received), (1, 0))
        reply = yield deferToThread(client.get_controller, (B, self.address), timeout=2)
        self.assertEqual(reply.controller, B)
        self.assertEqual([request[1] for request in self.tcp_b.requests], [GET_CONTROLLER])
        self.assertEqual(int.from_bytes(self.tcp_b.requests[0][4:8], "little"), B)
        reply = yield deferToThread(client.get_controller, (C, self.address), timeout=2)
        self.assertEqual(reply.controller, C)
        self.assertEqual((self.udp_a.protocol.received, self.broadcast_c.protocol.received), (1, 1))
        self.assertEqual(len(self.tcp_b.requests), 1)

    @inlineCallbacks
    def test_setTimeOverTCP(self):
        """
        A request that changes state reaches the TCP controller and its
        answer comes back.
        """
        client = self.client()
        when = datetime.datetime(2024, 5, 6, 7, 8, 9)
        reply = yield deferToThread(client.set_time, (B, self.address), when, timeout=2)
        self.assertEqual((reply.controller, reply.datetime), (B, when))
        self.assertEqual([request[1] for request in self.tcp_b.requests], [0x30])

    @inlineCallbacks
    def test_broadcast(self):
        """
        get_all_controllers goes to the broadcast address only.
        """
        found = yield deferToThread(self.client().get_all_controllers, timeout=1.5)
        self.assertEqual([reply.controller for reply in found], [C])
        self.assertEqual((self.udp_a.protocol.received, self.broadcast_c.protocol.received), (0, 1))
        self.assertEqual(self.tcp_b.requests, [])

    @inlineCallbacks
    def test_tcpControllerDown(self):
        """
        A TCP controller that refuses connections is a warning naming it;
        the application gets no reply.
        """
        port = self.tcp_port.getHost().port
        yield self.tcp_port.stopListening()
        asked = deferToThread(self.client().get_controller, (B, self.address), timeout=0.5)
        event = yield self.log.waitFor("could not connect to controller {}".format(B), reactor)
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertIn("127.0.0.1:{}".format(port), formatEvent(event))
        yield self.assertFailure(asked, TimeoutError)
