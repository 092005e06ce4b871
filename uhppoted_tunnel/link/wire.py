# -*- test-case-name: tests.unit.test_wire -*-
"""
The stream wire format shared with the Go uhppoted-tunnel.

Every message on a TCP or TLS stream is one frame::

    [length: u16 big-endian][id: u32 big-endian][payload: length bytes]

The length counts the payload only. The Go reader parses each C{read()} on
its own; L{FrameDecoder} reassembles frames across reads and refuses
impossible lengths instead. An empty frame carries no packet: the ends
never forward one (the Go tunnel sends it on as a 0-byte datagram), and in
an event tunnel it acknowledges the event frame with the same id.
"""

import struct

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from twisted.protocols.policies import ProtocolWrapper
from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.interfaces import IFrameConnection

HEADER = struct.Struct("!HI")
HEADER_SIZE = HEADER.size

#: UHPPOTE packets are 64 bytes (a few newer ones are longer); anything near
#: the u16 limit is a peer speaking another protocol.
DEFAULT_MAX_PAYLOAD = 1024

#: Bytes queued for one peer before it counts as not reading (flow control).
DEFAULT_MAX_SEND_QUEUE = 256 * 1024
#: Seconds a peer may read nothing sent to it before it is disconnected.
DEFAULT_STALL_TIMEOUT = 30.0
#: Seconds a peer may leave sent data unacknowledged (or keepalive probes
#: unanswered) before the kernel drops the connection (TCP_USER_TIMEOUT).
DEFAULT_DEAD_PEER_TIMEOUT = 60.0

#: The first bytes of a TLS ClientHello (handshake record, TLS 1.0 version).
_TLS_RECORD = b"\x16\x03"


class FrameTooLong(Exception):
    """
    A frame header announced a payload longer than the decoder accepts.
    """

    def __init__(self, length, limit, head):
        """
        :param length: the announced payload length.
        :param limit: the largest payload the decoder accepts.
        :param head: the first bytes of the offending frame, for diagnosis.
        """
        Exception.__init__(self, length, limit, head)
        self.length = length
        self.limit = limit
        self.head = bytes(head)

    def __str__(self):
        return describe_bad_length(self.length, self.limit, self.head)


def describe_bad_length(length, limit, head):
    """
    Explain an impossible frame length in a way an operator can act on.

    :param length: the announced payload length.
    :param limit: the largest payload accepted.
    :param head: the first bytes received from the peer.
    :return: a one-line message.
    """
    message = "frame of {} bytes exceeds the {} byte limit".format(length, limit)
    if head.startswith(_TLS_RECORD):
        return message + " (the data starts like a TLS handshake: is the peer using TLS?)"
    if head.startswith(b"PRI * HTTP/2"):
        return message + " (the data starts like HTTP/2: is the peer a gRPC client?)"
    if head[:4] in (b"GET ", b"POST", b"HEAD", b"PUT ", b"HTTP"):
        return message + " (the data looks like HTTP: is the peer an HTTP client?)"
    return message + " (is the peer a uhppoted-tunnel?)"


def encode(frame_id, payload):
    """
    Encode one frame.

    :param frame_id: the u32 request id.
    :param payload: the packet, at most 65535 bytes.
    :return: the frame as bytes.
    """
    return HEADER.pack(len(payload), frame_id) + payload


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


class FrameDecoder:
    """
    Incremental frame decoder: feed it whatever the transport delivered,
    get back every whole frame (empty ones included).
    """

    __slots__ = ("max_payload", "_buffer")

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        """
        :param max_payload: the longest payload accepted; a longer one makes
            L{feed} raise L{FrameTooLong}.
        """
        self.max_payload = max_payload
        self._buffer = b""

    def feed(self, data):
        """
        Add received bytes.

        :param data: bytes from the transport.
        :return: a list of C{(frame_id, payload)} for each frame completed.
        :raise FrameTooLong: when a header announces more than
            C{max_payload}; the decoder should then be discarded with its
            connection.
        """
        buffer = self._buffer + data if self._buffer else data
        frames = []
        offset = 0
        end = len(buffer)
        unpack = HEADER.unpack_from
        limit = self.max_payload
        while end - offset >= HEADER_SIZE:
            length, frame_id = unpack(buffer, offset)
            if length > limit:
                self._buffer = b""
                raise FrameTooLong(length, limit, buffer[offset : offset + 16])
            stop = offset + HEADER_SIZE + length
            if stop > end:
                break
            frames.append((frame_id, buffer[offset + HEADER_SIZE : stop]))
            offset = stop
        self._buffer = buffer[offset:] if offset else buffer
        return frames

    @property
    def pending(self):
        """
        The number of bytes held waiting for the rest of a frame.
        """
        return len(self._buffer)


@implementer(IFrameConnection, IPushProducer)
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


class FramedProtocol(WhenClosed, Protocol):
    """
    A byte-stream connection carrying frames.

    It is connected only once it is ready for frames (a secure transport
    connects it after its handshake), and then tells C{self.factory}
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
    """

    log = Logger()
    log_tag = "TCP"
    relay = None
    stalled = False
    _stall = None

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.decoder = FrameDecoder(max_payload)
        self.peer = "?"

    def connectionMade(self):
        self.peer = format_address(self.transport.getPeer())
        # the socket's transport, under TLS if any: its buffer is what is
        # queued for the peer (and a producer on a TLS transport would hold
        # up its close)
        self._socket = underlying(self.transport)
        self._socket.registerProducer(self, True)
        self.factory.connectionReady(self)

    def pauseProducing(self):
        """
        The peer is not reading: drop what is sent to it, stop reading from
        it, and close it if it stays so.
        """
        if self.stalled:
            return
        self.stalled = True
        self._socket.pauseProducing()
        timeout = getattr(self.factory, "stall_timeout", None)
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
        self._socket.resumeProducing()

    def stopProducing(self):
        pass

    def _stalledTooLong(self, timeout):
        self._stall = None
        self.factory.stalledTooLong(self, timeout)
        self.transport.abortConnection()

    def dataReceived(self, data):
        try:
            frames = self.decoder.feed(data)
        except FrameTooLong as e:
            self.factory.frameTooLong(self, e)
            self.transport.abortConnection()
            return
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
        self.transport.write(encode(frame_id, payload))
        return True

    def close(self):
        """
        Close the connection once what is queued is sent, or at once if the
        peer is not reading (it would never be sent).
        """
        if self.stalled:
            if self._stall is not None:
                self._stall.cancel()
                self._stall = None
            self.transport.abortConnection()
        else:
            self.transport.loseConnection()

    def connectionLost(self, reason):
        if self._stall is not None:
            self._stall.cancel()
            self._stall = None
        waiting = self._closedNow()
        self.factory.connectionClosed(self, reason)
        for d in waiting:
            d.callback(None)
