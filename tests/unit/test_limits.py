# -*- test-case-name: tests.unit.test_limits -*-
"""
Tests for L{uhppoted_tunnel.link.limits}: connection caps, with fake
transports and a fake clock.
"""

from twisted.internet.address import IPv4Address, UNIXAddress
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from zope.interface import implementer
from zope.interface.verify import verifyObject

from uhppoted_tunnel.core.frames import encode
from uhppoted_tunnel.core.relays import relay_for
from uhppoted_tunnel.interfaces import IN, IProvable
from uhppoted_tunnel.link import limits
from uhppoted_tunnel.link.factory import FrameFactory
from uhppoted_tunnel.observe.web import ConnectionTracker, QuietSite
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter
from uhppoted_tunnel.transports.tls.handshake import HandshakeGateFactory

SETTINGS = {"max-payload": 1024, "max-send-queue": 4096, "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
            "udp-timeout": 5.0, "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False,
            "max-connections": 3, "max-connections-per-source": 2}


def peer(host, port=40000):
    return IPv4Address("TCP", host, port)


class Recorder(Protocol):
    def __init__(self):
        self.lost = False

    def connectionLost(self, reason):
        self.lost = True


class LimitConnectionsTests(SynchronousTestCase):
    """
    L{limits.limit_connections} refuses connections over either cap at once
    and releases a place when a connection closes.
    """

    def setUp(self):
        self.clock = Clock()
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.inner = Factory.forProtocol(Recorder)
        self.factory = limits.limit_connections(
            self.inner, {"max-connections": 3, "max-connections-per-source": 2}, self.clock, "HTTP")

    def connect(self, address):
        protocol = self.factory.buildProtocol(address)
        if protocol is not None:
            protocol.makeConnection(StringTransport(peerAddress=address))
        return protocol

    def warnings(self):
        return [event for event in self.observer if event["log_level"].name == "warn"]

    def test_interface(self):
        """
        The result is a protocol factory.
        """
        verifyObject(IProtocolFactory, self.factory)

    def test_perSource(self):
        """
        A source at its cap is refused (C{None}: Twisted closes the socket)
        while another source is admitted.
        """
        self.assertIsNotNone(self.connect(peer("10.0.0.1")))
        self.assertIsNotNone(self.connect(peer("10.0.0.1")))
        self.assertIsNone(self.connect(peer("10.0.0.1", 40001)))
        self.assertIsNotNone(self.connect(peer("10.0.0.2")))
        self.assertEqual(self.factory.limits.sources, {"10.0.0.1": 2, "10.0.0.2": 1})
        self.assertEqual(self.factory.limits.refused["max-connections-per-source"], 1)
        [warning] = self.warnings()
        self.assertEqual((warning["cap"], warning["peer"], warning["limit"]),
                         ("max-connections-per-source", "10.0.0.1:40001", 2))

    def test_total(self):
        """
        Over the end's cap, any source is refused, and the warning names
        the cap, its flag and the peer.
        """
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            self.connect(peer(host))
        self.assertIsNone(self.connect(peer("10.0.0.4", 5555)))
        [warning] = self.warnings()
        self.assertEqual((warning["cap"], warning["peer"], warning["limit"], warning["total"]),
                         ("max-connections", "10.0.0.4:5555", 3, 3))
        self.assertIn("--max-connections;", warning["log_format"].format(**warning))

    def test_released(self):
        """
        A closed connection frees its place, in total and for its source.
        """
        first = self.connect(peer("10.0.0.1"))
        wrapped = first.wrappedProtocol
        self.connect(peer("10.0.0.1"))
        first.connectionLost(None)
        self.assertTrue(wrapped.lost)
        self.assertEqual((self.factory.limits.total, self.factory.limits.sources), (1, {"10.0.0.1": 1}))
        self.assertIsNotNone(self.connect(peer("10.0.0.1")))
        for protocol in list(self.factory.protocols):
            protocol.connectionLost(None)
        self.assertEqual((self.factory.limits.total, self.factory.limits.sources), (0, {}))

    def test_throttled(self):
        """
        Many refusals make one warning at once, then one with the count
        when the interval is up.
        """
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            self.connect(peer(host))
        for n in range(100):
            self.connect(peer("10.0.0.9", n))
        self.assertEqual([w["count"] for w in self.warnings()], [1])
        self.clock.advance(10)
        self.assertEqual([w["count"] for w in self.warnings()], [1, 99])
        self.assertEqual(self.warnings()[-1]["peer"], "10.0.0.9:99")
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flush(self):
        """
        L{limits.LimitingFactory.flush} (the end stopping) reports what is
        pending at once and leaves no timer.
        """
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            self.connect(peer(host))
        for n in range(5):
            self.connect(peer("10.0.0.9", n))
        self.factory.flush()
        self.assertEqual([w["count"] for w in self.warnings()], [1, 4])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_evictOldestUnproven(self):
        """
        With the end full, a new connection makes room by closing the
        oldest connection that has not proved itself and is past its
        probation, from a source that holds more than the newcomer's would
        (a warning says so, throttled); proven ones stay.
        """
        first = self.connect(peer("10.0.0.2", 1))
        second = self.connect(peer("10.0.0.2", 2))
        third = self.connect(peer("10.0.0.3"))
        limits.prove(first)
        self.clock.advance(limits.PROBATION)
        newcomer = self.connect(peer("10.0.0.4", 5555))
        self.assertIsNotNone(newcomer)
        self.assertFalse(first.transport.disconnecting)
        self.assertTrue(second.transport.disconnecting)
        self.assertFalse(third.transport.disconnecting)
        self.assertEqual(self.factory.limits.total, 3)
        self.assertEqual(self.factory.limits.evicted, 1)
        second.connectionLost(None)
        self.assertEqual((self.factory.limits.total, self.factory.limits.sources),
                         (3, {"10.0.0.2": 1, "10.0.0.3": 1, "10.0.0.4": 1}))
        [warning] = self.warnings()
        self.assertEqual((warning["count"], warning["peer"]), (1, "10.0.0.2:2"))
        self.assertIn("--max-connections", warning["log_format"])

    def test_floodCannotChurn(self):
        """
        A newcomer is given room only from a source that holds more than
        the newcomer's would: the flood's own newcomers are refused (it
        cannot make room for itself by reopening), while a source with
        fewer connections finds room.
        """
        self.factory = limits.limit_connections(
            self.inner, {"max-connections": 4, "max-connections-per-source": 4}, self.clock, "HTTP")
        for host in ("10.0.0.1", "10.0.0.1", "10.0.0.1", "10.0.0.2"):
            self.connect(peer(host))
        self.clock.advance(limits.PROBATION)
        self.assertIsNone(self.connect(peer("10.0.0.1")))
        self.assertEqual(self.factory.limits.evicted, 0)
        self.assertIsNotNone(self.connect(peer("10.0.0.2")))
        self.assertEqual(self.factory.limits.sources, {"10.0.0.1": 2, "10.0.0.2": 2})
        self.assertIsNone(self.connect(peer("10.0.0.2")))
        self.assertIsNotNone(self.connect(peer("10.0.0.3")))
        self.assertEqual(self.factory.limits.evicted, 2)

    def test_probation(self):
        """
        A connection still in its probation is not closed for a newcomer:
        the newcomer is refused, so a flood cannot close a real peer before
        it has had time to prove itself.
        """
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            self.connect(peer(host))
        self.clock.advance(limits.PROBATION / 2)
        self.assertIsNone(self.connect(peer("10.0.0.4")))

    def test_probationSetting(self):
        """
        The probation is C{--connection-probation}.
        """
        factory = limits.limit_connections(self.inner, {"connection-probation": 30.0}, self.clock, "TLS")
        self.assertEqual(factory.probation, 30.0)
        self.assertEqual(self.factory.probation, limits.PROBATION)

    def test_allProven(self):
        """
        An end full of proven connections refuses a newcomer.
        """
        for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
            limits.prove(self.connect(peer(host)))
        self.clock.advance(limits.PROBATION)
        self.assertIsNone(self.connect(peer("10.0.0.4")))

    def test_proveThroughWrappers(self):
        """
        L{limits.prove} finds the counted connection under the transports
        wrapped around it (TLS), from the protocol at the top.
        """
        counted = self.connect(peer("10.0.0.1"))
        self.assertTrue(limits.prove(counted.wrappedProtocol.transport))
        self.assertFalse(limits.prove(StringTransport()))
        self.assertEqual(self.factory.unproven, {})

    def test_notPerSourceForUNIX(self):
        """
        A peer with no IP address (a UNIX socket) counts only towards the
        end's cap.
        """
        for _ in range(3):
            self.assertIsNotNone(self.connect(UNIXAddress(None)))
        self.assertEqual(self.factory.limits.sources, {})
        self.assertIsNone(self.connect(UNIXAddress(None)))

    def test_innerRefuses(self):
        """
        When the wrapped factory refuses, nothing is counted.
        """
        self.inner.buildProtocol = lambda address: None
        self.assertIsNone(self.connect(peer("10.0.0.1")))
        self.assertEqual(self.factory.limits.total, 0)

    def test_defaults(self):
        """
        Missing settings take the defaults.
        """
        factory = limits.limit_connections(self.inner, {}, self.clock, "TCP")
        self.assertEqual((factory.limits.max_connections, factory.limits.max_per_source),
                         (limits.DEFAULT_MAX_CONNECTIONS, limits.DEFAULT_MAX_CONNECTIONS_PER_SOURCE))


class LimitEndpointTests(SynchronousTestCase):
    """
    L{limits.limit_endpoint} listens with a capped factory.
    """

    def test_listen(self):
        listened = []

        stopped = []

        class Port:
            def getHost(self):
                return "host"

            def stopListening(self):
                stopped.append(True)

        class Endpoint:
            def listen(self, factory):
                listened.append(factory)
                return succeed(Port())

        endpoint = limits.limit_endpoint(Endpoint(), {"max-connections": 1}, Clock(), "HTTP")
        verifyObject(IStreamServerEndpoint, endpoint)
        inner = Factory.forProtocol(Protocol)
        port = self.successResultOf(endpoint.listen(inner))
        self.assertEqual(port.getHost(), "host")
        port.stopListening()
        self.assertEqual(stopped, [True])
        [factory] = listened
        self.assertIs(factory, endpoint.factory)
        self.assertIs(factory.wrappedFactory, inner)
        self.assertEqual(factory.limits.max_connections, 1)


class SettingsTests(SynchronousTestCase):
    """
    Each limit has a flag, a TOML key and a default.
    """

    HTTP = ["--in", "http/127.0.0.1:8080", "--out", "udp/broadcast:127.0.0.1:60000"]

    def setUp(self):
        from uhppoted_tunnel.app import config

        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def parse(self, *args):
        from uhppoted_tunnel.app.options import Options

        options = Options()
        options.parseOptions(self.HTTP + list(args))
        return options

    def test_defaults(self):
        """
        Without flags or file, the defaults apply.
        """
        options = self.parse()
        self.assertEqual([options[key] for key in ("max-connections", "max-connections-per-source",
                                                   "http-request-timeout", "handshake-timeout")],
                         [512, 128, 10.0, 15.0])

    def test_flags(self):
        """
        The flags take whole numbers and a duration.
        """
        options = self.parse("--max-connections", "9", "--max-connections-per-source", "3",
                             "--http-request-timeout", "2500ms", "--connection-probation", "2s")
        self.assertEqual([options[key] for key in ("max-connections", "max-connections-per-source",
                                                   "http-request-timeout", "connection-probation")],
                         [9, 3, 2.5, 2.0])

    def test_toml(self):
        """
        The TOML keys mirror the flags.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[host]\nmax-connections = 7\nmax-connections-per-source = 2\nhttp-request-timeout = "4s"\n'
                    'connection-probation = "3s"\n')
        options = self.parse("--config", path + "#host")
        self.assertEqual([options[key] for key in ("max-connections", "max-connections-per-source",
                                                   "http-request-timeout", "connection-probation")],
                         [7, 2, 4.0, 3.0])

    def test_bad(self):
        """
        Zero or a non-number is a usage error naming the flag.
        """
        from twisted.python import usage

        for args in (["--max-connections", "0"], ["--max-connections-per-source", "x"],
                     ["--http-request-timeout", "0s"], ["--connection-probation", "0s"]):
            e = self.assertRaises(usage.UsageError, self.parse, *args)
            self.assertIn(args[0], str(e))


class ProvenByFrameTests(SynchronousTestCase):
    def test_validFrame(self):
        """
        A stream connection that sends a valid frame has proved itself; one
        that sent only part of one has not.
        """
        reactor = FakeReactor()
        relay = relay_for(IN, SETTINGS, RecordingRouter(), reactor, [])
        factory = limits.limit_connections(FrameFactory(relay, SETTINGS, reactor, "TCP"), SETTINGS, reactor, "TCP")
        counted = [factory.buildProtocol(peer("10.0.0.{}".format(n))) for n in (1, 2)]
        for protocol in counted:
            verifyObject(IProvable, protocol)
            protocol.makeConnection(StringTransport())
        frame = encode(1, b"x" * 64)
        counted[0].dataReceived(frame)
        counted[1].dataReceived(frame[:5])
        self.assertEqual(list(factory.unproven), [counted[1]])


class ProvenByRequestTests(SynchronousTestCase):
    def test_wholeRequest(self):
        """
        An HTTP connection that sends a whole request has proved itself;
        one still dripping its head has not.
        """
        clock = Clock()
        site = ConnectionTracker(QuietSite(Resource()), clock, 10.0)
        factory = limits.limit_connections(site, SETTINGS, clock, "HTTP")
        counted = [factory.buildProtocol(peer("10.0.0.{}".format(n))) for n in (1, 2)]
        for protocol in counted:
            protocol.makeConnection(StringTransport())
        counted[0].dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        counted[1].dataReceived(b"GET / HTTP/1.1\r\nHo")
        self.assertEqual(list(factory.unproven), [counted[1]])
        for protocol in counted:
            protocol.connectionLost(None)


@implementer(IProvable)
class SecureTransport(StringTransport):
    """
    A TLS transport as the handshake gate sees it, counted under the caps.
    """

    def __init__(self, certificate):
        StringTransport.__init__(self, peerAddress=peer("10.0.0.1"))
        self.certificate = certificate
        self.proved = False

    def getPeerCertificate(self):
        return self.certificate

    def proven(self):
        self.proved = True


class ProvenByHandshakeTests(SynchronousTestCase):
    def test_clientCertificate(self):
        """
        A TLS handshake in which the client presented a certificate (which
        TLS verified) proves the connection; one without does not.
        """
        clock = Clock()
        gates = HandshakeGateFactory(Factory.forProtocol(Recorder), clock, 10.0, "TLS", "is the peer using TLS?")
        for certificate, proved in ((object(), True), (None, False)):
            gate = gates.buildProtocol(peer("10.0.0.1"))
            transport = SecureTransport(certificate)
            gate.makeConnection(transport)
            gate.handshakeCompleted()
            self.assertEqual(transport.proved, proved)
        self.assertEqual(clock.getDelayedCalls(), [])
