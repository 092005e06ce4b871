# -*- test-case-name: tests.loopback.test_zmq -*-
"""
The ROUTER socket of a C{zmq/server} end, with its context, its ZAP
handler and its monitor, read from the reactor
(L{uhppoted_tunnel.transports.zmq.sockets}). What it sees goes to its
port (L{uhppoted_tunnel.transports.zmq.server.ZMQPort}), which knows the
peers; this module only speaks to libzmq.

A client introduces itself with one empty message when it dials, which
tells the server its routing id, as C{ZMQ_ROUTER_NOTIFY} would (that
option is a draft API, absent from pyzmq's builds of libzmq). The port
knows each peer's connection from the monitor by its descriptor
(C{ACCEPTED}, C{DISCONNECTED}) and the descriptor of the introduction
(C{ZMQ_SRCFD}), and how long a message of several frames the peer reads
(0: one frame a message) by the introduction's property
(L{uhppoted_tunnel.transports.zmq.wire.FRAMES}).
"""

import zmq

from uhppoted_tunnel.transports.zmq.sockets import (
    NOBLOCK,
    NOBLOCK_SNDMORE,
    RCVMORE,
    Monitor,
    SocketReader,
    Writable,
    ZAPHandler,
)
from uhppoted_tunnel.transports.zmq.wire import (
    ZAP_DOMAIN,
    BadMessage,
    frames_limit,
    make_socket,
    parse_endpoint,
    peer_name,
    shut_down,
    zmq_endpoint,
)


class RouterSocket:
    """
    A server end's ROUTER, bound by L{listen} and closed by L{close}.

    Its port is told C{event(kind, value)} for each monitor event,
    C{admit(address)} and C{refused(address, reason)} by the ZAP handler,
    C{introduced(routing_id, fd, address, batches)} for an introduction,
    C{received(routing_id, message)} for each message of a known peer
    (those in its C{peers}) and C{malformed(routing_id, error)} for one of
    several parts.
    """

    def __init__(self, reactor, options, curve, authorized):
        """
        :param reactor: the reactor.
        :param options: the socket options
            (L{uhppoted_tunnel.transports.zmq.wire.socket_options}).
        :param curve: the server's C{(public, secret)} keys, or C{None}.
        :param authorized: the authorised client keys, or C{None}.
        """
        self.reactor = reactor
        self.options = options
        self.curve = curve
        self.authorized = authorized
        self.port = None
        self.context = None
        self.zap = None
        self.socket = None
        self.monitor = None
        self.reader = None
        self.writable = None

    def listen(self, host, port, listener):
        """
        Bind a ROUTER to C{(host, port)} (port 0 for any).

        :param listener: the port told what happens.
        :return: the Twisted address bound.
        :raise zmq.ZMQError: if it cannot bind (everything is closed).
        """
        self.port = listener
        self.context = zmq.Context()
        self.zap = ZAPHandler(self.context, self.reactor, listener.admit, listener.refused, self.authorized)
        self.zap.start()
        socket = self.socket = make_socket(self.context, zmq.ROUTER, self.options)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)
        socket.setsockopt(zmq.ZAP_DOMAIN, ZAP_DOMAIN)
        if self.curve is not None:
            socket.setsockopt(zmq.CURVE_SERVER, 1)
            socket.setsockopt(zmq.CURVE_SECRETKEY, self.curve[1])
        if ":" in host:
            socket.setsockopt(zmq.IPV6, 1)
        self.monitor = Monitor(socket, listener.event, self.reactor)
        self.monitor.start()
        try:
            socket.bind(zmq_endpoint(host, port))
        except zmq.ZMQError:
            self.close()
            raise
        self.writable = Writable(socket)
        self.reader = SocketReader(socket, self._receive, self.reactor)
        self.reader.start()
        return parse_endpoint(socket.getsockopt_string(zmq.LAST_ENDPOINT))

    def drainEvents(self):
        """
        Take in every monitor event already reported.
        """
        self.monitor.drain()

    def send(self, routing_id, message):
        """
        Send one message to one peer.

        :return: False if it was not queued: the peer's queue is at its
            high-water mark (EAGAIN), or the peer is gone (EHOSTUNREACH,
            C{ZMQ_ROUTER_MANDATORY}).
        """
        try:
            self.socket.send(routing_id, NOBLOCK_SNDMORE)
            self.socket.send(message, NOBLOCK)
        except zmq.ZMQError:
            return False
        finally:
            self.writable.sent(self.reader.sent())
        return True

    @staticmethod
    def peerName(fd):
        """
        :return: the peer of libzmq's descriptor C{fd}, C{host:port}, or
            C{None}.
        """
        return peer_name(fd)

    @staticmethod
    def shutDown(fd):
        """
        Shut down the TCP connection under libzmq's descriptor C{fd}.
        """
        shut_down(fd)

    def _receive(self):
        socket = self.socket
        listener = self.port
        routing_id = socket.recv(NOBLOCK)
        known = routing_id in listener.peers
        if known:
            message = socket.recv(NOBLOCK)
        else:
            # a client's introduction: its descriptor says which
            # connection it is
            message = socket.recv(zmq.NOBLOCK, copy=False)
            if not socket.getsockopt(zmq.RCVMORE):
                if len(message) == 0:
                    # the connection's ACCEPTED is reported before its
                    # first message can be read
                    self.monitor.drain()
                    listener.introduced(routing_id, message.get(zmq.SRCFD), message.get("Peer-Address"),
                                        frames_limit(message))
                return
        if socket.getsockopt(RCVMORE):
            socket.recv_multipart(NOBLOCK)
            if known:
                listener.malformed(routing_id, BadMessage("a message of several parts"))
            return
        if known:
            listener.received(routing_id, message)

    def close(self):
        """
        Close the socket, its monitor, the ZAP handler and the context.
        """
        if self.monitor is not None:
            self.monitor.close()
            self.monitor = None
        if self.reader is not None:
            self.reader.stop()
            self.reader = None
        if self.socket is not None:
            self.socket.close(0)
            self.socket = None
        if self.zap is not None:
            self.zap.stop()
            self.zap = None
        if self.context is not None:
            self.context.term()
            self.context = None
