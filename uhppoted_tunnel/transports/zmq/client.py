# -*- test-case-name: tests.unit.test_zmq,tests.unit.test_zmq_endpoints,tests.loopback.test_zmq -*-
"""
The C{zmq/client} endpoint: L{ZMQClientEndpoint.connect} dials the
server with one DEALER (L{Dealer}, in a context of its own) per attempt
and fires with the connection once the handshake is done, or fails with
L{DialFailed} saying why. The client end's C{ClientService}
(L{uhppoted_tunnel.link.ends.ClientEnd}) owns the retries: 5 s, 10 s,
... up to C{--max-retry-delay}, and C{--max-retries}.

Link state comes from the socket monitor: the handshake done (the link
is ready), failed (a failed attempt, with the reason) and the link lost.
libzmq's own reconnection is off: libzmq 4.3 never retries after a ZAP
refusal and starts its backoff again after every failed handshake, so a
wrong key would be tried every 5 s for ever. A client introduces itself
with one empty message when it dials (queued until the handshake is
done), which tells the server its routing id
(L{uhppoted_tunnel.transports.zmq.router}). The server's first message
says whether it reads several frames in a message (its handshake's
property, L{uhppoted_tunnel.transports.zmq.wire.FRAMES}); until then,
one frame a message.
"""

import zmq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.transports.zmq.connection import MessageTransport
from uhppoted_tunnel.transports.zmq.sockets import NOBLOCK, RCVMORE, Monitor, SocketReader, Writable, failure_reason
from uhppoted_tunnel.transports.zmq.wire import (
    CONNECT_TIMEOUT,
    BadMessage,
    frames_limit,
    is_loopback,
    make_socket,
    socket_options,
    twisted_address,
    zmq_endpoint,
)


#: The monitor events that end an attempt, or a link.
ENDING = frozenset([zmq.EVENT_CLOSED, zmq.EVENT_DISCONNECTED, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                    zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH])


class DialFailed(Exception):
    """
    An attempt failed before the link was ready; the message says why.
    """


class Dealer:
    """
    One attempt's DEALER, with its context and monitor, read from the
    reactor. It tells its attempt C{event(kind, value)} for each monitor
    event, C{received(message)} for each message and C{malformed(error)}
    for one of several parts.

    :ivar batches: the longest message of several frames the server
        reads, 0 for one frame a message (known from its first message).
    :ivar writable: whether the socket takes a message now (a
        L{Writable}).
    """

    batches = 0

    def __init__(self, reactor, target, options, curve, attempt):
        """
        :param target: C{tcp://HOST:PORT}.
        :param options: the socket options.
        :param curve: C{(server_public, client_public, client_secret)},
            or C{None}.
        :param attempt: the L{Dial} told what happens.
        """
        self.attempt = attempt
        self.context = zmq.Context()
        self.socket = self.monitor = self.reader = self.writable = None
        self._heard = False
        try:
            self._dial(reactor, target, options, curve)
        except zmq.ZMQError:
            self.close()
            raise

    def _dial(self, reactor, target, options, curve):
        socket = self.socket = make_socket(self.context, zmq.DEALER, options)
        socket.setsockopt(zmq.RECONNECT_IVL, -1)
        socket.setsockopt(zmq.CONNECT_TIMEOUT, int(CONNECT_TIMEOUT * 1000))
        if target.startswith("tcp://["):
            socket.setsockopt(zmq.IPV6, 1)
        if curve is not None:
            server, public, secret = curve
            socket.setsockopt(zmq.CURVE_SERVERKEY, server)
            socket.setsockopt(zmq.CURVE_PUBLICKEY, public)
            socket.setsockopt(zmq.CURVE_SECRETKEY, secret)
        self.monitor = Monitor(socket, self.attempt.event, reactor)
        self.monitor.start()
        socket.connect(target)
        # the introduction: queued now, the first message once the
        # handshake is done
        socket.send(b"", zmq.NOBLOCK)
        self.writable = Writable(socket)
        self.reader = SocketReader(socket, self._receive, reactor)
        self.reader.start()

    def _receive(self):
        socket = self.socket
        if self._heard:
            message = socket.recv(NOBLOCK)
        else:
            frame = socket.recv(NOBLOCK, copy=False)
            self._heard = True
            self.batches = frames_limit(frame)
            message = frame.bytes
        if socket.getsockopt(RCVMORE):
            socket.recv_multipart(NOBLOCK)
            self.attempt.malformed(BadMessage("a message of several parts"))
            return
        self.attempt.received(message)

    def send(self, message):
        """
        :return: False if the message was not queued (the high-water mark).
        """
        try:
            self.socket.send(message, NOBLOCK)
        except zmq.ZMQError:
            return False
        finally:
            self.writable.sent(self.reader.sent())
        return True

    def close(self):
        """
        Close the monitor, the socket and the context.
        """
        if self.monitor is not None:
            self.monitor.close()
        if self.reader is not None:
            self.reader.stop()
        if self.socket is not None:
            self.socket.close(0)
        self.context.term()


class DealerTransport(MessageTransport):
    """
    A client's ready link: its attempt's DEALER.
    """

    def __init__(self, dial, peer):
        MessageTransport.__init__(self, peer, twisted_address(peer), IPv4Address("TCP", "0.0.0.0", 0),
                                  dial.endpoint.reactor)
        self.dial = dial

    def sendMessage(self, message):
        return self.dial.dealer.send(message)

    def batching(self):
        return self.dial.dealer.batches

    def writable(self):
        return self.dial.dealer.writable()

    def loseConnection(self):
        # told on the next turn, as a TCP transport does: the caller may
        # be C{ClientService} stopping
        self.dial.hangUp(Failure(ConnectionDone()), self.dial.endpoint.reactor)


class Dial:
    """
    One attempt: the DEALER's monitor says whether it became a link.

    :ivar connecting: fires with the connection, or fails.
    :ivar transport: the ready link, or C{None}.
    :ivar closed: whether the attempt's socket is closed.
    """

    def __init__(self, endpoint, factory):
        self.endpoint = endpoint
        self.factory = factory
        self.transport = None
        self.dealer = None
        self.closed = False
        self.connecting = Deferred(lambda _: self.hangUp(None))

    def start(self):
        endpoint = self.endpoint
        self.dealer = endpoint.dealer(endpoint.reactor, endpoint.target, endpoint.options, endpoint.curve, self)

    def event(self, kind, value):
        if self.closed:
            return
        if self.transport is not None:
            if kind in ENDING:
                self.hangUp(Failure(ConnectionLost()))
        elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self._ready()
        elif kind in ENDING:
            self.hangUp(None)
            self.connecting.errback(Failure(DialFailed(
                failure_reason(kind, value, self.endpoint.curve is not None))))

    def _ready(self):
        transport = self.transport = DealerTransport(self, self.endpoint.peer)
        protocol = self.factory.buildProtocol(transport.getPeer())
        if protocol is None:
            self.hangUp(None)
            self.connecting.errback(Failure(DialFailed("refused by the client end")))
            return
        transport.connect(protocol)
        self.connecting.callback(protocol)

    def received(self, message):
        if self.transport is not None:
            self.transport.messageReceived(message)

    def malformed(self, error):
        if self.transport is not None:
            self.transport.badMessage(error)

    def hangUp(self, reason, clock=None):
        """
        Close this attempt's socket, and its link if it was ready.

        :param reason: why the link ended, if it was ready.
        :param clock: an C{IReactorTime} to tell the connection on its next
            turn, or C{None} to tell it now.
        """
        if self.closed:
            return
        self.closed = True
        if self.dealer is not None:
            self.dealer.close()
        if self.transport is not None:
            self.transport.ended(reason, clock)


@implementer(IStreamClientEndpoint)
class ZMQClientEndpoint:
    """
    Dials a C{zmq/server}: C{connect} fires with the connection once the
    ZeroMQ handshake is done, and fails with L{DialFailed} saying why if
    it is not.
    """

    log = Logger()
    log_tag = "ZMQ"

    def __init__(self, reactor, address, peer, settings, curve, dealer=Dealer):
        """
        :param address: C{(host, port)} to dial (as libzmq wants the host).
        :param peer: the address as the user wrote it, for the log.
        :param settings: the tunnel's options.
        :param curve: C{(server_public, client_public, client_secret)},
            or C{None}.
        :param dealer: makes an attempt's socket, as L{Dealer} does.
        """
        self.reactor = reactor
        self.address = address
        self.target = zmq_endpoint(*address)
        self.peer = peer
        self.options = socket_options(settings)
        self.curve = curve
        self.dealer = dealer
        self._warned = False

    def connect(self, factory):
        if not self._warned:
            self._warned = True
            if self.curve is None and not is_loopback(self.address[0]):
                self.log.warn("{address}: a plain ZMQ link across a network: anyone on the path can read every "
                              "request (card numbers, PINs) and forge replies; use CURVE (--zmq-server-key and "
                              "--zmq-client-key)", address=self.peer)
        dial = Dial(self, factory)
        try:
            dial.start()
        except zmq.ZMQError as e:
            return fail(DialFailed(str(e)))
        return dial.connecting

    def __repr__(self):
        return "<ZMQClientEndpoint {}>".format(self.peer)
