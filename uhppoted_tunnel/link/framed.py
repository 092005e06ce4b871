# -*- test-case-name: tests.unit.test_wire -*-
"""
Frames over a byte stream (TCP, TLS, a proxy's tunnel): L{FramedProtocol}
feeds a L{uhppoted_tunnel.core.frames.FrameDecoder} and writes
L{uhppoted_tunnel.core.frames.encode}d frames, with flow control and a
stall timeout, and tunes the socket under it (L{tune}); L{WhenClosed}
gives any connection its C{whenClosed}.
"""

import socket

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.core.frames import DEFAULT_MAX_PAYLOAD, FrameDecoder, FrameTooLong, encode
from uhppoted_tunnel.interfaces import IFrameConnection
from uhppoted_tunnel.link.limits import prove
from uhppoted_tunnel.link.writes import TurnWriter, writer

#: Go: TCP keepalive every 15 s on stream sockets.
KEEPALIVE = 15

#: Bytes queued for one peer before it counts as not reading (flow control).
DEFAULT_MAX_SEND_QUEUE = 256 * 1024
#: Seconds a peer may read nothing sent to it before it is disconnected.
DEFAULT_STALL_TIMEOUT = 30.0
#: Seconds a peer may leave sent data unacknowledged (or keepalive probes
#: unanswered) before the kernel drops the connection (TCP_USER_TIMEOUT).
DEFAULT_DEAD_PEER_TIMEOUT = 60.0


def underlying(transport):
    """
    The transport nearest the socket under a (possibly TLS-wrapped)
    transport.
    """
    # a TLS transport (a ProtocolWrapper) forwards unknown attributes to
    # the one under it, so look at what it is, not at what it answers to
    while isinstance(transport, ProtocolWrapper) and transport.transport is not None:
        transport = transport.transport
    return transport


def tune(transport, max_send_queue=DEFAULT_MAX_SEND_QUEUE, dead_peer_timeout=DEFAULT_DEAD_PEER_TIMEOUT):
    """
    Set up the TCP connection under a (possibly TLS-wrapped) transport:
    Nagle off; Go's 15 s keepalive; C{TCP_USER_TIMEOUT}, so that a peer
    that vanished (data or keepalive probes unacknowledged) is noticed
    within C{dead_peer_timeout}; and what may be queued for the peer, in
    the kernel (C{SO_SNDBUF}) and in the transport (past which the peer
    counts as not reading). A transport with no TCP socket under it is
    left alone.
    """
    transport = underlying(transport)
    if not hasattr(transport, "setTcpNoDelay"):
        return
    transport.setTcpNoDelay(True)
    transport.setTcpKeepAlive(True)
    transport.bufferSize = max_send_queue
    handle = getattr(transport, "getHandle", lambda: None)()
    if hasattr(handle, "setsockopt") and hasattr(socket, "TCP_KEEPIDLE"):
        try:
            # the kernel's share of what is queued for the peer (Linux
            # doubles it for its own bookkeeping)
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max_send_queue)
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE)
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(dead_peer_timeout * 1000))
        except OSError:
            pass


class WhenClosed:
    """
    C{whenClosed} for a connection (L{IFrameConnection}): who waits is
    told once its C{connectionLost} calls L{_closedNow}.
    """

    _closed = None

    def whenClosed(self):
        """
        :return: a Deferred that fires once the connection has closed.
        """
        if self._closed is None:
            self._closed = []
        elif self._closed is True:
            return succeed(None)
        d = Deferred()
        self._closed.append(d)
        return d

    def _closedNow(self):
        """
        The connection is closed: from now on L{whenClosed} fires at once.

        :return: the Deferreds waiting until now, for the caller to fire.
        """
        waiting, self._closed = self._closed, True
        return waiting or ()


@implementer(IFrameConnection, IPushProducer)
class FramedProtocol(WhenClosed, Protocol):
    """
    A byte-stream connection carrying frames.

    It is connected only once it is ready for frames (a secure transport
    connects it after its handshake), tunes the socket under it from its
    factory's C{max_send_queue} and C{dead_peer_timeout}, and then tells
    C{self.factory}, an L{uhppoted_tunnel.interfaces.IConnectionReporter}
    (C{connectionReady(self)}, and C{connectionClosed(self, reason)} at the
    end; C{frameTooLong}, C{stalledTooLong} and C{frameDropped} when it
    drops the peer or a frame, which the factory reports, throttled); each
    whole frame goes straight to C{self.relay.frameReceived(self, frame_id,
    payload)}.

    Flow control: the protocol is its transport's producer, so the
    transport says when the peer stops reading (what is queued for it is
    over the transport's buffer size, which the end sets from
    C{--max-send-queue}). While the peer is I{stalled}, frames for it are
    dropped (the factory counts them: C{frameDropped}) and nothing more is
    read from it; a peer stalled for C{factory.stall_timeout} seconds is
    disconnected. Memory per connection is bounded, and a stalled peer
    never slows the others.

    :ivar stalled: True while the peer is not reading what is sent to it.
    :ivar socket_transport: the transport nearest the socket, whose
        producer the protocol is.
    """

    log = Logger()
    log_tag = "TCP"
    relay = None
    stalled = False
    _stall = None
    #: whether the peer has sent anything; whether this side has; whether
    #: this side closed the connection (a peer that closes it without a
    #: word may not speak this protocol: see
    #: L{uhppoted_tunnel.link.ends.ClientEnd})
    heard = False
    spoke = False
    closing = False
    _proven = False
    #: writes to the transport (see link.writes.writer)
    _write = None

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.decoder = FrameDecoder(max_payload)
        self.peer = "?"

    def connectionMade(self):
        self.peer = format_address(self.transport.getPeer())
        # the socket's transport, under TLS if any: its buffer is what is
        # queued for the peer (and a producer on a TLS transport would hold
        # up its close)
        self.socket_transport = underlying(self.transport)
        self.socket_transport.registerProducer(self, True)
        # straight to the socket when it is TCP's (see link.writes)
        factory = self.factory
        self._write = writer(self.transport, factory)
        tune(self.transport, factory.max_send_queue, factory.dead_peer_timeout)
        factory.connectionReady(self)

    def pauseProducing(self):
        """
        The peer is not reading: drop what is sent to it, stop reading from
        it, and close it if it stays so.
        """
        if self.stalled:
            return
        self.stalled = True
        self.socket_transport.pauseProducing()
        timeout = self.factory.stall_timeout
        if timeout is not None:
            self._stall = self.factory.clock.callLater(timeout, self._stalledTooLong, timeout)

    def resumeProducing(self):
        """
        The peer has read what was queued for it.
        """
        if not self.stalled:
            return
        self.stalled = False
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        self.socket_transport.resumeProducing()

    def stopProducing(self):
        pass

    def _stalledTooLong(self, timeout):
        self._stall = None
        self.closing = True
        self.factory.stalledTooLong(self, timeout)
        self.transport.abortConnection()

    def dataReceived(self, data):
        self.heard = True
        try:
            frames = self.decoder.feed(data)
        except FrameTooLong as e:
            self.factory.frameTooLong(self, e)
            self.transport.abortConnection()
            return
        if frames and not self._proven:
            # a valid frame: under a server end's caps, no longer one that
            # may be closed to make room for a newcomer
            self._proven = True
            prove(self.transport)
        relay = self.relay
        for frame_id, payload in frames:
            relay.frameReceived(self, frame_id, payload)

    def sendFrame(self, frame_id, payload):
        """
        Write one frame to the peer, unless it is not reading.

        :param frame_id: the u32 id.
        :param payload: the packet.
        :return: False if the frame was dropped.
        """
        if self.stalled:
            self.factory.frameDropped(self)
            return False
        self.spoke = True
        self._write(encode(frame_id, payload))
        return True

    def close(self):
        """
        Close the connection once what is queued is sent, or at once if the
        peer is not reading (it would never be sent).
        """
        self.closing = True
        if self.stalled:
            if self._stall is not None:
                self._stall.cancel()
                self._stall = None
            self.transport.abortConnection()
        else:
            if isinstance(self._write, TurnWriter):
                # what this turn wrote goes before the close
                self._write.flush()
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        waiting = self._closedNow()
        self.factory.connectionClosed(self, reason)
        for d in waiting:
            d.callback(None)
