# -*- test-case-name: tests.unit.test_zmq,tests.loopback.test_zmq -*-
"""
The ZeroMQ transport: C{zmq/server:ADDR} (a ROUTER socket) and
C{zmq/client:HOST:PORT} (a DEALER), in and out, and C{zmq/event/...} as
for tcp.

ROUTER and DEALER because a ROUTER knows each peer by a routing id and
sends to one peer by naming it: a reply goes back on the connection its
request came by, an out end fans a request out to every peer, and each
peer is its own L{IFrameConnection}, which is what the shared relays
(L{uhppoted_tunnel.core.relays}) expect. (REQ/REP would allow one
request in flight; PUB/SUB has no replies; PAIR one peer and no
reconnection.)

One ZeroMQ message per frame, holding exactly the bytes a TCP stream
carries for it (L{uhppoted_tunnel.core.frames.encode}: length, id, payload). A
message is whole by itself, so the length only cross-checks it; but a
single part means one message per frame (ids as a second part would
double the messages), C{ZMQ_MAXMSGSIZE} = C{--max-payload} + 6 bounds
every message exactly, and the frame checks are the stream's.

Link state comes from the socket monitor. A client end dials with one
DEALER per attempt: the monitor says when the handshake is done (the
link is ready: "connected to"), when it failed (a failed attempt, with
the reason) and when the link is lost; the end redials on the shared
schedule (5 s, 10 s, ... up to C{--max-retry-delay}, C{--max-retries}).
libzmq's own reconnection is off: libzmq 4.3 never retries after a ZAP
refusal and starts its backoff again after every failed handshake, so
a wrong key would be tried every 5 s for ever. A client introduces
itself with one empty message when it dials (queued until the handshake
is done), which tells the server its routing id, as C{ZMQ_ROUTER_NOTIFY}
would: that option is a draft API, absent from pyzmq's builds of libzmq.
A server end knows each peer's connection from the monitor by its
descriptor (C{ACCEPTED}, C{DISCONNECTED}) and the descriptor of the
introduction (C{ZMQ_SRCFD}).

Security: CURVE (C{--zmq-server-key}, C{--zmq-client-key},
C{--zmq-authorized-keys}) with a ZAP handler in the server's context
(L{uhppoted_tunnel.transports.zmq.sockets.ZAPHandler}), which also applies
the connection caps in the handshake: ZeroMQ has no way to close one
peer of a ROUTER, so a connection over a cap is refused before it is a
peer, and its client backs off.
"""

import ipaddress
import socket as sockets

import zmq
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from uhppoted_tunnel.core.addresses import parse_host_port
from uhppoted_tunnel.core.addresses import is_loopback
from uhppoted_tunnel.link.ends import StreamEnd, retry_policy
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.link.framed import KEEPALIVE
from uhppoted_tunnel.transports.zmq.sockets import (
    Monitor,
    SocketReader,
    ZAPHandler,
    failure_reason,
    read_authorized,
    read_key,
)
from uhppoted_tunnel.interfaces import IN, IFrameConnection, IInEnd, IOutEnd
from uhppoted_tunnel.link.lifecycle import CLIENT, SERVER
from uhppoted_tunnel.link.limits import ConnectionLimits
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.core.frames import HEADER, HEADER_SIZE, encode

#: Go's dial timeout.
CONNECT_TIMEOUT = 5.0

#: The ZAP domain of server ends (any non-empty one makes libzmq ask the
#: ZAP handler about plain connections too, for the caps).
ZAP_DOMAIN = b"uhppoted-tunnel"


class BadMessage(Exception):
    """
    A message that is not one frame.
    """

    def __str__(self):
        return "{} (is the peer a uhppoted-tunnel zmq/ end?)".format(self.args[0])


def decode(message, max_payload):
    """
    The frame in one message.

    :param message: the message's one part.
    :param max_payload: the longest payload accepted.
    :return: C{(frame_id, payload)}.
    :raise BadMessage: when the message is not exactly one frame.
    """
    if len(message) < HEADER_SIZE:
        raise BadMessage("a message of {} bytes is shorter than a frame header".format(len(message)))
    length, frame_id = HEADER.unpack_from(message)
    if length != len(message) - HEADER_SIZE:
        raise BadMessage("a message of {} bytes holds a frame of {}".format(len(message), length + HEADER_SIZE))
    if length > max_payload:
        raise BadMessage("frame of {} bytes exceeds the {} byte limit".format(length, max_payload))
    return frame_id, message[HEADER_SIZE:]


def socket_options(settings):
    """
    The options every socket of a zmq/ end gets.

    :return: a list of C{(option, value)}.
    """
    max_payload = settings["max-payload"]
    # what may queue for one peer, each way: at most --max-send-queue bytes
    hwm = max(1, settings["max-send-queue"] // (max_payload + HEADER_SIZE))
    heartbeat = int(KEEPALIVE * 1000)
    dead = int(settings["dead-peer-timeout"] * 1000)
    return [
        (zmq.LINGER, 0),
        (zmq.SNDHWM, hwm),
        (zmq.RCVHWM, hwm),
        (zmq.MAXMSGSIZE, max_payload + HEADER_SIZE),
        (zmq.HANDSHAKE_IVL, int(settings["handshake-timeout"] * 1000)),
        (zmq.HEARTBEAT_IVL, heartbeat),
        (zmq.HEARTBEAT_TIMEOUT, dead),
        (zmq.HEARTBEAT_TTL, dead),
        (zmq.TCP_KEEPALIVE, 1),
        (zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE),
        (zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE),
    ]


def zmq_endpoint(host, port):
    """
    :return: C{tcp://HOST:PORT} (C{*} for port 0, brackets for IPv6).
    """
    return "tcp://{}:{}".format("[{}]".format(host) if ":" in host else host, port or "*")


def parse_endpoint(endpoint):
    """
    :param endpoint: C{tcp://HOST:PORT} as C{ZMQ_LAST_ENDPOINT} says it.
    :return: the Twisted address.
    """
    host, port = parse_host_port(endpoint.split("://", 1)[-1])
    return (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)


def peer_name(fd):
    """
    The peer address of a connection libzmq holds, as C{host:port}, or
    C{None} if the descriptor is no longer a connected socket.
    """
    try:
        sock = sockets.socket(fileno=fd)
    except OSError:
        return None
    try:
        address = sock.getpeername()
    except OSError:
        return None
    finally:
        sock.detach()
    if not isinstance(address, tuple):
        return None
    host, port = address[:2]
    return ("[{}]:{}" if ":" in host else "{}:{}").format(host, port)


@implementer(IFrameConnection)
class ZMQConnection:
    """
    A link to one ZeroMQ peer, for the relay: on a server end, one peer of
    the ROUTER (by routing id); on a client end, the DEALER's one link.

    :ivar peer: the peer's address, C{host:port}.
    """

    transport = None
    closed = False

    def __init__(self, end, peer, send, routing_id=None, fd=None):
        """
        :param end: the end (L{ZMQServerEnd} or L{ZMQClientEnd}).
        :param peer: the peer's address, for the log.
        :param send: the socket's C{send}.
        :param routing_id: the peer's routing id (server ends).
        :param fd: the descriptor of the connection in libzmq (server ends).
        """
        self.end = end
        self.peer = peer
        self._send = send
        self.routing_id = routing_id
        self.fd = fd
        self._waiting = []

    def sendFrame(self, frame_id, payload):
        """
        Send one frame, unless the peer's queue is at its high-water mark
        (it is not reading, or is gone): then drop it and count it.
        """
        if self.closed:
            return False
        try:
            if self.routing_id is not None:
                self._send(self.routing_id, zmq.NOBLOCK | zmq.SNDMORE)
            self._send(encode(frame_id, payload), zmq.NOBLOCK)
        except zmq.ZMQError:
            # EAGAIN at the high-water mark, EHOSTUNREACH for a peer gone
            # (ZMQ_ROUTER_MANDATORY): either way the frame is not sent
            self.end.factory.frameDropped(self)
            return False
        finally:
            self.end.reader.sent()
        return True

    def close(self):
        self.end.closeConnection(self)

    def whenClosed(self):
        if self.closed:
            return succeed(None)
        d = Deferred()
        self._waiting.append(d)
        return d

    def lost(self):
        """
        The link is gone: no more frames, and whoever waits is told.
        """
        self.closed = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)


class _ZMQEnd(StreamEnd):
    """
    What both zmq/ ends share: a context of their own, the socket's
    options, and the stop.
    """

    log = Logger()

    def __init__(self, spec, role, router, reactor, settings, curve):
        """
        :param curve: the CURVE keys, or C{None} (plain).
        """
        StreamEnd.__init__(self, spec, role, router, reactor, settings, "ZMQ")
        self.reactor = reactor
        self.settings = settings
        self.curve = curve
        self.options = socket_options(settings)
        self.context = None
        self.socket = None
        self.reader = None
        self.monitor = None
        self.stopping = False
        self._last = {}

    def _socket(self, kind):
        socket = self.context.socket(kind)
        for option, value in self.options:
            socket.setsockopt(option, value)
        return socket

    def _closeSocket(self):
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        if self.reader is not None:
            self.reader.stop()
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None

    def stopService(self):
        self.stopping = True
        stopping = StreamEnd.stopService(self)
        self._closeSocket()
        self._closeContext()
        return stopping

    def _closeContext(self):
        if self.context is not None:
            self.context.term()
            self.context = None


class ZMQServerEnd(_ZMQEnd):
    """
    C{zmq/server:ADDR}: a ROUTER bound to ADDR; each client that
    introduces itself is a connection.

    :ivar peers: the connections by routing id.
    :ivar limits: the connections the monitor reports open, against the
        caps (counted from their acceptance, so those in their handshake
        too).
    """

    #: up while at least one peer is connected (the metrics and /readyz)
    link_kind = SERVER

    def __init__(self, spec, role, router, reactor, settings, address, curve, authorized):
        """
        :param address: C{(host, port)} to bind.
        :param curve: the server's C{(public, secret)} keys, or C{None}.
        :param authorized: the authorised client keys, or C{None}.
        """
        _ZMQEnd.__init__(self, spec, role, router, reactor, settings, curve)
        self.address = address
        self.authorized = authorized
        self.port = None
        self.zap = None
        self.peers = {}
        self._by_fd = {}
        self._accepted = {}
        self.limits = ConnectionLimits(settings["max-connections"], settings["max-connections-per-source"])
        self.max_payload = settings["max-payload"]
        self._refusals = {kind: Throttle(reactor, lambda count, kind=kind: self._warnRefused(kind, count))
                          for kind in ("max-connections", "max-connections-per-source", "key")}
        self._handshakes = Throttle(reactor, self._warnHandshakes)

    def startService(self):
        _ZMQEnd.startService(self)
        self.context = zmq.Context()
        self.zap = ZAPHandler(self.context, self.reactor, self._admit, self._refused, self.authorized)
        self.zap.start()
        socket = self.socket = self._socket(zmq.ROUTER)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        if self.curve is not None:
            socket.setsockopt(zmq.CURVE_SERVER, 1)
            socket.setsockopt(zmq.CURVE_SECRETKEY, self.curve[1])
        host, port = self.address
        if ":" in host:
            socket.setsockopt(zmq.IPV6, 1)
        self.monitor = Monitor(socket, self._event, self.reactor)
        self.monitor.start()
        try:
            socket.bind(zmq_endpoint(host, port))
        except zmq.ZMQError as e:
            self._closeSocket()
            self.cannotListen(self.spec.address, e)
            return
        self.reader = SocketReader(socket, self._receive, self.reactor)
        self.reader.start()
        address = parse_endpoint(socket.getsockopt_string(zmq.LAST_ENDPOINT))
        self.port = ZMQPort(address)
        shown = self.port.shown
        self.log.info("listening on {address}", address=shown)
        if self.curve is None and not is_loopback(address):
            self.log.warn("{address} is a plain ZMQ end on a network address: anyone who can reach it can read "
                          "every request (card numbers, PINs) and forge replies; use CURVE (--zmq-server-key and "
                          "--zmq-authorized-keys)", address=shown)
        elif self.curve is not None and self.authorized is None:
            self.log.warn("{address}: any client that knows the server's public key can connect: name the "
                          "authorised clients with --zmq-authorized-keys", address=shown)
        self.listening(self.port)

    # the monitor and the ZAP handler

    def _event(self, kind, value):
        if kind == zmq.EVENT_ACCEPTED:
            peer = peer_name(value)
            source = None if peer is None else peer.rsplit(":", 1)[0].strip("[]")
            self._accepted[value] = source
            self.limits.opened(source)
        elif kind == zmq.EVENT_DISCONNECTED:
            if value in self._accepted:
                self.limits.closed(self._accepted.pop(value))
            connection = self._by_fd.pop(value, None)
            if connection is not None:
                self._lost(connection, Failure(ConnectionDone()))
        elif kind in (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL):
            self._last["handshake"] = failure_reason(kind, value, self.curve is not None, "zmq/client")
            self._handshakes.count()

    def _admit(self, address):
        """
        The caps, asked by the ZAP handler for a connection in its
        handshake (the monitor has counted it already).
        """
        self.monitor.drain()
        if self.limits.total > self.limits.max_connections:
            return "max-connections"
        if self.limits.sources.get(address, 0) > self.limits.max_per_source:
            return "max-connections-per-source"
        return None

    def _refused(self, address, reason):
        kind = reason if reason.startswith("max-connections") else "key"
        self.limits.refused[kind] = self.limits.refused.get(kind, 0) + 1
        self._last[kind] = address
        self._refusals[kind].count()

    def _warnRefused(self, kind, count):
        address = self._last[kind]
        if kind == "key":
            self.log.warn("refused {count} client(s) whose CURVE key is not in --zmq-authorized-keys, the last "
                          "from {address}", count=count, address=address)
        else:
            limit = self.limits.max_connections if kind == "max-connections" else self.limits.max_per_source
            self.log.warn("refused {count} connection(s), the last from {address}: {limit} open connections "
                          "already (--{cap}; {total} open)", count=count, address=address, limit=limit, cap=kind,
                          total=self.limits.total - 1)

    def _warnHandshakes(self, count):
        self.log.warn("{count} ZeroMQ handshake(s) with clients failed, the last: {reason}", count=count,
                      reason=self._last["handshake"])

    # messages

    def _receive(self):
        socket = self.socket
        routing_id = socket.recv(zmq.NOBLOCK)
        connection = self.peers.get(routing_id)
        if connection is None:
            # a client's introduction: its descriptor says which
            # connection it is
            message = socket.recv(zmq.NOBLOCK, copy=False)
            if not socket.getsockopt(zmq.RCVMORE):
                self._introduced(routing_id, message)
                return
            message = message.bytes
        else:
            message = socket.recv(zmq.NOBLOCK)
        if socket.getsockopt(zmq.RCVMORE):
            socket.recv_multipart(zmq.NOBLOCK)
            self._bad(connection, BadMessage("a message of several parts"))
            return
        if connection is None:
            return
        try:
            frame_id, payload = decode(message, self.max_payload)
        except BadMessage as e:
            self._bad(connection, e)
            return
        self.factory.relay.frameReceived(connection, frame_id, payload)

    def _introduced(self, routing_id, message):
        if len(message) != 0:
            return
        # the connection's ACCEPTED is reported before its first message
        # can be read
        self.monitor.drain()
        fd = message.get(zmq.SRCFD)
        if fd not in self._accepted:
            return
        stale = self._by_fd.pop(fd, None)
        if stale is not None:
            self._lost(stale, Failure(ConnectionLost()))
        peer = peer_name(fd) or "{}:?".format(message.get("Peer-Address"))
        connection = ZMQConnection(self, peer, self.socket.send, routing_id, fd)
        self.peers[routing_id] = connection
        self._by_fd[fd] = connection
        self.factory.connectionReady(connection)

    def _bad(self, connection, error):
        if connection is None:
            return
        self.factory.frameTooLong(connection, error)
        connection.close()

    def _lost(self, connection, reason):
        self.peers.pop(connection.routing_id, None)
        connection.lost()
        self.factory.connectionClosed(connection, reason)

    def closeConnection(self, connection):
        """
        Close one peer: at stop, forget it; otherwise shut its TCP
        connection down under libzmq, which then drops it (ZeroMQ has no
        call to close one peer of a ROUTER). The descriptor is checked to
        be that peer's first.
        """
        if connection.closed:
            return
        if self.stopping:
            self._by_fd.pop(connection.fd, None)
            self._lost(connection, Failure(ConnectionDone()))
            return
        if peer_name(connection.fd) == connection.peer:
            sock = sockets.socket(fileno=connection.fd)
            try:
                sock.shutdown(sockets.SHUT_RDWR)
            except OSError:
                pass
            finally:
                sock.detach()

    def stopService(self):
        for throttle in list(self._refusals.values()) + [self._handshakes]:
            throttle.flush()
        stopping = _ZMQEnd.stopService(self)
        self.port = None
        return stopping

    def _closeContext(self):
        if self.zap is not None:
            self.zap.stop()
            self.zap = None
        _ZMQEnd._closeContext(self)


class ZMQPort:
    """
    What a server end's C{whenListening} gives: the address bound.
    """

    def __init__(self, address):
        self.address = address
        self.shown = ("[{}]:{}" if ":" in address.host else "{}:{}").format(address.host, address.port)

    def getHost(self):
        return self.address


class ZMQClientEnd(_ZMQEnd):
    """
    C{zmq/client:HOST:PORT}: dials the server with one DEALER per attempt
    and redials on the shared schedule.

    :ivar failures: failed attempts in a row.
    :ivar connection: the ready link, or C{None}.
    """

    #: connecting until the link is ready (the metrics and /readyz)
    link_kind = CLIENT

    def __init__(self, spec, role, router, reactor, settings, address, curve):
        """
        :param address: C{(host, port)} to dial.
        :param curve: C{(server_public, client_public, client_secret)}, or
            C{None}.
        """
        _ZMQEnd.__init__(self, spec, role, router, reactor, settings, curve)
        self.address = address
        self.endpoint = zmq_endpoint(*address)
        self.max_retries = settings["max-retries"]
        self.delay = retry_policy(settings["max-retry-delay"])
        self.max_payload = settings["max-payload"]
        self.failures = 0
        self.connection = None
        self._timer = None

    def startService(self):
        _ZMQEnd.startService(self)
        self.context = zmq.Context()
        host = self.address[0]
        if self.curve is None and not is_loopback(IPv4Address("TCP", host.strip("[]"), 0)):
            self.log.warn("{address}: a plain ZMQ link across a network: anyone on the path can read every "
                          "request (card numbers, PINs) and forge replies; use CURVE (--zmq-server-key and "
                          "--zmq-client-key)", address=self.spec.address)
        self.listening(None)
        self._dial()

    def _dial(self):
        self._timer = None
        socket = self.socket = self._socket(zmq.DEALER)
        socket.setsockopt(zmq.RECONNECT_IVL, -1)
        socket.setsockopt(zmq.CONNECT_TIMEOUT, int(CONNECT_TIMEOUT * 1000))
        if ":" in self.address[0]:
            socket.setsockopt(zmq.IPV6, 1)
        if self.curve is not None:
            server, public, secret = self.curve
            socket.setsockopt(zmq.CURVE_SERVERKEY, server)
            socket.setsockopt(zmq.CURVE_PUBLICKEY, public)
            socket.setsockopt(zmq.CURVE_SECRETKEY, secret)
        self.monitor = Monitor(socket, self._event, self.reactor)
        self.monitor.start()
        socket.connect(self.endpoint)
        # the introduction: queued now, the first message once the
        # handshake is done
        socket.send(b"", zmq.NOBLOCK)
        self.reader = SocketReader(socket, self._receive, self.reactor)
        self.reader.start()

    def _event(self, kind, value):
        if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.failures = 0
            self.connection = ZMQConnection(self, self.spec.address, self.socket.send)
            self.factory.connectionReady(self.connection)
        elif kind == zmq.EVENT_DISCONNECTED and self.connection is not None:
            self._hangUp(Failure(ConnectionLost()))
            delay = self.delay(0)
            self.log.info("reconnecting to {address} in {delay:g}s", address=self.spec.address, delay=delay)
            self._redial(delay)
        elif kind in (zmq.EVENT_CLOSED, zmq.EVENT_DISCONNECTED, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                      zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_AUTH):
            self._hangUp(None)
            self._failed(failure_reason(kind, value, self.curve is not None))

    def _failed(self, reason):
        failures = self.failures = self.failures + 1
        if 0 <= self.max_retries < failures:
            self.failed("could not connect to {address} after {attempts} attempt(s): {reason}",
                        address=self.spec.address, attempts=failures, reason=reason)
            return
        delay = self.delay(failures)
        self.log.warn("could not connect to {address} ({reason}): retrying in {delay:g}s",
                      address=self.spec.address, reason=reason, delay=delay)
        self._redial(delay)

    def _redial(self, delay):
        if not self.stopping:
            self._timer = self.reactor.callLater(delay, self._dial)

    def _hangUp(self, reason):
        """
        Close this attempt's socket, and its link if it was ready.
        """
        connection, self.connection = self.connection, None
        self._closeSocket()
        if connection is not None:
            connection.lost()
            self.factory.connectionClosed(connection, reason)

    def _receive(self):
        socket = self.socket
        message = socket.recv(zmq.NOBLOCK)
        connection = self.connection
        if socket.getsockopt(zmq.RCVMORE):
            socket.recv_multipart(zmq.NOBLOCK)
            self._bad(BadMessage("a message of several parts"))
            return
        try:
            frame_id, payload = decode(message, self.max_payload)
        except BadMessage as e:
            self._bad(e)
            return
        if connection is not None:
            self.factory.relay.frameReceived(connection, frame_id, payload)

    def _bad(self, error):
        if self.connection is not None:
            self.factory.frameTooLong(self.connection, error)
            self.connection.close()

    def closeConnection(self, connection):
        if connection is not self.connection:
            return
        self._hangUp(Failure(ConnectionDone()))
        self._redial(self.delay(0))

    def stopService(self):
        self.stopping = True
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        return _ZMQEnd.stopService(self)


class ZMQConnectorMaker(StreamConnectorMaker):
    """
    Makes C{zmq/server}, C{zmq/client} and their C{zmq/event/} aliases:
    named, in both roles, as the stream kinds are, but made of ZeroMQ
    sockets rather than Twisted endpoints.
    """

    log_tag = "ZMQ"

    def __init__(self):
        StreamConnectorMaker.__init__(self, "zmq")

    def makeEnd(self, spec, role, settings, router, reactor):
        if spec.interface is not None:
            raise ValueError("'{}': zmq/ ends cannot be bound to a network interface".format(spec.text))
        server = spec.prefix.endswith("/server:")
        try:
            host, port = parse_host_port(spec.address, default_host="0.0.0.0" if server else None)
        except ValueError as e:
            raise ValueError("'{}': {}".format(spec.text, e)) from None
        if not server and not port:
            raise ValueError("'{}': a zmq/client needs HOST:PORT with a port".format(spec.text))
        if (settings.get("zmq-server-key") or settings.get("zmq-client-key")) and not zmq.has("curve"):
            raise ValueError("--zmq-server-key: this libzmq was built without CURVE")
        if server:
            end = ZMQServerEnd(spec, role, router, reactor, settings, (_host(host), port), *self.serverKeys(settings))
        else:
            end = ZMQClientEnd(spec, role, router, reactor, settings, (_host(host), port), self.clientKeys(settings))
        alsoProvides(end, IInEnd if role == IN else IOutEnd)
        return end

    @staticmethod
    def serverKeys(settings):
        """
        :return: C{(curve, authorized)} for a server end: its own keys (or
            C{None}) and the authorised client keys (or C{None}).
        """
        path = settings.get("zmq-server-key")
        authorized = settings.get("zmq-authorized-keys")
        if path is None:
            if authorized is not None:
                raise ValueError("--zmq-authorized-keys needs --zmq-server-key (the server's .key_secret file)")
            return None, None
        curve = read_key(path, "--zmq-server-key", secret=True)
        return curve, None if authorized is None else read_authorized(authorized)

    @staticmethod
    def clientKeys(settings):
        """
        :return: C{(server_public, client_public, client_secret)} for a
            client end, or C{None}. Without C{--zmq-client-key} the client
            makes a key pair for the run (encrypted, but refused by a
            server with C{--zmq-authorized-keys}).
        """
        path = settings.get("zmq-server-key")
        client = settings.get("zmq-client-key")
        if path is None:
            if client is not None:
                raise ValueError("--zmq-client-key needs --zmq-server-key (the server's public .key file)")
            return None
        server, _ = read_key(path, "--zmq-server-key", secret=False)
        public, secret = read_key(client, "--zmq-client-key", secret=True) if client else zmq.curve_keypair()
        return server, public, secret


def _host(host):
    """
    A host as libzmq wants it: an IP address, or a name it resolves.
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host
