"""
Tests for L{uhppoted_tunnel.link.ends}: the tcp/server and
tcp/client ends in both roles, on fake sockets and a fake clock.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.link.ends import retry_policy
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IInEnd, IOutEnd
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter, packet
from uhppoted_tunnel.core.frames import FrameDecoder, encode

SETTINGS = {"max-payload": 1024, "max-connections": 512, "max-connections-per-source": 128, "max-send-queue": 262144, "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
            "udp-timeout": 5.0, "debug": False, "max-retries": -1, "max-retry-delay": 300.0,
            "events": False}
MAKER = StreamConnectorMaker("tcp")
REQUEST = packet(0x94, 405419896)
REPLY = packet(0x94, 405419896, b"\xc0\xa8\x01\x64")


def make(text, role, router=None, reactor=None, **settings):
    reactor = reactor if reactor is not None else FakeReactor()
    _, spec = parse(text, {prefix: MAKER for prefix in MAKER.prefixes})
    return MAKER.makeEnd(spec, role, dict(SETTINGS, **settings), router, reactor), reactor


def peer(end, port=50000):
    """
    Connect a fake peer to a stream end's factory.
    """
    protocol = end.factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", port))
    protocol.makeConnection(transport)
    return protocol, transport


def frames(transport):
    return FrameDecoder().feed(transport.value())


class RetryPolicyTests(SynchronousTestCase):
    def test_goSchedule(self):
        """
        The first retry comes after 5 s and the delay doubles up to the
        maximum, with no jitter.
        """
        policy = retry_policy(60.0)
        self.assertEqual([policy(n) for n in range(1, 7)], [5, 10, 20, 40, 60, 60])
        self.assertEqual(policy(10000), 60)


class OutEndTests(SynchronousTestCase):
    def setUp(self):
        self.end, self.reactor = make("tcp/server:127.0.0.1:12345", OUT)
        self.end.startService()

    def tearDown(self):
        if self.end.running:
            self.end.stopService()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_interfaces(self):
        """
        The maker provides L{IConnectorMaker}; an out end provides
        L{IOutEnd}; stream ends can play either role.
        """
        verifyObject(IConnectorMaker, MAKER)
        verifyObject(IOutEnd, self.end)
        self.assertEqual(MAKER.roles("tcp/server:"), {IN, OUT})

    def test_listens(self):
        """
        A Go HOST:PORT address listens with TCP on that interface and port.
        """
        port, _, _, interface = self.reactor.tcpServers[0]
        self.assertEqual((port, interface), (12345, "127.0.0.1"))

    def test_fanOutAndReplies(self):
        """
        A request goes to every connected peer with one id; replies from
        either are delivered; a reply with another id is not.
        """
        a, ta = peer(self.end, 50001)
        b, tb = peer(self.end, 50002)
        replies = []
        self.end.send(REQUEST, replies.append)
        [(id_a, payload_a)] = frames(ta)
        [(id_b, payload_b)] = frames(tb)
        self.assertEqual((id_a, payload_a), (id_b, REQUEST))
        b.dataReceived(encode(id_a, b"from b"))
        a.dataReceived(encode(id_a, b"from a"))
        a.dataReceived(encode(id_a + 1, b"stray"))
        self.assertEqual(replies, [b"from b", b"from a"])

    def test_unicastHandlerGoesWithReply(self):
        """
        The handler of a request to one controller goes with its reply; a
        broadcast's stays for more replies.
        """
        protocol, transport = peer(self.end)
        self.end.send(REQUEST, lambda reply: None)
        self.end.send(packet(0x94, 0), lambda reply: None)
        (unicast, _), (broadcast, _) = frames(transport)
        protocol.dataReceived(encode(unicast, REPLY) + encode(broadcast, REPLY))
        self.assertEqual(len(self.end.relay.replies), 1)

    def test_idsDistinct(self):
        """
        Each request gets its own id.
        """
        _, transport = peer(self.end)
        for _ in range(3):
            self.end.send(REQUEST, None)
        self.assertEqual(len({frame_id for frame_id, _ in frames(transport)}), 3)

    def test_queuedUntilConnected(self):
        """
        Requests sent with no peer connected are held and sent when one
        connects, less any older than the UDP timeout.
        """
        replies = []
        self.end.send(b"stale", None)
        self.reactor.advance(4)
        self.end.send(b"fresh", replies.append)
        self.reactor.advance(2)
        protocol, transport = peer(self.end)
        [(frame_id, payload)] = frames(transport)
        self.assertEqual(payload, b"fresh")
        protocol.dataReceived(encode(frame_id, REPLY))
        self.assertEqual(replies, [REPLY])

    def test_queueBounded(self):
        """
        The queue holds the 16 newest requests.
        """
        for n in range(20):
            self.end.send(bytes([n]), None)
        _, transport = peer(self.end)
        self.assertEqual([payload[0] for _, payload in frames(transport)], list(range(4, 20)))

    def test_handlersSwept(self):
        """
        A reply handler is forgotten after 15 s without replies.
        """
        protocol, transport = peer(self.end)
        replies = []
        self.end.send(REQUEST, replies.append)
        [(frame_id, _)] = frames(transport)
        self.reactor.advance(25)
        protocol.dataReceived(encode(frame_id, REPLY))
        self.assertEqual(replies, [])
        self.assertEqual(len(self.end.relay.replies), 0)

    def test_lostConnectionForgetsHandlers(self):
        """
        When a peer disconnects, its handlers go and nothing more is sent to
        it.
        """
        protocol, transport = peer(self.end)
        self.end.send(REQUEST, lambda reply: None)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(len(self.end.relay.replies), 0)
        self.assertEqual(self.end.connections, [])

    def test_stopClosesConnections(self):
        """
        Stopping closes every connection and fires once they are closed.
        """
        protocol, transport = peer(self.end)
        stopped = self.end.stopService()
        self.assertTrue(transport.disconnecting)
        self.assertNoResult(stopped)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)


class PendingRepliesTests(SynchronousTestCase):
    """
    An out end keeps at most C{--max-pending-replies} requests waiting for
    replies: past it, requests wanting a reply are dropped, counted and
    warned of (throttled), so a flood nobody answers costs bounded memory.
    """

    def setUp(self):
        self.end, self.reactor = make("tcp/server:127.0.0.1:12345", OUT, **{"max-pending-replies": 2})
        self.end.startService()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def tearDown(self):
        if self.end.running:
            self.end.stopService()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_capped(self):
        """
        The third request waiting for a reply is dropped and warned of,
        naming the flag; once a reply frees a place, requests go again.
        """
        protocol, transport = peer(self.end)
        replies = []
        for _ in range(3):
            self.end.send(REQUEST, replies.append)
        sent = frames(transport)
        self.assertEqual(len(sent), 2)
        self.assertEqual(len(self.end.relay.replies), 2)
        [warning] = [formatEvent(e) for e in self.logged if e.get("log_level") == LogLevel.warn]
        self.assertIn("dropped 1 request(s): 2 requests already wait for replies", warning)
        self.assertIn("--max-pending-replies", warning)
        protocol.dataReceived(encode(sent[0][0], REPLY))
        self.end.send(REQUEST, replies.append)
        self.assertEqual((len(frames(transport)), replies), (3, [REPLY]))

    def test_noReplyWantedNotCapped(self):
        """
        A request that wants no reply keeps no handler and is never dropped
        for the cap.
        """
        _, transport = peer(self.end)
        for _ in range(5):
            self.end.send(REQUEST, None)
        self.assertEqual(len(frames(transport)), 5)


class InEndTests(SynchronousTestCase):
    def setUp(self):
        self.router = RecordingRouter()
        self.end, self.reactor = make("tcp/server:0.0.0.0:12345", IN, self.router)
        self.end.startService()

    def tearDown(self):
        self.end.stopService()

    def test_interface(self):
        """
        An in end provides L{IInEnd}.
        """
        verifyObject(IInEnd, self.end)

    def test_replyOnSameConnectionAndId(self):
        """
        A request frame goes to the router; each reply goes back on the
        connection it came by, with its id.
        """
        a, ta = peer(self.end, 50001)
        b, tb = peer(self.end, 50002)
        a.dataReceived(encode(7, REQUEST))
        b.dataReceived(encode(7, REQUEST))
        (_, reply_a), (_, reply_b) = self.router.requests
        reply_b(b"for b")
        reply_a(b"for a 1")
        reply_a(b"for a 2")
        self.assertEqual(frames(ta), [(7, b"for a 1"), (7, b"for a 2")])
        self.assertEqual(frames(tb), [(7, b"for b")])

    def test_replyAfterDisconnectDropped(self):
        """
        A reply for a connection that has closed is dropped.
        """
        protocol, transport = peer(self.end)
        protocol.dataReceived(encode(1, REQUEST))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.router.requests[0][1](REPLY)
        self.assertEqual(transport.value(), b"")


class ClientEndTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.server, _ = make("tcp/server:127.0.0.1:12345", IN, RecordingRouter(), self.reactor)
        self.server.startService()
        self.completer = ConnectionCompleter(self.reactor)

    def tearDown(self):
        self.server.stopService()

    def client(self, **settings):
        end, _ = make("tcp/client:127.0.0.1:12345", OUT, None, self.reactor, **settings)
        self.failures = []
        end.whenFailed().addCallback(self.failures.append)
        end.startService()
        self.addCleanup(end.stopService)
        return end

    def test_connectsAndRelays(self):
        """
        A client out end dials the server and relays requests over the
        connection.
        """
        client = self.client()
        pump = self.completer.succeedOnce()
        replies = []
        client.send(REQUEST, replies.append)
        pump.flush()
        [(payload, reply)] = self.server.router.requests
        reply(REPLY)
        pump.flush()
        self.assertEqual((payload, replies), (REQUEST, [REPLY]))

    def test_silentCloseIsAFailedAttempt(self):
        """
        A server that closes the connection without a word after the
        client's first frame (a TLS server reading a plain client's frame)
        is a failed attempt, said in words: with --max-retries 0 the end
        fails with the sentence.
        """
        client = self.client(**{"max-retries": 0})
        pump = self.completer.succeedOnce()
        client.send(REQUEST, None)
        pump.flush()
        pump.server.transport.loseConnection()
        pump.flush()
        self.reactor.advance(0)
        [message] = self.failures
        self.assertEqual(message, "could not connect to 127.0.0.1:12345 after 1 attempt(s): the server closed the "
                                  "connection without sending anything: is it a TLS server? A tcp/client cannot "
                                  "talk to one: use tls/client with --ca-cert (or the server is over its "
                                  "--max-connections)")

    def test_retriesWithBackoff(self):
        """
        After failed dials the client retries after 5 s, then 10 s.
        """
        self.client()
        self.completer.failOnce()
        self.assertEqual(len(self.reactor.tcpClients), 0)
        self.reactor.advance(4.9)
        self.assertEqual(len(self.reactor.tcpClients), 0)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.tcpClients), 1)
        self.completer.failOnce()
        self.reactor.advance(9.9)
        self.assertEqual(len(self.reactor.tcpClients), 0)
        self.reactor.advance(0.1)
        self.assertIsNotNone(self.completer.succeedOnce())

    def test_maxRetries(self):
        """
        After --max-retries failed retries in a row the end reports a fatal
        error naming the address.
        """
        self.client(**{"max-retries": 1})
        self.completer.failOnce()
        self.assertEqual(self.failures, [])
        self.reactor.advance(5)
        self.completer.failOnce()
        [message] = self.failures
        self.assertIn("could not connect to 127.0.0.1:12345 after 2 attempt(s)", message)

    def test_reconnectsAfterLoss(self):
        """
        When the connection drops the client dials again, and queued
        requests go out on the new connection.
        """
        client = self.client(**{"max-retries": 0})
        pump = self.completer.succeedOnce()
        pump.client.transport.loseConnection()
        pump.flush()
        client.send(REQUEST, None)
        self.reactor.advance(5)
        pump = self.completer.succeedOnce()
        pump.flush()
        self.assertEqual([payload for payload, _ in self.server.router.requests], [REQUEST])
        self.assertEqual(self.failures, [])


class AddressTests(SynchronousTestCase):
    def test_endpointDescription(self):
        """
        An address that is not HOST:PORT is a Twisted endpoint description.
        """
        end, reactor = make("tcp/server:tcp:23456:interface=127.0.0.1", IN, RecordingRouter())
        end.startService()
        self.addCleanup(end.stopService)
        port, _, _, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (23456, "127.0.0.1"))

    def test_ipv6(self):
        """
        [IPv6]:PORT addresses are accepted.
        """
        end, reactor = make("tcp/client:[::1]:12345", OUT)
        end.startService()
        self.addCleanup(end.stopService)
        self.assertEqual(reactor.tcpClients[0][:2], ("::1", 12345))

    def test_badAddresses(self):
        """
        A client address without a host or port is refused with the
        connector named.
        """
        for text in ("tcp/client::12345", "tcp/client:127.0.0.1:0"):
            self.assertRaises(ValueError, make, text, OUT)

    def test_badDescription(self):
        """
        A Twisted endpoint description that cannot be used is a one-line
        error naming the connector, whatever the parser raised (the systemd
        parser raises IndexError when no socket was passed in).
        """
        for text in ("tcp/client:bogus:x=1", "tcp/server:systemd:domain=INET:index=7"):
            e = self.assertRaises(ValueError, make, text, OUT)
            self.assertIn("'{}': not a usable endpoint".format(text), str(e))
        e = self.assertRaises(ValueError, make, "tcp/server:127.0.0.1:abc", OUT)
        self.assertEqual(str(e), "'tcp/server:127.0.0.1:abc': invalid port in '127.0.0.1:abc' (expected 0..65535)")

    def test_unknownInterface(self):
        """
        Binding to an interface that does not exist is refused.
        """
        e = self.assertRaises(ValueError, make, "tcp/client::nosuch0:127.0.0.1:12345", OUT)
        self.assertIn("nosuch0", str(e))


class FlowControlTests(SynchronousTestCase):
    """
    A peer that stops reading (its transport pauses its producer, the
    connection) costs bounded memory and never holds up the others.
    """

    def setUp(self):
        self.end, self.reactor = make("tcp/server:127.0.0.1:12345", OUT, **{"stall-timeout": 10.0})
        self.end.startService()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def tearDown(self):
        if self.end.running:
            self.end.stopService()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stalledPeerSkipped(self):
        """
        While one peer is not reading, frames for it are dropped and counted
        and nothing more is read from it; the other peer gets every request.
        """
        stalled, ts = peer(self.end, 50001)
        healthy, th = peer(self.end, 50002)
        self.assertIs(ts.producer, stalled)
        stalled.pauseProducing()
        self.assertEqual(ts.producerState, "paused")
        for _ in range(3):
            self.end.send(REQUEST, lambda reply: None)
        self.assertEqual(len(frames(th)), 3)
        self.assertEqual(frames(ts), [])
        self.assertEqual(self.end.factory.dropped, 3)
        warnings = [e for e in self.logged if "not reading" in e.get("log_format", "")]
        self.assertEqual(len(warnings), 1)

    def test_resumed(self):
        """
        A peer that reads again gets frames again, is read from again, and
        is not disconnected.
        """
        protocol, transport = peer(self.end)
        protocol.pauseProducing()
        self.reactor.advance(9)
        protocol.resumeProducing()
        self.assertEqual(transport.producerState, "producing")
        self.end.send(REQUEST, None)
        self.assertEqual(len(frames(transport)), 1)
        self.reactor.advance(20)
        self.assertFalse(transport.disconnecting)

    def test_stalledTooLong(self):
        """
        A peer that reads nothing for --stall-timeout is disconnected, with
        a warning naming it.
        """
        protocol, transport = peer(self.end, 50003)
        protocol.pauseProducing()
        self.reactor.advance(9.9)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(0.1)
        self.assertTrue(transport.disconnected)
        [warning] = [e for e in self.logged if "--stall-timeout" in e.get("log_format", "")]
        self.assertEqual((warning["peer"], warning["count"]), ("127.0.0.1:50003", 1))
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_stopAbortsStalled(self):
        """
        Stopping drops a stalled peer at once (closing it politely would
        wait for it to read).
        """
        protocol, transport = peer(self.end)
        protocol.pauseProducing()
        self.end.stopService()
        self.assertTrue(transport.disconnected)


class ServerLimitsTests(SynchronousTestCase):
    """
    A stream server end listens with a large backlog, caps its
    connections, and warns when it is plain on a network address.
    """

    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def start(self, text, **settings):
        end, reactor = make(text, IN, RecordingRouter(), **settings)
        end.startService()
        self.addCleanup(end.stopService)
        return end, reactor

    def test_backlogAndCaps(self):
        """
        The listen backlog is 1024; past --max-connections-per-source a
        connection from that source is refused (its protocol is never
        built) with a warning naming the flag, while another source is
        still accepted.
        """
        end, reactor = self.start("tcp/server:127.0.0.1:12345", **{"max-connections": 10,
                                                                   "max-connections-per-source": 1})
        port, factory, backlog, _ = reactor.tcpServers[0]
        self.assertEqual(backlog, 1024)
        first = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 50001))
        first.makeConnection(StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.1", 50001)))
        self.assertIsNone(factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 50002)))
        self.assertIsNotNone(factory.buildProtocol(IPv4Address("TCP", "10.0.0.2", 50001)))
        [warning] = [e for e in self.logged if "--{cap}" in e.get("log_format", "")]
        self.assertEqual(warning["cap"], "max-connections-per-source")

    def test_plainOnNetworkWarned(self):
        """
        A plain tcp/server end on a network address is warned of (the fake
        reactor's ports say 0.0.0.0).
        """
        self.start("tcp/server:0.0.0.0:12346")
        [warning] = [e for e in self.logged if "plain" in e.get("log_format", "")]
        self.assertEqual(warning["address"], "0.0.0.0:12346")

    def test_loopbackIsLocal(self):
        """
        Loopback addresses (IPv4 and IPv6) and UNIX sockets are local; any
        other address, the wildcard included, is not.
        """
        from twisted.internet.address import IPv6Address, UNIXAddress

        from uhppoted_tunnel.core.addresses import is_loopback as _loopback

        self.assertTrue(_loopback(IPv4Address("TCP", "127.0.0.1", 1)))
        self.assertTrue(_loopback(IPv6Address("TCP", "::1", 1)))
        self.assertTrue(_loopback(UNIXAddress(b"/run/x.sock")))
        self.assertFalse(_loopback(IPv4Address("TCP", "0.0.0.0", 1)))
        self.assertFalse(_loopback(IPv4Address("TCP", "192.0.2.1", 1)))


class ImpossibleFrameTests(SynchronousTestCase):
    def test_warnedThrottled(self):
        """
        Peers that send impossible frames are each disconnected; the first
        is warned of at once with the likely cause, the rest counted into
        one warning at most every 10 s.
        """
        end, reactor = make("tcp/server:127.0.0.1:12345", IN, RecordingRouter())
        end.startService()
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        hello = bytes.fromhex("160301020001") + bytes(100)
        for n in range(50):
            protocol, transport = peer(end, 50000 + n)
            protocol.dataReceived(hello)
            self.assertTrue(transport.disconnected)
        reactor.advance(10)
        warnings = [e for e in logged if e["log_level"].name == "warn"]
        self.assertEqual(len(warnings), 2)
        self.assertIn("is the peer using TLS?", str(warnings[0]["reason"]))
        self.assertEqual(warnings[1]["count"], 49)
        end.stopService()
        self.assertEqual(reactor.getDelayedCalls(), [])
