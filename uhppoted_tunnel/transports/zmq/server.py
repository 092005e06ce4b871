# -*- test-case-name: tests.unit.test_zmq_endpoints,tests.loopback.test_zmq -*-
"""
The C{zmq/server} endpoint: L{ZMQServerEndpoint.listen} binds a ROUTER
(L{uhppoted_tunnel.transports.zmq.router}) and gives the listening
factory one connection per peer that introduces itself; a peer that goes
away loses its connection. L{ZMQPort} is the listening port: it knows the
peers by routing id and by descriptor, and applies the connection caps.

ZeroMQ has no way to close one peer of a ROUTER, so a connection over a
cap is refused in its handshake by the ZAP handler, before it is a peer
(its client backs off), and a peer closed by the end has its TCP
connection shut down under libzmq.
"""

import zmq
from twisted.internet.defer import fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.link.limits import ConnectionLimits
from uhppoted_tunnel.transports.zmq.connection import MessageTransport
from uhppoted_tunnel.transports.zmq.router import RouterSocket
from uhppoted_tunnel.transports.zmq.sockets import failure_reason
from uhppoted_tunnel.transports.zmq.wire import is_loopback, socket_options, twisted_address


class PeerTransport(MessageTransport):
    """
    One peer of a ROUTER, by its routing id and its descriptor in libzmq.

    :ivar batches: the longest message of several frames the peer reads,
        0 for one frame a message.
    """

    def __init__(self, port, routing_id, fd, peer, batches=0):
        MessageTransport.__init__(self, peer, twisted_address(peer), port.address, port.clock)
        self.port = port
        self.routing_id = routing_id
        self.fd = fd
        self.batches = batches

    def sendMessage(self, message):
        return self.port.socket.send(self.routing_id, message)

    def batching(self):
        # a ROUTER's POLLOUT says that some peer's queue takes a message:
        # this peer's only while it is the one connection
        return self.batches if self.port.limits.total <= 1 else 0

    def writable(self):
        return self.port.socket.writable()

    def loseConnection(self):
        self.port.closePeer(self)


@implementer(IListeningPort)
class ZMQPort:
    """
    A bound ROUTER and its peers.

    :ivar peers: the peers' transports by routing id.
    :ivar limits: the connections the monitor reports open, against the
        caps (counted from their acceptance, so those in their handshake
        too).
    """

    log = Logger()
    log_tag = "ZMQ"

    def __init__(self, socket, factory, clock, settings, curve):
        """
        :param socket: the L{RouterSocket} (not yet bound).
        :param factory: the listening factory.
        :param clock: an C{IReactorTime}.
        :param settings: the tunnel's options (the caps).
        :param curve: whether the end uses CURVE.
        """
        self.socket = socket
        self.factory = factory
        self.clock = clock
        self.curve = curve
        self.address = None
        self.closing = False
        self.peers = {}
        self._by_fd = {}
        self._accepted = {}
        self._last = {}
        self._open_at_refusal = 0
        self.limits = ConnectionLimits(settings["max-connections"], settings["max-connections-per-source"])
        self._refusals = {kind: Throttle(clock, lambda count, kind=kind: self._warnRefused(kind, count))
                          for kind in ("max-connections", "max-connections-per-source", "key")}
        self._handshakes = Throttle(clock, self._warnHandshakes)

    def getHost(self):
        return self.address

    def startListening(self):
        pass

    def stopListening(self):
        """
        Report the refusals not yet reported, lose every peer and close
        the socket.
        """
        for throttle in list(self._refusals.values()) + [self._handshakes]:
            throttle.flush()
        self.closing = True
        for transport in list(self.peers.values()):
            self._lost(transport, Failure(ConnectionDone()))
        self._by_fd.clear()
        self.socket.close()
        return succeed(None)

    # what the socket tells: the monitor and the ZAP handler

    def event(self, kind, value):
        if kind == zmq.EVENT_ACCEPTED:
            peer = self.socket.peerName(value)
            source = None if peer is None else peer.rsplit(":", 1)[0].strip("[]")
            self._accepted[value] = source
            self.limits.opened(source)
        elif kind == zmq.EVENT_DISCONNECTED:
            if value in self._accepted:
                self.limits.closed(self._accepted.pop(value))
            transport = self._by_fd.pop(value, None)
            if transport is not None:
                self._lost(transport, Failure(ConnectionDone()))
        elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            self._last["handshake"] = failure_reason(kind, value, self.curve, "zmq/client")
            self._handshakes.count()

    def admit(self, address):
        """
        The caps, asked by the ZAP handler for a connection in its
        handshake (the monitor has counted it already).
        """
        self.socket.drainEvents()
        if self.limits.total > self.limits.max_connections:
            return "max-connections"
        if self.limits.sources.get(address, 0) > self.limits.max_per_source:
            return "max-connections-per-source"
        return None

    def refused(self, address, reason):
        kind = reason if reason.startswith("max-connections") else "key"
        self.limits.refused[kind] = self.limits.refused.get(kind, 0) + 1
        self._last[kind] = address
        # the count now (the one refused among them), not when the warning
        # is written: by then it may be gone, and others with it
        self._open_at_refusal = max(0, self.limits.total - 1)
        self._refusals[kind].count()

    def _warnRefused(self, kind, count):
        address = self._last[kind]
        if kind == "key":
            self.log.warn("refused {count} client(s) whose CURVE key is not in --zmq-authorized-keys, the last "
                          "from {address}", count=count, address=address)
        else:
            limit = self.limits.max_connections if kind == "max-connections" else self.limits.max_per_source
            self.log.warn("refused {count} connection(s), the last from {address}: {limit} open connections "
                          "already (--{cap}; {total} open when it was refused)", count=count, address=address,
                          limit=limit, cap=kind, total=self._open_at_refusal)

    def _warnHandshakes(self, count):
        self.log.warn("{count} ZeroMQ handshake(s) with clients failed, the last: {reason}", count=count,
                      reason=self._last["handshake"])

    # what the socket tells: messages

    def introduced(self, routing_id, fd, address, batches=0):
        """
        A client introduced itself: if its descriptor is a connection the
        monitor reported, it is a peer, and the factory's connection is
        connected to it.

        :param address: libzmq's C{Peer-Address} (the host), for the log
            if the descriptor is gone.
        :param batches: the longest message of several frames the client
            reads, 0 for one frame a message.
        """
        if fd not in self._accepted:
            return
        stale = self._by_fd.pop(fd, None)
        if stale is not None:
            self._lost(stale, Failure(ConnectionLost()))
        peer = self.socket.peerName(fd) or "{}:?".format(address)
        transport = PeerTransport(self, routing_id, fd, peer, batches)
        self.peers[routing_id] = transport
        self._by_fd[fd] = transport
        transport.connect(self.factory.buildProtocol(transport.getPeer()))

    def received(self, routing_id, message):
        self.peers[routing_id].messageReceived(message)

    def malformed(self, routing_id, error):
        self.peers[routing_id].badMessage(error)

    def _lost(self, transport, reason):
        if self.peers.get(transport.routing_id) is transport:
            del self.peers[transport.routing_id]
        transport.ended(reason)

    def closePeer(self, transport):
        """
        Close one peer: while the port closes, forget it; otherwise shut
        its TCP connection down under libzmq, which then drops it. The
        descriptor is checked to be that peer's first.
        """
        if transport.disconnected:
            return
        if self.closing:
            self._by_fd.pop(transport.fd, None)
            self._lost(transport, Failure(ConnectionDone()))
            return
        if self.socket.peerName(transport.fd) == transport.peer:
            self.socket.shutDown(transport.fd)


@implementer(IStreamServerEndpoint)
class ZMQServerEndpoint:
    """
    Listens with a ROUTER: each client that introduces itself is a
    connection built by the listening factory.
    """

    log = Logger()
    log_tag = "ZMQ"

    def __init__(self, reactor, address, settings, curve, authorized, router=RouterSocket):
        """
        :param address: C{(host, port)} to bind.
        :param settings: the tunnel's options.
        :param curve: the server's C{(public, secret)} keys, or C{None}.
        :param authorized: the authorised client keys, or C{None}.
        :param router: makes the socket, as L{RouterSocket} does.
        """
        self.reactor = reactor
        self.address = address
        self.settings = settings
        self.curve = curve
        self.authorized = authorized
        self.router = router

    def listen(self, factory):
        socket = self.router(self.reactor, socket_options(self.settings), self.curve, self.authorized)
        port = ZMQPort(socket, factory, self.reactor, self.settings, self.curve is not None)
        host, number = self.address
        try:
            port.address = socket.listen(host, number, port)
        except zmq.ZMQError as e:
            return fail(e)
        self._warn(port.address)
        return succeed(port)

    def _warn(self, address):
        shown = format_address(address)
        if self.curve is None and not is_loopback(address.host):
            self.log.warn("{address} is a plain ZMQ end on a network address: anyone who can reach it can read "
                          "every request (card numbers, PINs) and forge replies; use CURVE (--zmq-server-key and "
                          "--zmq-authorized-keys)", address=shown)
        elif self.curve is not None and self.authorized is None:
            self.log.warn("{address}: any client that knows the server's public key can connect: name the "
                          "authorised clients with --zmq-authorized-keys", address=shown)
