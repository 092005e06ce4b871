# -*- test-case-name: tests.unit.test_grpch2 -*-
"""
One gRPC call as a link: L{Call} is one HTTP/2 stream of an
L{uhppoted_tunnel.transports.grpc.h2conn.H2Protocol}, standing as the
transport of the end's connection, L{GRPCConnection}, which the stream
ends are handed as every transport's
(L{uhppoted_tunnel.interfaces.IFrameConnection}).

Sending: the frames queued in one reactor turn go out as one gRPC message
(a C{Frames} of at most L{MAX_BATCH} frames and C{--max-payload} +
L{BATCH_OVERHEAD} bytes, more messages if they do not fit; on a C{Relay}
call one C{Frame} a message), written at the turn's end with whatever
else the connection has to send. What waits for the peer's HTTP/2 window
counts against C{--max-send-queue} with the turn's frames: past it, and
while the socket's buffer is full, a frame is dropped and counted.
Receiving: each DATA frame's bytes go through a
L{uhppoted_tunnel.transports.grpc.messages.MessageDecoder}, and each frame
of a whole message straight to the relay; what the decoder refuses ends
the call with the throttled warning of impossible frames.
"""

from twisted.internet.error import ConnectionAborted
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.core.frames import DEFAULT_MAX_PAYLOAD, FrameTooLong
from uhppoted_tunnel.interfaces import IFrameConnection
from uhppoted_tunnel.link.framed import WhenClosed, underlying
from uhppoted_tunnel.link.limits import prove
from uhppoted_tunnel.transports.grpc.messages import (
    BATCH_OVERHEAD,
    FRAME_OVERHEAD,
    MAX_BATCH,
    Compressed,
    MessageDecoder,
    MessageTooLong,
    NotAFrame,
    TooManyFrames,
    frame_bytes,
    frames_bytes,
    message_limit,
)


class StallTimeout(Exception):
    """
    The peer read nothing sent to it for C{--stall-timeout} seconds.
    """

    def __init__(self, timeout):
        Exception.__init__(self, timeout)
        self.timeout = timeout

    def __str__(self):
        return "the peer read nothing sent to it for {:g}s".format(self.timeout)


#: What ends a call as an impossible frame would end a byte stream.
IMPOSSIBLE = (FrameTooLong, NotAFrame, MessageTooLong, TooManyFrames, Compressed)


class Call:
    """
    One call on an HTTP/2 connection, as the transport of the end's
    connection.

    :ivar h2: the L{H2Protocol} the call is a stream of.
    :ivar protocol: what was connected to it (the end's connection, under
        the caps' wrapper on a server).
    :ivar connection: the end's L{GRPCConnection}, once connected.
    :ivar waiting: message bytes waiting for the peer's window.
    """

    disconnecting = False
    disconnected = False
    protocol = None
    connection = None

    def __init__(self, h2, stream_id, batched, peer, host):
        """
        :param h2: the L{H2Protocol}.
        :param stream_id: the call's stream.
        :param batched: whether it is a C{Relays} call.
        :param peer: the peer's C{IAddress}; C{host}: this side's.
        """
        self.h2 = h2
        self.stream_id = stream_id
        self.batched = batched
        self.peer_address = peer
        self.host_address = host
        self.peer = format_address(peer)
        self.decoder = MessageDecoder(h2.max_payload, batched)
        self.limit = message_limit(h2.max_payload)
        self.max_send_queue = h2.max_send_queue
        self.outgoing = []
        self.queued = 0
        self.waiting = b""
        self._proven = False

    def getPeer(self):
        return self.peer_address

    def getHost(self):
        return self.host_address

    def write(self, data):
        raise TypeError("a gRPC call carries frames: use sendFrame")

    writeSequence = write

    def send(self, frame_id, payload):
        """
        Queue one frame for the end of the turn.

        :return: False if dropped: the call is ending, or the peer is not
            reading (what waits would pass C{--max-send-queue}).
        """
        size = len(payload) + FRAME_OVERHEAD
        if self.disconnecting or self.h2.paused or self.queued + len(self.waiting) + size > self.max_send_queue:
            return False
        if not self.outgoing:
            self.h2.schedule(self)
        self.outgoing.append((frame_id, payload))
        self.queued += size
        return True

    def pack(self):
        """
        The turn is ending: make messages of the frames queued, after what
        waits for the window.
        """
        frames, self.outgoing = self.outgoing, []
        self.queued = 0
        if not frames:
            return
        if not self.batched:
            data = b"".join(frame_bytes(frame_id, payload) for frame_id, payload in frames)
        elif len(frames) == 1 or (len(frames) <= MAX_BATCH and sum(len(p) for _, p in frames)
                                  + BATCH_OVERHEAD * len(frames) <= self.limit):
            data = frames_bytes(frames)
        else:
            data = b"".join(frames_bytes(batch) for batch in self._batches(frames))
        self.waiting = self.waiting + data if self.waiting else data

    def _batches(self, frames):
        batch, size = [], 0
        for frame in frames:
            cost = len(frame[1]) + BATCH_OVERHEAD
            if batch and (len(batch) == MAX_BATCH or size + cost > self.limit):
                yield batch
                batch, size = [], 0
            batch.append(frame)
            size += cost
        if batch:
            yield batch

    def drained(self):
        """
        Nothing waits for the window any more.
        """
        if self.disconnecting and not self.disconnected:
            self.h2.finishCall(self)

    def dataReceived(self, data):
        """
        Bytes of the call arrived: hand each frame of a whole message to
        the relay, or end the call if the decoder refuses them.
        """
        try:
            frames = self.decoder.feed(data)
        except IMPOSSIBLE as e:
            self.h2.abortCall(self, e)
            return
        connection = self.connection
        if frames and connection is not None:
            if not self._proven:
                # a valid message: under the caps, no longer a call that
                # may be closed to make room for a newcomer
                self._proven = True
                prove(connection.transport)
            relay = connection.relay
            for frame_id, payload in frames:
                relay.frameReceived(connection, frame_id, payload)

    def loseConnection(self):
        """
        End the call once what is queued is sent.
        """
        if self.disconnecting or self.disconnected:
            return
        self.disconnecting = True
        if self.outgoing:
            # the end of the turn sends them, then drained() ends the call
            return
        if not self.waiting:
            self.h2.finishCall(self)

    def abortConnection(self):
        """
        End the call at once.
        """
        if not self.disconnected:
            self.disconnecting = True
            self.h2.abortCall(self, ConnectionAborted())

    def stalled(self, timeout):
        """
        The peer read nothing for C{timeout} seconds: the call ends.
        """
        self.ended(StallTimeout(timeout))

    def ended(self, reason):
        """
        The call has ended (once; later reports are ignored).

        :param reason: an exception saying why.
        """
        if self.disconnected:
            return
        self.disconnected = self.disconnecting = True
        self.outgoing = []
        self.waiting = b""
        if self.protocol is not None:
            self.protocol.connectionLost(Failure(reason))


@implementer(IFrameConnection)
class GRPCConnection(WhenClosed, Protocol):
    """
    One call, as a connection of a stream end: built by the end's factory,
    connected to its L{Call} once the call is taken, and telling the
    factory what a byte stream's connection tells it (C{connectionReady},
    C{connectionClosed}, C{frameDropped}, C{frameTooLong},
    C{stalledTooLong}).
    """

    log = Logger()
    log_tag = "GRPC"
    relay = None
    call = None

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self.peer = "?"

    def connectionMade(self):
        # under the caps' wrapper, if any
        self.call = underlying(self.transport)
        self.call.connection = self
        self.peer = self.call.peer
        self.factory.connectionReady(self)

    def sendFrame(self, frame_id, payload):
        """
        Send one frame, unless the peer is not reading what is sent to it.

        :return: False if the frame was dropped.
        """
        if self.call.send(frame_id, payload):
            return True
        if not self.call.disconnecting:
            self.factory.frameDropped(self)
        return False

    def close(self):
        """
        End the call once what is queued is sent.
        """
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if reason.check(*IMPOSSIBLE):
            self.factory.frameTooLong(self, reason.value)
        elif reason.check(StallTimeout):
            self.factory.stalledTooLong(self, reason.value.timeout)
        waiting = self._closedNow()
        self.factory.connectionClosed(self, reason)
        for d in waiting:
            d.callback(None)
