# -*- test-case-name: tests.unit.test_zmq_endpoints -*-
"""
The zmq/ endpoints under the stream ends every transport shares, with
fake sockets: a client end's C{ClientService} owns the retries, and a
server end gets one connection per peer of its ROUTER.
"""

import zmq
from twisted.internet.address import IPv4Address
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint, ITransport
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.core.frames import encode
from uhppoted_tunnel.interfaces import IN, IFrameConnection
from uhppoted_tunnel.link.ends import ClientEnd, ServerEnd
from uhppoted_tunnel.link.lifecycle import CLIENT, SERVER
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter, packet
from uhppoted_tunnel.transports.zmq.client import ZMQClientEndpoint
from uhppoted_tunnel.transports.zmq.connection import ZMQConnection
from uhppoted_tunnel.transports.zmq.maker import ZMQConnectorMaker
from uhppoted_tunnel.transports.zmq.server import ZMQServerEndpoint
from uhppoted_tunnel.transports.zmq.wire import BadMessage

SETTINGS = {"max-payload": 1024, "max-connections": 4, "max-connections-per-source": 4, "max-send-queue": 262144,
            "stall-timeout": 30.0, "dead-peer-timeout": 60.0, "handshake-timeout": 15.0, "udp-timeout": 5.0,
            "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False}
REQUEST = packet(0x94, 405419896)


class FakeRouter:
    """
    A server's ROUTER, as L{uhppoted_tunnel.transports.zmq.router.RouterSocket}
    is made: it binds nothing, records what is sent and shut down, and
    knows the peer of each descriptor the test names.
    """

    def __init__(self, reactor, options, curve, authorized):
        self.sent = []
        self.shut = []
        self.closed = False
        self.names = {}
        self.port = None

    def listen(self, host, port, listener):
        self.port = listener
        return IPv4Address("TCP", host, port or 45678)

    def send(self, routing_id, message):
        self.sent.append((routing_id, message))
        return True

    def writable(self):
        return True

    def drainEvents(self):
        pass

    def peerName(self, fd):
        return self.names.get(fd)

    def shutDown(self, fd):
        self.shut.append(fd)

    def close(self):
        self.closed = True


class FakeDealer:
    """
    One client attempt's socket, as
    L{uhppoted_tunnel.transports.zmq.client.Dealer} is made.
    """

    made = None
    batches = False

    def __init__(self, reactor, target, options, curve, attempt):
        self.attempt = attempt
        self.sent = []
        self.closed = False
        self.made.append((reactor.seconds(), self))

    def send(self, message):
        self.sent.append(message)
        return True

    def writable(self):
        return True

    def close(self):
        self.closed = True


def make(text, settings, router=FakeRouter, dealers=None):
    """
    An in end made by the zmq maker with fake sockets, and its router.
    """
    dealer = type("Dealer", (FakeDealer,), {"made": dealers if dealers is not None else []})
    maker = ZMQConnectorMaker(router=router, dealer=dealer)
    _, spec = parse(text, {prefix: maker for prefix in maker.prefixes})
    tunnel = RecordingRouter()
    return maker.makeEnd(spec, IN, dict(SETTINGS, **settings), tunnel, FakeReactor()), tunnel


class ClientScheduleTests(SynchronousTestCase):
    """
    A zmq/client end is the shared C{ClientEnd}: its C{ClientService}
    redials on Go's schedule and --max-retries ends it.
    """

    def test_schedule(self):
        """
        Attempts that fail are retried 5 s, 10 s, 20 s, 40 s after each
        other; past --max-retries (4) failed attempts in a row the end fails
        naming the count, and once stopped dials no more.
        """
        dialled = []
        end, _ = make("zmq/client:127.0.0.1:5555", {"max-retries": 4}, dealers=dialled)
        self.assertIsInstance(end, ClientEnd)
        failures = []
        end.whenFailed().addCallback(failures.append)
        reactor = end.reactor
        end.startService()
        for attempt in range(5):
            if attempt:
                [call] = reactor.getDelayedCalls()
                reactor.advance(call.getTime() - reactor.seconds())
            dialled[-1][1].attempt.event(zmq.EVENT_CLOSED, 12)
            self.assertTrue(dialled[-1][1].closed, "an attempt's socket is closed when it fails")
        self.assertEqual([when for when, _ in dialled], [0, 5, 15, 35, 75])
        self.assertEqual(len(failures), 1)
        self.assertIn("could not connect to 127.0.0.1:5555 after 5 attempt(s): the connection failed",
                      failures[0])
        self.successResultOf(end.stopService())
        reactor.advance(600)
        self.assertEqual(len(dialled), 5)
        self.assertEqual(reactor.getDelayedCalls(), [])

    def test_stopWhileConnected(self):
        """
        Stopping a client end with a ready link closes the link and its
        attempt's socket, and leaves nothing scheduled.
        """
        dialled = []
        end, _ = make("zmq/client:127.0.0.1:5555", {}, dealers=dialled)
        end.startService()
        dialled[-1][1].attempt.event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
        [connection] = end.connections
        stopping = end.stopService()
        end.reactor.advance(0)
        self.successResultOf(stopping)
        self.assertTrue(dialled[-1][1].closed)
        self.assertEqual(end.connections, [])
        self.assertEqual(end.reactor.getDelayedCalls(), [])

    def test_badMessage(self):
        """
        A message that is not one frame is warned of and closes the link,
        which is redialled after 5 s.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        dialled = []
        end, _ = make("zmq/client:127.0.0.1:5555", {}, dealers=dialled)
        end.startService()
        self.addCleanup(end.stopService)
        dialled[-1][1].attempt.event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
        dialled[-1][1].attempt.received(b"\x00\x40\x00\x00\x00\x01 not 64 bytes")
        end.reactor.advance(0)
        self.assertEqual(end.connections, [])
        self.assertTrue(any("holds a frame of" in str(e.get("reason")) for e in logged))
        end.reactor.advance(5)
        self.assertEqual(len(dialled), 2)


class ServerPeerTests(SynchronousTestCase):
    """
    A zmq/server end is the shared C{ServerEnd}: its endpoint gives each
    peer that introduces itself a connection of its own.
    """

    def setUp(self):
        self.end, self.tunnel = make("zmq/server:127.0.0.1:0", {})
        self.assertIsInstance(self.end, ServerEnd)
        self.end.startService()
        self.port = self.end.port
        self.socket = self.port.socket
        self.socket.names.update({11: "127.0.0.1:4001", 12: "127.0.0.1:4002"})

    def tearDown(self):
        self.successResultOf(self.end.stopService())

    def introduce(self, routing_id, fd):
        self.port.event(zmq.EVENT_ACCEPTED, fd)
        self.port.introduced(routing_id, fd, "127.0.0.1")

    def test_peers(self):
        """
        Two peers are two connections, each with its own address; a request
        from one is answered to it alone, by its routing id.
        """
        self.introduce(b"a", 11)
        self.introduce(b"b", 12)
        first, second = self.end.connections
        self.assertEqual((first.peer, second.peer), ("127.0.0.1:4001", "127.0.0.1:4002"))
        self.assertIsNot(first, second)
        self.port.received(b"b", encode(7, REQUEST))
        [(payload, reply)] = self.tunnel.requests
        self.assertEqual(payload, REQUEST)
        reply(b"reply")
        self.assertEqual(self.socket.sent, [(b"b", encode(7, b"reply"))])

    def test_peerGone(self):
        """
        A peer whose connection libzmq reports closed loses its connection;
        the other keeps its own.
        """
        self.introduce(b"a", 11)
        self.introduce(b"b", 12)
        first, second = self.end.connections
        closed = first.whenClosed()
        self.port.event(zmq.EVENT_DISCONNECTED, 11)
        self.successResultOf(closed)
        self.assertEqual(self.end.connections, [second])
        self.assertEqual(list(self.port.peers), [b"b"])
        self.assertFalse(first.sendFrame(1, REQUEST))

    def test_notIntroduced(self):
        """
        An introduction on a descriptor the monitor never reported is no
        peer.
        """
        self.port.introduced(b"a", 11, "127.0.0.1")
        self.assertEqual(self.end.connections, [])

    def test_badMessage(self):
        """
        A peer that sends a message of several parts is warned of and its
        TCP connection shut down under libzmq; it is lost when libzmq says
        so.
        """
        self.introduce(b"a", 11)
        self.port.malformed(b"a", BadMessage("a message of several parts"))
        self.assertEqual(self.socket.shut, [11])
        self.port.event(zmq.EVENT_DISCONNECTED, 11)
        self.assertEqual(self.end.connections, [])

    def test_stop(self):
        """
        Stopping the end loses every peer and closes the socket.
        """
        self.introduce(b"a", 11)
        self.introduce(b"b", 12)
        self.successResultOf(self.end.stopService())
        self.assertEqual(self.end.connections, [])
        self.assertTrue(self.socket.closed)
        self.end.startService()
        self.socket = self.end.port.socket


class InterfaceTests(SynchronousTestCase):
    """
    Each part provides what the shared ends and relays use.
    """

    def test_interfaces(self):
        """
        The endpoints, the port, the connections and their transports
        provide their interfaces; the ends are the shared ends, with their
        link kinds.
        """
        server, _ = make("zmq/server:127.0.0.1:0", {})
        dialled = []
        client, _ = make("zmq/client:127.0.0.1:5555", {}, dealers=dialled)
        self.assertIsInstance(server.endpoint, ZMQServerEndpoint)
        self.assertIsInstance(client.endpoint, ZMQClientEndpoint)
        verifyObject(IStreamServerEndpoint, server.endpoint)
        verifyObject(IStreamClientEndpoint, client.endpoint)
        self.assertEqual((server.link_kind, client.link_kind), (SERVER, CLIENT))
        server.startService()
        client.startService()
        verifyObject(IListeningPort, server.port)
        server.port.socket.names[11] = "127.0.0.1:4001"
        server.port.event(zmq.EVENT_ACCEPTED, 11)
        server.port.introduced(b"a", 11, "127.0.0.1")
        dialled[-1][1].attempt.event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
        for end in (server, client):
            [connection] = end.connections
            self.assertIsInstance(connection, ZMQConnection)
            verifyObject(IFrameConnection, connection)
            verifyObject(ITransport, connection.transport)
        self.successResultOf(server.stopService())
        stopping = client.stopService()
        client.reactor.advance(0)
        self.successResultOf(stopping)
