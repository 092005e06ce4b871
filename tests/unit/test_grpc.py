"""
Tests for L{uhppoted_tunnel.transports.grpc.maker}: the connector maker and
the reactor a gRPC half runs under, with no socket and no thread (the
calls themselves: tests.unit.test_grpch2).
"""

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests import certs
from uhppoted_tunnel.app import cli
from uhppoted_tunnel.transports.grpc.maker import GRPCConnection, GRPCConnectorMaker
from uhppoted_tunnel.transports.grpc.messages import FRAME_OVERHEAD
from uhppoted_tunnel.link.ends import ClientEnd, ServerEnd
from uhppoted_tunnel.interfaces import (
    IN,
    OUT,
    ICertificateReloader,
    IConnectorMaker,
    IInEnd,
    IOutEnd,
    ISecureEnd,
)
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter

SETTINGS = {"max-payload": 1024, "max-connections": 512, "max-connections-per-source": 128,
            "max-send-queue": 2 * (64 + FRAME_OVERHEAD), "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
            "udp-timeout": 5.0, "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False,
            "handshake-timeout": 15.0, "ca-cert": "ca.cert", "cert": None, "key": None, "client-auth": False}


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
        tagged GRPC, whose connections are L{GRPCConnection}s; the server
        listens on the tunnel's TCP endpoint under the caps twice (its
        connections, twice --max-connections, and its calls).
        """
        from uhppoted_tunnel.link.limits import LimitedServerEndpoint
        from uhppoted_tunnel.transports.grpc.server import GRPCServerEndpoint

        server = make("grpc/server:127.0.0.1:0", OUT)
        client = make("grpc/client:127.0.0.1:4000", IN)
        self.assertIsInstance(server, ServerEnd)
        self.assertIsInstance(client, ClientEnd)
        self.assertTrue(IOutEnd.providedBy(server) and IInEnd.providedBy(client))
        self.assertEqual((server.log_tag, client.log_tag), ("GRPC", "GRPC"))
        self.assertIs(server.factory.protocol, GRPCConnection)
        self.assertFalse(server.secure)
        calls = server.endpoint
        self.assertIsInstance(calls, LimitedServerEndpoint)
        self.assertIsInstance(calls.endpoint, GRPCServerEndpoint)
        doors = calls.endpoint.endpoint
        self.assertIsInstance(doors, LimitedServerEndpoint)
        self.assertEqual(doors.settings["max-connections"], 2 * SETTINGS["max-connections"])

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
        verifyObject(ICertificateReloader, server.endpoint.endpoint.secure)
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
    A half with a gRPC end runs under the tunnel's own reactor
    (L{uhppoted_tunnel.link.reactor.TurnEndReactor}), as every other
    half: its calls are protocols on it, with no asyncio loop.
    """

    def test_installer(self):
        """
        A gRPC end, in or out, plain or over TLS, request or event, asks for
        no other reactor: the tunnel's own epoll reactor is installed.
        """
        for argv in (["--in", "udp/listen:127.0.0.1:0", "--out", "grpc/server:127.0.0.1:0"],
                     ["--in", "grpcs/client:host:1", "--out", "udp/broadcast:127.0.0.1:60000"],
                     ["--in", "udp/event:127.0.0.1:60001", "--out", "grpc/event/client:host:1"],
                     ["--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0"]):
            self.assertEqual(cli.reactor_installer(cli.parse(argv)), "uhppoted_tunnel.link.reactor", argv)
