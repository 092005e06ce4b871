"""
Tests for the throttled connection log of L{uhppoted_tunnel.link.factory}:
connection churn on any transport gives a bounded number of lines.
"""

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.core.relays import relay_for
from uhppoted_tunnel.interfaces import IN
from uhppoted_tunnel.link.factory import FrameFactory
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter
from uhppoted_tunnel.transports.tls.handshake import HandshakeGateFactory

SETTINGS = {"max-payload": 1024, "max-send-queue": 4096, "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
            "udp-timeout": 5.0, "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False}


class Connection:
    """
    A connection as the factory sees it.
    """

    def __init__(self, peer):
        self.peer = peer

    def close(self):
        pass


class ChurnTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        relay = relay_for(IN, SETTINGS, RecordingRouter(), self.reactor, [])
        self.factory = FrameFactory(relay, SETTINGS, self.reactor, "TCP")

    def lines(self):
        return [e for e in self.logged if e.get("log_namespace", "").endswith("FrameFactory")]

    def cycle(self, n, peer="127.0.0.1:{}"):
        connection = Connection(peer.format(40000 + n % 20000))
        self.factory.connectionReady(connection)
        self.factory.connectionClosed(connection, None)

    def test_fewShown(self):
        """
        The first connections of an end are each logged as they open and
        close.
        """
        for n in range(5):
            self.cycle(n)
        self.assertEqual([e["log_format"].split(" ")[0] for e in self.lines()], ["connected", "connection"] * 5)

    def test_churnBounded(self):
        """
        44,333 connect/close cycles in 10 s give a bounded number of lines:
        the first ones, then a count every 10 s naming the last peer, and
        what is left is told at stop.
        """
        for n in range(44333):
            if n % 4433 == 0:
                self.reactor.advance(1)
            self.cycle(n)
        self.reactor.advance(30)
        lines = self.lines()
        self.assertLess(len(lines), 60)
        summaries = [e for e in lines if "opened" in e["log_format"]]
        self.assertTrue(summaries)
        self.assertEqual(sum(e["opened"] for e in summaries) + len([e for e in lines if e["log_format"].startswith("connected")]), 44333)
        self.assertIn("peer", summaries[-1])
        self.factory.closeAll()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_closeOfShownIsShown(self):
        """
        A connection whose opening was logged has its close logged too,
        even in a flood.
        """
        first = Connection("127.0.0.1:1")
        self.factory.connectionReady(first)
        for n in range(1000):
            self.cycle(n)
        self.factory.connectionClosed(first, None)
        closes = [e for e in self.lines() if e["log_format"].startswith("connection to") and e["peer"] == first.peer]
        self.assertEqual(len(closes), 1)
        self.factory.closeAll()


class HandshakeChurnTests(SynchronousTestCase):
    def test_leftBeforeHandshakeBounded(self):
        """
        Thousands of connections that close before their TLS handshake give
        a bounded number of lines, the count told at flush.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        reactor = FakeReactor()
        gate = HandshakeGateFactory(None, reactor, 10.0, "TLS", "is the peer using TLS?")
        for n in range(5000):
            gate.refused("127.0.0.1:{}".format(n), "closed", False)
        gate.flush()
        lines = [e for e in logged if "TLS handshake" in e["log_format"]]
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[-1]["count"], 4999)
        self.assertEqual(reactor.getDelayedCalls(), [])
