# -*- test-case-name: tests.unit.test_grpch2,tests.unit.test_grpchostile -*-
"""
A gRPC server end's HTTP/2 protocol and a client end's, or a bare C{h2}
peer standing for a hostile one, joined by L{twisted.test.iosim} on a fake
clock: the fixtures of the gRPC transport's unit tests.
"""

from types import SimpleNamespace

from h2.config import H2Configuration
from h2.connection import H2Connection
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.test import iosim

from uhppoted_tunnel.link.factory import FrameFactory
from uhppoted_tunnel.transports.grpc.call import GRPCConnection
from uhppoted_tunnel.transports.grpc.client import Attempt
from uhppoted_tunnel.transports.grpc.messages import FRAME_OVERHEAD
from uhppoted_tunnel.transports.grpc.server import ServerFactory
from uhppoted_tunnel.transports.grpc.throttled import Warnings

SETTINGS = {"max-payload": 1024, "max-connections": 512, "max-connections-per-source": 128,
            "max-send-queue": 4 * (64 + FRAME_OVERHEAD), "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
            "handshake-timeout": 15.0}

SERVER = IPv4Address("TCP", "127.0.0.1", 4000)
CLIENT = IPv4Address("TCP", "127.0.0.1", 50000)


class RecordingRelay:
    """
    A relay that records what it is told.
    """

    def __init__(self):
        self.events = []

    def connected(self, connection):
        self.events.append(("connected", connection))

    def disconnected(self, connection):
        self.events.append(("disconnected", connection))

    def frameReceived(self, connection, frame_id, payload):
        self.events.append(("frame", frame_id, payload))

    def frames(self):
        return [event[1:] for event in self.events if event[0] == "frame"]


def server_side(clock, settings, wrapped=None):
    """
    :return: C{(factory, relay, servers)}: the end's factory and relay,
        and the L{ServerFactory} whose calls it builds (C{wrapped} instead,
        if given).
    """
    relay = RecordingRelay()
    factory = FrameFactory(relay, settings, clock, "GRPC", protocol=GRPCConnection)
    servers = ServerFactory(wrapped or factory, settings, clock, Warnings(clock, "GRPC"))
    return factory, relay, servers


class Pair:
    """
    A server end's connection and a client end's attempt, joined.

    :ivar ready: the attempt's Deferred (the client end's connection, or
        why it failed).
    """

    def __init__(self, settings=None, wrapped=None, server_class=None):
        self.clock = clock = Clock()
        self.settings = settings = dict(SETTINGS, **(settings or {}))
        self.server_factory, self.server_relay, self.servers = server_side(clock, settings, wrapped)
        self.client_relay = RecordingRelay()
        self.client_factory = FrameFactory(self.client_relay, settings, clock, "GRPC", protocol=GRPCConnection)
        endpoint = SimpleNamespace(settings=settings, clock=clock, warnings=Warnings(clock, "GRPC"),
                                   address="127.0.0.1:4000", secure=None, host="127.0.0.1", port=4000, timeout=5.0)
        self.ready = Deferred()
        self.outcome = []
        self.ready.addBoth(self.outcome.append)
        self.attempt = Attempt(self.client_factory, endpoint, self.ready)
        self.server = server_class(self.servers) if server_class else self.servers.buildProtocol(CLIENT)
        self.client = self.attempt.buildProtocol(SERVER)
        self.server_transport = iosim.FakeTransport(self.server, True, SERVER, CLIENT)
        self.client_transport = iosim.FakeTransport(self.client, False, CLIENT, SERVER)
        self.pump = iosim.connect(self.server, self.server_transport, self.client, self.client_transport,
                                  greet=False, clock=clock)

    def flush(self):
        self.pump.flush()

    def connections(self):
        """
        :return: the server end's and the client end's connection.
        """
        return self.server_factory.connections[0], self.client_factory.connections[0]


class RawPeer(Protocol):
    """
    A bare C{h2} client, standing for any peer: what it sends is the test's.

    :ivar events: the h2 events it received.
    """

    def __init__(self):
        self.conn = H2Connection(H2Configuration(client_side=True, header_encoding=None))
        self.events = []
        self.lost = []

    def connectionMade(self):
        self.conn.initiate_connection()
        self.send()

    def send(self):
        data = self.conn.data_to_send()
        if data:
            self.transport.write(data)

    def dataReceived(self, data):
        try:
            self.events.extend(self.conn.receive_data(data))
        except Exception as e:
            self.events.append(e)
        self.send()

    def connectionLost(self, reason):
        self.lost.append(reason)

    def call(self, path=b"/uhppoted.tunnel.Tunnel/Relays", content_type=b"application/grpc", method=b"POST"):
        """
        Open a call.

        :return: its stream id.
        """
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream_id, [(b":method", method), (b":scheme", b"http"), (b":path", path),
                                           (b":authority", b"127.0.0.1:4000"), (b"content-type", content_type),
                                           (b"te", b"trailers")])
        self.send()
        return stream_id

    def of(self, kind):
        """
        :return: the events received of class name C{kind}.
        """
        return [event for event in self.events if type(event).__name__ == kind]


class Raw:
    """
    A server end's connection and a L{RawPeer}, joined.
    """

    def __init__(self, settings=None, wrapped=None):
        self.clock = clock = Clock()
        self.settings = settings = dict(SETTINGS, **(settings or {}))
        self.server_factory, self.server_relay, self.servers = server_side(clock, settings, wrapped)
        self.server = self.servers.buildProtocol(CLIENT)
        self.peer = RawPeer()
        self.server_transport = iosim.FakeTransport(self.server, True, SERVER, CLIENT)
        self.peer_transport = iosim.FakeTransport(self.peer, False, CLIENT, SERVER)
        self.pump = iosim.connect(self.server, self.server_transport, self.peer, self.peer_transport, greet=False,
                                  clock=clock)

    def flush(self):
        self.peer.send()
        self.pump.flush()
