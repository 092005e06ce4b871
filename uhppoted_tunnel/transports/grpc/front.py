# -*- test-case-name: tests.unit.test_grpcfront -*-
"""
The front door of a gRPC server end: grpcio caps connections itself
(C{grpc.max_allowed_incoming_connections}, not per source, and silently),
so a flood of idle TCP connections from one address could fill it and
lock every real client out. Instead the end's public port is a Twisted
listener under the tunnel's own caps (C{--max-connections},
C{--max-connections-per-source}, the oldest unproven connection closed to
make room, all warned of: L{uhppoted_tunnel.link.limits}), and each
connection it accepts is relayed, bytes as they are (TLS included), to
grpc's server listening on a loopback port of its own.

L{Peers} remembers, by the loopback port each relayed connection comes
from, the real peer it carries, so that the calls grpc sees are logged
and capped by who really made them; a call on a connection proves it
(it is not closed to make room for a newcomer).
"""

from functools import partial

from twisted.internet.protocol import ClientFactory, Factory, Protocol
from twisted.logger import Logger

from uhppoted_tunnel.link.limits import prove
from uhppoted_tunnel.link.writes import tcp_connection, write_now

#: Where grpc's own server listens behind the front door.
BACKEND_HOST = "127.0.0.1"

#: Connections the front door takes for each call the end takes
#: (C{--max-connections}); each costs three descriptors (the connection,
#: its relay, and grpc's side of the relay).
FRONT_CONNECTIONS = 2


class Peers:
    """
    The real peers of the relayed connections, by the loopback port each
    comes to grpc from.
    """

    def __init__(self):
        self._by_port = {}

    def add(self, port, inbound):
        self._by_port[port] = inbound

    def remove(self, port):
        self._by_port.pop(port, None)

    def __len__(self):
        return len(self._by_port)

    def peer(self, address):
        """
        :param address: the peer of a call as grpc sees it (a Twisted
            address on the loopback).
        :return: the real peer's address, or C{address} if it is not a
            relayed connection.
        """
        inbound = self._by_port.get(getattr(address, "port", None))
        if inbound is None or address.host != BACKEND_HOST:
            return address
        return inbound.transport.getPeer()

    def called(self, address):
        """
        A call was made on the connection grpc sees from C{address}: its
        peer has proved itself.
        """
        inbound = self._by_port.get(getattr(address, "port", None))
        if inbound is not None and inbound.transport is not None:
            prove(inbound.transport)


def _no_delay(transport):
    """
    Nagle off, as grpc has it on its own sockets: a small message relayed
    must not wait for the acknowledgement of the one before.
    """
    if hasattr(transport, "setTcpNoDelay"):
        transport.setTcpNoDelay(True)


def _sender(transport):
    """
    How to write to C{transport}: sent in the same reactor turn when the
    kernel takes it (L{write_now}, for a TCP connection), rather than
    queued for the next turn that finds the socket writable (two
    C{epoll_ctl} and a turn more per chunk relayed); what the kernel does
    not take is queued as C{transport.write} queues it, so that the flow
    control between the two sides holds.
    """
    connection = tcp_connection(transport)
    if connection is None:
        return transport.write
    return partial(write_now, connection)


class _Relayed(Protocol):
    """
    One side of a relayed connection: what arrives is written to the
    other, with flow control both ways, and at once (no Nagle, no wait for
    a turn).

    :ivar send: writes to the other side's transport.
    """

    other = None
    send = None

    def dataReceived(self, data):
        self.send(data)

    def connectionLost(self, reason):
        if self.other is not None:
            self.other.transport.loseConnection()
            self.other = None


class _Outbound(_Relayed):
    """
    The connection to grpc's server, for one inbound connection.
    """

    port = None

    def connectionMade(self):
        inbound = self.factory.inbound
        if inbound.other is False:
            # the inbound connection closed while this one was dialled
            self.transport.loseConnection()
            return
        self.other = inbound
        inbound.other = self
        self.send = _sender(inbound.transport)
        inbound.send = _sender(self.transport)
        _no_delay(self.transport)
        _no_delay(inbound.transport)
        self.port = self.transport.getHost().port
        self.factory.peers.add(self.port, inbound)
        self.transport.registerProducer(inbound.transport, True)
        inbound.transport.registerProducer(self.transport, True)
        inbound.transport.resumeProducing()

    def connectionLost(self, reason):
        if self.port is not None:
            self.factory.peers.remove(self.port)
        _Relayed.connectionLost(self, reason)


class _OutboundFactory(ClientFactory):
    protocol = _Outbound
    noisy = False

    def __init__(self, inbound, peers):
        self.inbound = inbound
        self.peers = peers

    def clientConnectionFailed(self, connector, reason):
        self.inbound.transport.loseConnection()


class _Inbound(_Relayed):
    """
    A connection to the end's public port: nothing is read from it until
    its relay to grpc's server is made.
    """

    def connectionMade(self):
        self.transport.pauseProducing()
        front = self.factory
        front.reactor.connectTCP(front.backend[0], front.backend[1], _OutboundFactory(self, front.peers),
                                 bindAddress=(BACKEND_HOST, 0))

    def connectionLost(self, reason):
        other = self.other
        self.other = False
        if other:
            other.transport.loseConnection()


class FrontDoor(Factory):
    """
    The factory of the public port's connections, each relayed to grpc's
    server at C{backend}.
    """

    protocol = _Inbound
    noisy = False
    log = Logger()

    def __init__(self, reactor, backend, peers):
        """
        :param reactor: an C{IReactorTCP}.
        :param backend: grpc's server, C{(host, port)}.
        :param peers: the L{Peers} to keep.
        """
        self.reactor = reactor
        self.backend = backend
        self.peers = peers
