"""
Tests for L{uhppoted_tunnel.transports.grpc.front}: the front door of a
gRPC server end, with a memory reactor.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.tcp import Connection
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.link import limits
from uhppoted_tunnel.transports.grpc.front import BACKEND_HOST, FrontDoor, Peers
from tests.unit.test_writes import FakeSocket

SETTINGS = {"max-connections": 3, "max-connections-per-source": 2}


class TCPTransport(StringTransport):
    """
    A transport that says whether Nagle is off, as a TCP one does.
    """

    noDelay = False

    def setTcpNoDelay(self, enabled):
        self.noDelay = enabled


class RelayConnection(Connection):
    """
    A TCP connection on a fake socket, from the loopback port grpc sees.
    """

    def getHost(self):
        return IPv4Address("TCP", BACKEND_HOST, 41000)


def peer(host, port=40000):
    return IPv4Address("TCP", host, port)


class FrontDoorTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.peers = Peers()
        self.front = limits.limit_connections(FrontDoor(self.reactor, (BACKEND_HOST, 5000), self.peers), SETTINGS,
                                              Clock(), "GRPC")

    def accept(self, address):
        inbound = self.front.buildProtocol(address)
        if inbound is not None:
            inbound.makeConnection(StringTransport(peerAddress=address))
        return inbound

    def relay(self, inbound, local_port):
        """
        Complete the relay the inbound connection dialled.
        """
        host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
        self.assertEqual((host, port, bind), (BACKEND_HOST, 5000, (BACKEND_HOST, 0)))
        outbound = factory.buildProtocol(None)
        outbound.makeConnection(StringTransport(hostAddress=IPv4Address("TCP", BACKEND_HOST, local_port)))
        return outbound

    def test_relayed(self):
        """
        Each accepted connection is relayed to grpc's server both ways, and
        a call grpc sees from the relay's port is the real peer's.
        """
        inbound = self.accept(peer("10.0.0.1"))
        self.assertEqual(inbound.transport.producerState, "paused")
        outbound = self.relay(inbound, 41000)
        self.assertEqual(inbound.transport.producerState, "producing")
        inbound.dataReceived(b"PRI * HTTP/2.0")
        self.assertEqual(outbound.transport.value(), b"PRI * HTTP/2.0")
        outbound.dataReceived(b"settings")
        self.assertEqual(inbound.transport.value(), b"settings")
        self.assertEqual(self.peers.peer(peer(BACKEND_HOST, 41000)), peer("10.0.0.1"))
        self.assertEqual(self.peers.peer(peer(BACKEND_HOST, 41001)), peer(BACKEND_HOST, 41001))
        outbound.connectionLost(None)
        self.assertTrue(inbound.transport.disconnecting)
        self.assertEqual(len(self.peers), 0)

    def test_callProves(self):
        """
        A call on a relayed connection proves it.
        """
        inbound = self.accept(peer("10.0.0.1"))
        self.relay(inbound, 41000)
        self.assertEqual(len(self.front.unproven), 1)
        self.peers.called(peer(BACKEND_HOST, 41000))
        self.assertEqual(self.front.unproven, {})

    def test_capsAtTheDoor(self):
        """
        The tunnel's caps apply at the door: per source, before grpc.
        """
        self.accept(peer("10.0.0.1"))
        self.accept(peer("10.0.0.1"))
        self.assertIsNone(self.accept(peer("10.0.0.1")))

    def test_closedWhileDialling(self):
        """
        An inbound connection that closes before its relay is made closes
        the relay once it is.
        """
        inbound = self.accept(peer("10.0.0.1"))
        inbound.connectionLost(None)
        outbound = self.relay(inbound, 41000)
        self.assertTrue(outbound.transport.disconnecting)
        self.assertEqual(len(self.peers), 0)

    def test_noDelay(self):
        """
        Both sides of a relay send at once (Nagle off, as grpc has it on
        its own sockets), from when the relay is made.
        """
        address = peer("10.0.0.1")
        inbound = self.front.buildProtocol(address)
        inbound.makeConnection(TCPTransport(peerAddress=address))
        self.assertFalse(inbound.transport.noDelay)
        host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
        outbound = factory.buildProtocol(None)
        outbound.makeConnection(TCPTransport(hostAddress=IPv4Address("TCP", BACKEND_HOST, 41000)))
        self.assertEqual((inbound.transport.noDelay, outbound.transport.noDelay), (True, True))

    def test_sentInTheTurn(self):
        """
        What arrives on one side of a relay goes to the other's socket in
        the same reactor turn, without asking the reactor to watch that
        socket for writability; what the kernel does not take is queued,
        in order, and sent when the socket is writable.
        """
        inbound = self.accept(peer("10.0.0.1"))
        host, port, factory, timeout, bind = self.reactor.tcpClients[-1]
        socket = FakeSocket()
        outbound = factory.buildProtocol(None)
        connection = RelayConnection(socket, outbound, self.reactor)
        connection.connected = True
        outbound.makeConnection(connection)
        inbound.dataReceived(b"PRI * HTTP/2.0")
        self.assertEqual(socket.sent, [b"PRI * HTTP/2.0"])
        self.assertEqual(self.reactor.getWriters(), [])
        socket.room = 4
        inbound.dataReceived(b"settings")
        inbound.dataReceived(b"headers")
        self.assertEqual(socket.sent[1:], [b"sett"])
        self.assertEqual(self.reactor.getWriters(), [connection])
        socket.room = 100
        connection.doWrite()
        self.assertEqual(b"".join(socket.sent), b"PRI * HTTP/2.0settingsheaders")
