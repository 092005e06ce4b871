# -*- test-case-name: tests.unit.test_zmq,tests.unit.test_zmq_endpoints,tests.unit.test_zmqbatch,tests.unit.test_zmqwire -*-
"""
One link to a ZeroMQ peer, as a connection of a stream end
(L{uhppoted_tunnel.link.ends}): L{ZMQConnection}, a protocol built by the
end's factory, connected to a L{MessageTransport} once the link is ready
(a server's peer has introduced itself, a client's handshake is done),
and telling the factory what a byte stream's connection tells it
(C{connectionReady}, C{connectionClosed}, C{frameDropped},
C{frameTooLong}). Each message holds one frame or several
(L{uhppoted_tunnel.transports.zmq.wire}), which go straight to the
relay; the frames sent in one turn to a peer that reads several go as
one message at the turn's end (L{uhppoted_tunnel.transports.zmq.batch}).
"""

from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from uhppoted_tunnel.core.frames import DEFAULT_MAX_PAYLOAD, HEADER_SIZE, encode
from uhppoted_tunnel.interfaces import IFrameConnection
from uhppoted_tunnel.link.framed import WhenClosed
from uhppoted_tunnel.transports.zmq.batch import TurnBatch
from uhppoted_tunnel.transports.zmq.wire import BadMessage, decode


@implementer(IFrameConnection)
class ZMQConnection(WhenClosed, Protocol):
    """
    A link to one ZeroMQ peer, for the relay: on a server end, one peer of
    the ROUTER (by routing id); on a client end, the DEALER's one link.

    :ivar peer: the peer's address, C{host:port}.
    """

    log_tag = "ZMQ"
    relay = None
    batch = None

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self.peer = "?"

    def connectionMade(self):
        self.peer = self.transport.peer
        self.batch = TurnBatch(self.transport, self.max_payload + HEADER_SIZE, self._dropped)
        self.factory.connectionReady(self)

    def messageReceived(self, message):
        """
        One message from the peer: its frames go to the relay, in order; a
        message that is not wholly frames is dropped whole, and closes the
        link.
        """
        try:
            frames = decode(message, self.max_payload)
        except BadMessage as e:
            self.badMessage(e)
            return
        received = self.relay.frameReceived
        if len(frames) == 1:
            frame_id, payload = frames[0]
            received(self, frame_id, payload)
            return
        transport = self.transport
        for frame_id, payload in frames:
            if transport.disconnected:
                return
            received(self, frame_id, payload)

    def badMessage(self, error):
        """
        The peer sent what is not one frame: warned of, and the link closed.

        :param error: a L{BadMessage}.
        """
        if self.transport.disconnected:
            return
        self.factory.frameTooLong(self, error)
        self.close()

    def sendFrame(self, frame_id, payload):
        """
        Send one frame, unless the peer's queue is at its high-water mark
        (it is not reading, or is gone): then drop it and count it. To a
        peer that reads several frames in a message, it goes at the end of
        the turn with the turn's others.

        :return: False if the frame was not sent (known at once).
        """
        transport = self.transport
        if transport.disconnected:
            return False
        batch = self.batch
        if batch.pending:
            if batch.add(encode(frame_id, payload)):
                return True
        else:
            limit = transport.batching()
            if limit:
                batch.limit = min(limit, self.max_payload + HEADER_SIZE)
                if batch.add(encode(frame_id, payload)):
                    return True
            elif transport.sendMessage(encode(frame_id, payload)):
                return True
        self.factory.frameDropped(self)
        return False

    def _dropped(self, count):
        for _ in range(count):
            self.factory.frameDropped(self)

    def close(self):
        if self.batch is not None and not self.transport.disconnected:
            self.batch.flush()
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if self.batch is not None:
            self.batch.discard()
        waiting = self._closedNow()
        self.factory.connectionClosed(self, reason)
        for d in waiting:
            d.callback(None)


@implementer(ITransport)
class MessageTransport:
    """
    What a L{ZMQConnection} is connected to: one peer's link, which sends
    whole messages. Subclasses say how a message is sent and how the link
    is closed.

    :ivar peer: the peer's address as text, for the log.
    :ivar protocol: what the end's factory built for the link, given each
        message and told of the link's loss.
    :ivar disconnected: whether the link is gone.
    """

    disconnected = False
    protocol = None

    def __init__(self, peer, peer_address, host_address, clock):
        """
        :param peer: the peer's address as text.
        :param peer_address: the peer's Twisted address.
        :param host_address: this end's Twisted address.
        :param clock: an C{IReactorTime}, for the end of a turn.
        """
        self.peer = peer
        self.clock = clock
        self._peer_address = peer_address
        self._host_address = host_address

    def connect(self, protocol):
        """
        Connect what the factory built (C{None} is refused: the link is
        closed).

        :return: whether it was connected.
        """
        if protocol is None:
            self.loseConnection()
            return False
        self.protocol = protocol
        protocol.makeConnection(self)
        return True

    def messageReceived(self, message):
        """
        One message from the peer, for the protocol.
        """
        if self.protocol is not None and not self.disconnected:
            self.protocol.messageReceived(message)

    def badMessage(self, error):
        """
        The peer sent a message of several parts.
        """
        if self.protocol is not None and not self.disconnected:
            self.protocol.badMessage(error)

    def ended(self, reason, clock=None):
        """
        The link is gone: no more messages, and the protocol is told.

        :param reason: a L{Failure}.
        :param clock: an C{IReactorTime} to tell the protocol on its next
            turn (as of a TCP connection's loss), or C{None} to tell it now.
        """
        if self.disconnected:
            return
        self.disconnected = True
        if self.protocol is None:
            return
        if clock is None:
            self.protocol.connectionLost(reason)
        else:
            clock.callLater(0, self.protocol.connectionLost, reason)

    def sendMessage(self, message):
        """
        :return: whether the message was queued for the peer.
        """
        raise NotImplementedError()

    def batching(self):
        """
        Whether frames for the peer go several to a message: it reads them
        (its handshake said so), and L{writable} speaks of its queue alone.

        :return: the longest message the peer reads, in bytes, or 0 for
            one frame a message.
        """
        return 0

    def writable(self):
        """
        Whether the peer's queue takes a message now.
        """
        return True

    def write(self, data):
        self.sendMessage(data)

    def writeSequence(self, data):
        self.sendMessage(b"".join(data))

    def loseConnection(self):
        raise NotImplementedError()

    def getPeer(self):
        return self._peer_address

    def getHost(self):
        return self._host_address
