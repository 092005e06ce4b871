# -*- test-case-name: tests.unit.test_nats -*-
"""
One NATS link as a connection of a client end
(L{uhppoted_tunnel.link.ends.ClientEnd}): L{NATSConnection}, the protocol
the end's factory builds, connected to a
L{uhppoted_tunnel.transports.nats.link.NATSLink} once the link is ready.
It is thin: it tells the factory what every connection tells it
(C{connectionReady}, C{connectionClosed}, C{frameDropped}), hands each
frame the link makes of a message to the relay, and asks the link to
send each frame (which the link turns into a publish, a JetStream store
or an acknowledgement, by the end's role).
"""

from twisted.internet.protocol import Protocol
from zope.interface import implementer

from uhppoted_tunnel.core.frames import DEFAULT_MAX_PAYLOAD
from uhppoted_tunnel.interfaces import IFrameConnection
from uhppoted_tunnel.link.framed import WhenClosed


@implementer(IFrameConnection)
class NATSConnection(WhenClosed, Protocol):
    """
    One end's link to a NATS cluster, for its relay: a single connection
    whatever the number of sites or hosts on the cluster (the subjects
    route each frame).

    :ivar peer: the NATS server, C{host:port}.
    """

    log_tag = "NATS"
    relay = None

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self.peer = "?"

    def connectionMade(self):
        self.peer = self.transport.peer
        self.factory.connectionReady(self)

    def frameReceived(self, frame_id, payload):
        """
        A frame the link made of a message, for the relay.
        """
        self.relay.frameReceived(self, frame_id, payload)

    def sendFrame(self, frame_id, payload):
        """
        Send one frame; one the client cannot hold (its pending buffer is
        full while it fails over) is dropped and counted.

        :return: False if the frame was not sent.
        """
        transport = self.transport
        if transport.disconnected:
            return False
        return transport.sendFrame(frame_id, payload)

    def frameDropped(self):
        """
        The client dropped a frame it could not hold.
        """
        self.factory.frameDropped(self)

    def close(self):
        self.transport.loseConnection()

    def connectionLost(self, reason):
        waiting = self._closedNow()
        self.factory.connectionClosed(self, reason)
        for d in waiting:
            d.callback(None)
