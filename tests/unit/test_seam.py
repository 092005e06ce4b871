"""
Tests for the declared seam (L{uhppoted_tunnel.interfaces}): what a
connection may use of its end's factory, what an end may use of a
connection, and the optional parts of an end, each provided by what
implements it from its construction.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests import certs
from uhppoted_tunnel.core.spec import ConnectorSpec
from uhppoted_tunnel.core.counts import Tally, tally
from uhppoted_tunnel.core.relays import relay_for
from uhppoted_tunnel.interfaces import (
    IN,
    OUT,
    ICertificateReloader,
    ICertificateWatch,
    IConnectionReporter,
    ICountingEndpoint,
    IEnd,
    IFrameConnection,
    IInEnd,
    IOutEnd,
    ISecureEnd,
    ITally,
)
from uhppoted_tunnel.link.ends import ClientEnd, ServerEnd
from uhppoted_tunnel.link.factory import FrameFactory
from uhppoted_tunnel.link.framed import FramedProtocol
from uhppoted_tunnel.link.limits import limit_endpoint
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter
from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.transports.tls.secure import CertificateWatch, SecureServerEndpoint
from uhppoted_tunnel.transports.grpc.maker import GRPCConnection

SETTINGS = {"max-payload": 1024, "max-send-queue": 4096, "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
            "udp-timeout": 5.0, "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False}


def parse(text):
    prefix, _, address = text.rpartition(":127.0.0.1")
    return ConnectorSpec(text, prefix + ":", None, "127.0.0.1" + address)


class Endpoint:
    def listen(self, factory):
        raise NotImplementedError()

    def connect(self, factory):
        raise NotImplementedError()


class Reloader:
    def __init__(self):
        self.reloaded = 0

    def reloadCertificates(self):
        self.reloaded += 1
        return True


class SeamTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()

    def test_factoryReporter(self):
        """
        An end's factory provides L{IConnectionReporter} and L{ITally}.
        """
        relay = relay_for(IN, SETTINGS, RecordingRouter(), self.reactor, [])
        factory = FrameFactory(relay, SETTINGS, self.reactor, "TCP")
        verifyObject(IConnectionReporter, factory)
        verifyObject(ITally, factory)

    def test_factoryBuildsItsProtocol(self):
        """
        An end's factory builds the protocol it was given, tied to it and
        to its relay.
        """
        relay = relay_for(IN, SETTINGS, RecordingRouter(), self.reactor, [])
        factory = FrameFactory(relay, SETTINGS, self.reactor, "GRPC", protocol=GRPCConnection)
        connection = factory.buildProtocol(None)
        self.assertIsInstance(connection, GRPCConnection)
        self.assertIs(connection.factory, factory)
        self.assertIs(connection.relay, relay)

    def test_connections(self):
        """
        A byte stream's connection and a gRPC call provide
        L{IFrameConnection}.
        """
        protocol = FramedProtocol()
        protocol.transport = StringTransport()
        verifyObject(IFrameConnection, protocol)
        verifyObject(IFrameConnection, GRPCConnection())

    def test_relaysTally(self):
        """
        Every relay provides L{ITally}.
        """
        for events in (False, True):
            settings = dict(SETTINGS, events=events, **{"event-spool": self.mktemp(), "event-window": 10,
                                                        "event-buffer": 10, "event-buffer-age": 10.0})
            for role in (IN, OUT):
                verifyObject(ITally, relay_for(role, settings, RecordingRouter(), self.reactor, []))

    def test_roleByConstruction(self):
        """
        A stream end provides L{IInEnd} or L{IOutEnd} as its role says,
        from its construction.
        """
        spec = parse("tcp/server:127.0.0.1:0")
        inn = ServerEnd(spec, IN, RecordingRouter(), self.reactor, SETTINGS, Endpoint())
        out = ClientEnd(parse("tcp/client:127.0.0.1:1"), OUT, None, self.reactor, SETTINGS, Endpoint())
        verifyObject(IInEnd, inn)
        verifyObject(IOutEnd, out)
        self.assertFalse(IOutEnd.providedBy(inn))
        self.assertFalse(IInEnd.providedBy(out))
        for end in (inn, out):
            verifyObject(IEnd, end)
            verifyObject(ITally, end)
            self.assertFalse(ISecureEnd.providedBy(end))

    def test_secureByConstruction(self):
        """
        A stream end given a certificate reloader provides L{ISecureEnd},
        and reloads through it.
        """
        reloader = Reloader()
        end = ServerEnd(parse("tls/server:127.0.0.1:0"), IN, RecordingRouter(), self.reactor, SETTINGS, Endpoint(),
                        reloader=reloader)
        self.assertTrue(ISecureEnd.providedBy(end))
        self.assertTrue(end.reloadCertificates())
        self.assertEqual(reloader.reloaded, 1)


class OptionalPartsTests(SynchronousTestCase):
    """
    The parts an end may have are declared by what provides them.
    """

    def test_limitedEndpointCounts(self):
        """
        A capped endpoint provides L{ICountingEndpoint}, and reports what
        its caps refused.
        """
        endpoint = limit_endpoint(Endpoint(), {"max-connections": 1}, Clock(), "TCP")
        verifyObject(ICountingEndpoint, endpoint)
        self.assertEqual(dict(endpoint.refused), {})

    def test_secureEndpoint(self):
        """
        A TLS endpoint provides L{ICountingEndpoint} and
        L{ICertificateReloader}.
        """
        files = certs.make(self.mktemp())
        settings = {"ca-cert": files["ca"][0], "cert": files["server"][0], "key": files["server"][1],
                    "client-auth": False}
        endpoint = SecureServerEndpoint(Endpoint(), lambda: tls.server_options(settings), Clock(), 15)
        verifyObject(ICountingEndpoint, endpoint)
        verifyObject(ICertificateReloader, endpoint)

    def test_watch(self):
        """
        A certificate watch provides L{ICertificateWatch}.
        """
        verifyObject(ICertificateWatch, CertificateWatch([], Clock(), "TLS"))

    def test_tally(self):
        """
        An end that counts nothing has an empty tally; one that provides
        L{ITally} adds to it.
        """
        self.assertEqual(tally(object()).dropped, Tally().dropped)
        reactor = FakeReactor()
        end = ServerEnd(parse("tcp/server:127.0.0.1:0"), IN, RecordingRouter(), reactor, SETTINGS,
                        limit_endpoint(Endpoint(), {"max-connections": 1}, reactor, "TCP"))
        self.assertIsInstance(tally(end), Tally)
