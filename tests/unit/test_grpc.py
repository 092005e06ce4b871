"""
Tests for L{uhppoted_tunnel.transports.grpc.maker}: a gRPC call as a stream
end's connection (on a fake stream transport and a fake clock), and the
connector maker, with no socket and no thread.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests import certs
from uhppoted_tunnel.app import cli
from tests.unit.test_grpcloop import FakeLoop, FakePump
from uhppoted_tunnel.transports.grpc.maker import GRPCConnection, GRPCConnectorMaker
from uhppoted_tunnel.transports.grpc.loop import FRAME_OVERHEAD, NotAFrame, StallTimeout, TooManyFrames
from uhppoted_tunnel.transports.grpc.transport import StreamTransport
from uhppoted_tunnel.link.ends import ClientEnd, ServerEnd
from uhppoted_tunnel.link.factory import FrameFactory
from uhppoted_tunnel.interfaces import (
    IN,
    OUT,
    ICertificateReloader,
    IConnectorMaker,
    IFrameConnection,
    IInEnd,
    IOutEnd,
    ISecureEnd,
)
from uhppoted_tunnel.link.limits import limit_connections
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter, packet
from uhppoted_tunnel.core.frames import FrameTooLong

SETTINGS = {"max-payload": 1024, "max-connections": 512, "max-connections-per-source": 128,
            "max-send-queue": 2 * (64 + FRAME_OVERHEAD), "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
            "udp-timeout": 5.0, "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False,
            "handshake-timeout": 15.0, "ca-cert": "ca.cert", "cert": None, "key": None, "client-auth": False}
REQUEST = packet(0x94, 405419896)


class RecordingRelay:
    def __init__(self):
        self.events = []

    def connected(self, connection):
        self.events.append(("connected", connection))

    def disconnected(self, connection):
        self.events.append(("disconnected", connection))

    def frameReceived(self, connection, frame_id, payload):
        self.events.append(("frame", connection, frame_id, payload))


class ConnectionTests(SynchronousTestCase):
    """
    L{GRPCConnection} is to the relay what a TCP connection is.
    """

    def setUp(self):
        self.clock = FakeReactor()
        self.relay = RecordingRelay()
        self.factory = FrameFactory(self.relay, SETTINGS, self.clock, "GRPC", protocol=GRPCConnection)
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def connect(self, factory=None):
        """
        Connect a call as an endpoint does: its factory builds the
        connection, which is connected to the call's transport.
        """
        self.loop = FakeLoop()
        self.pump = FakePump()
        transport = StreamTransport(self.pump, self.loop, IPv4Address("TCP", "127.0.0.1", 40000),
                                    IPv4Address("TCP", "127.0.0.1", 9000), SETTINGS["max-send-queue"], self.clock,
                                    lambda f, *args: f(*args))
        protocol = (factory or self.factory).buildProtocol(transport.peer_address)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        return transport

    def messages(self):
        return [event["log_format"].format(**event) for event in self.log]

    def test_interface(self):
        """
        A connection provides L{IFrameConnection}.
        """
        self.connect()
        verifyObject(IFrameConnection, self.factory.connections[0])

    def test_ready(self):
        """
        Once connected, the connection is one of the factory's, the relay
        is told, the log says so with the peer, and every frame of the
        call reaches the relay with the connection.
        """
        transport = self.connect()
        [connection] = self.factory.connections
        self.assertEqual(connection.peer, "127.0.0.1:40000")
        transport.arrived(7, REQUEST)
        self.assertEqual(self.relay.events, [("connected", connection), ("frame", connection, 7, REQUEST)])
        self.assertIn("connected to 127.0.0.1:40000", self.messages())

    def test_send(self):
        """
        Frames go to the loop's pump; past C{--max-send-queue} they are
        dropped and the factory warns once, naming the limit.
        """
        self.connect()
        [connection] = self.factory.connections
        self.assertTrue(connection.sendFrame(1, REQUEST))
        self.assertTrue(connection.sendFrame(2, REQUEST))
        self.assertFalse(connection.sendFrame(3, REQUEST))
        self.assertEqual(list(self.pump.outgoing), [(1, REQUEST), (2, REQUEST)])
        self.assertEqual(self.factory.dropped, 1)
        self.assertTrue(any("dropped 1 frame(s) for peers that are not reading" in m for m in self.messages()))

    def test_closed(self):
        """
        The end of the call closes the connection: the relay is told, the
        log says so, C{whenClosed} fires, and a frame sent after it is
        dropped without a warning.
        """
        transport = self.connect()
        [connection] = self.factory.connections
        closed = connection.whenClosed()
        transport.ended(ConnectionDone())
        self.successResultOf(closed)
        self.successResultOf(connection.whenClosed())
        self.assertEqual(self.factory.connections, [])
        self.assertEqual(self.relay.events[-1], ("disconnected", connection))
        self.assertIn("connection to 127.0.0.1:40000 closed", self.messages())
        self.assertFalse(connection.sendFrame(1, REQUEST))
        self.assertEqual(self.factory.dropped, 0)

    def test_impossibleFrames(self):
        """
        A call ended by a payload over the limit, or by a message that is
        not a Frame, is warned of as an impossible frame, with why.
        """
        self.connect().ended(FrameTooLong(2000, 1024, b"\x16\x03\x01"))
        self.connect().ended(NotAFrame("Wire format was corrupt"))
        self.clock.advance(10)
        messages = self.messages()
        self.assertTrue(any("frame of 2000 bytes exceeds the 1024 byte limit" in m for m in messages), messages)
        self.assertTrue(any("the message is not a uhppoted.tunnel.Frame (Wire format was corrupt)" in m
                            for m in messages), messages)

    def test_tooManyFrames(self):
        """
        A call ended by a message of more frames than a C{Frames} may
        carry is warned of as impossible frames, counted and throttled
        with the others: one warning for several calls.
        """
        for _ in range(3):
            self.connect().ended(TooManyFrames(65))
        self.clock.advance(10)
        warnings = [m for m in self.messages() if "impossible frames" in m or "closing connection" in m]
        self.assertEqual(len(warnings), 2, warnings)
        self.assertIn("a message of 65 frames, more than the 64 a uhppoted.tunnel.Frames may carry", warnings[-1])
        self.assertIn("closed 2 connections that sent impossible frames", warnings[-1])

    def test_stalled(self):
        """
        A call ended because the peer read nothing is warned of with
        C{--stall-timeout}.
        """
        self.connect().ended(StallTimeout(30.0))
        self.assertTrue(any("read nothing sent to them for 30s" in m for m in self.messages()))

    def test_close(self):
        """
        Closing the connection asks the pump to finish.
        """
        self.connect()
        self.factory.connections[0].close()
        self.assertEqual(self.loop.calls, [(self.pump.finish, ())])

    def test_caps(self):
        """
        Under the connection caps' wrapper the connection still finds its
        call; the caps count it while it is open, and refuse one over
        them.
        """
        limited = limit_connections(self.factory, dict(SETTINGS, **{"max-connections": 1}), self.clock, "GRPC")
        transport = self.connect(limited)
        self.assertEqual(limited.limits.total, 1)
        self.assertIsNone(limited.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40001)))
        transport.arrived(1, REQUEST)
        self.assertEqual(self.relay.events[-1][2:], (1, REQUEST))
        transport.ended(Failure(ConnectionDone()).value)
        self.assertEqual(limited.limits.total, 0)


def make(text, role, **settings):
    maker = GRPCConnectorMaker(text.split("/")[0])
    _, spec = parse(text, {prefix: maker for prefix in maker.prefixes})
    return maker.makeEnd(spec, role, dict(SETTINGS, **settings), RecordingRouter(), FakeReactor())


class MakerTests(SynchronousTestCase):
    """
    L{GRPCConnectorMaker} makes the stream ends over gRPC endpoints.
    """

    def test_interface(self):
        """
        Both makers provide L{IConnectorMaker}, with tcp's forms: server
        and client, event forms, in and out.
        """
        for kind in ("grpc", "grpcs"):
            maker = GRPCConnectorMaker(kind)
            verifyObject(IConnectorMaker, maker)
            self.assertEqual(maker.prefixes, tuple(kind + suffix for suffix in (
                "/server:", "/client:", "/event/server:", "/event/client:")))
            self.assertEqual([maker.relaysEvents(p) for p in maker.prefixes], [False, False, True, True])
            self.assertEqual(maker.roles(maker.prefixes[0]), {IN, OUT})

    def test_ends(self):
        """
        A server end is a C{ServerEnd} and a client end a C{ClientEnd},
        tagged GRPC, whose connections are L{GRPCConnection}s; building
        them starts nothing (no loop thread).
        """
        from uhppoted_tunnel.transports.grpc.link import LOOP

        server = make("grpc/server:127.0.0.1:0", OUT)
        client = make("grpc/client:127.0.0.1:4000", IN)
        self.assertIsInstance(server, ServerEnd)
        self.assertIsInstance(client, ClientEnd)
        self.assertTrue(IOutEnd.providedBy(server) and IInEnd.providedBy(client))
        self.assertEqual((server.log_tag, client.log_tag), ("GRPC", "GRPC"))
        self.assertIs(server.factory.protocol, GRPCConnection)
        self.assertFalse(server.secure)
        self.assertFalse(LOOP.running)

    def test_asyncioReactor(self):
        """
        Under the asyncio reactor the streams run on its own loop, with no
        thread; under any other, on the shared loop's thread.
        """
        from twisted.internet.asyncioreactor import AsyncioSelectorReactor

        from uhppoted_tunnel.transports.grpc.link import LOOP, loops_for
        from uhppoted_tunnel.transports.grpc.loop import ReactorLoop

        reactor = AsyncioSelectorReactor.__new__(AsyncioSelectorReactor)
        reactor._asyncioEventloop = loop = object()
        chosen = loops_for(reactor)
        self.assertIsInstance(chosen, ReactorLoop)
        self.assertIs(chosen.loop, loop)
        self.assertIs(loops_for(FakeReactor()), LOOP)

    def test_badAddresses(self):
        """
        A gRPC end takes HOST:PORT (a server an IP address), with no
        interface binding: anything else is a one-line error naming the
        connector.
        """
        for text, role, fragment in (
            ("grpc/server:unix:/run/x.sock", OUT, "takes HOST:PORT"),
            ("grpc/server:localhost:4000", OUT, "listen on an IP address"),
            ("grpc/client:127.0.0.1:0", IN, "expected HOST:PORT"),
            ("grpc/client::eth0:127.0.0.1:4000", IN, "cannot be bound to an interface"),
        ):
            e = self.assertRaises(ValueError, make, text, role)
            self.assertIn(text.split(":")[0], str(e))
            self.assertIn(fragment, str(e))

    def test_tls(self):
        """
        A grpcs/ end reads its certificates when it is built (a missing
        file is a one-line error naming it), watches them for expiry, and
        reloads them on SIGHUP.
        """
        files = certs.make(self.mktemp())
        tls = {"ca-cert": files["ca"][0], "cert": files["server"][0], "key": files["server"][1]}
        server = make("grpcs/server:127.0.0.1:0", OUT, **tls)
        self.assertTrue(server.secure)
        self.assertEqual(server.log_tag, "GRPCS")
        self.assertTrue(server.reloadCertificates())
        client = make("grpcs/client:127.0.0.1:4000", IN, **dict(tls, cert=files["client"][0],
                                                                  key=files["client"][1]))
        self.assertTrue(client.reloadCertificates())
        e = self.assertRaises(ValueError, make, "grpcs/server:127.0.0.1:0", OUT, **dict(tls, cert="missing.cert"))
        self.assertIn("--cert 'missing.cert'", str(e))

    def test_secureInterfaces(self):
        """
        A grpcs/ end provides L{ISecureEnd}, reloading through its
        certificates, which provide L{ICertificateReloader}.
        """
        files = certs.make(self.mktemp())
        tls = {"ca-cert": files["ca"][0], "cert": files["server"][0], "key": files["server"][1]}
        server = make("grpcs/server:127.0.0.1:0", OUT, **tls)
        verifyObject(ISecureEnd, server)
        verifyObject(ICertificateReloader, server.endpoint.endpoint.certificates)
        self.assertFalse(ISecureEnd.providedBy(make("grpc/server:127.0.0.1:0", OUT)))

    def test_freebind(self):
        """
        --freebind does not apply to a gRPC server end: a warning says so.
        """
        log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        make("grpc/server:127.0.0.1:0", OUT, freebind=True)
        self.assertTrue(any("--freebind does not apply to grpc/server ends" in e["log_format"].format(**e)
                            for e in log))


class ReactorChoiceTests(SynchronousTestCase):
    """
    A half with a gRPC end runs under Twisted's asyncio reactor unless a
    reactor was chosen (L{uhppoted_tunnel.app.cli.install_reactor}).
    """

    def test_wantsAsyncio(self):
        """
        A gRPC end, in or out, plain or over TLS, request or event, asks
        for the asyncio reactor; a half without one does not.
        """
        for argv, wanted in ((["--in", "udp/listen:127.0.0.1:0", "--out", "grpc/server:127.0.0.1:0"], True),
                             (["--in", "grpcs/client:host:1", "--out", "udp/broadcast:127.0.0.1:60000"], True),
                             (["--in", "udp/event:127.0.0.1:60001", "--out", "grpc/event/client:host:1"], True),
                             (["--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0"], False),
                             (["--in", "udp/listen:127.0.0.1:0", "--out", "ws/server:127.0.0.1:0"], False)):
            self.assertEqual(cli.wants_asyncio(cli.parse(argv)), wanted, argv)

    def test_installer(self):
        """
        A half with a gRPC end is installed Twisted's asyncio reactor; any
        other the tunnel's own epoll reactor.
        """
        for argv, wanted in ((["--in", "udp/listen:127.0.0.1:0", "--out", "grpc/server:127.0.0.1:0"],
                              "twisted.internet.asyncioreactor"),
                             (["--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0"],
                              "uhppoted_tunnel.link.reactor")):
            self.assertEqual(cli.reactor_installer(cli.parse(argv)), wanted, argv)
