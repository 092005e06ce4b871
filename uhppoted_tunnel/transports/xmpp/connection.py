# -*- test-case-name: tests.unit.test_xmpp,tests.unit.test_xmppendpoint -*-
"""
One of the peer's resources as a connection of an C{xmpp/} end: the
transport a session gives each resource while it is available
(L{PeerTransport}), and the protocol the end's factory builds for it
(L{XMPPConnection}), which tells the factory what every transport's
connection tells it (C{connectionReady}, C{connectionClosed}) and hands
each frame to the relay.

How resources come and go, and how frames are written and paced, is the
session's (L{uhppoted_tunnel.transports.xmpp.session}).
"""

from functools import partial

from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.core.frames import DEFAULT_MAX_PAYLOAD
from uhppoted_tunnel.interfaces import IFrameConnection
from uhppoted_tunnel.link.framed import WhenClosed
from uhppoted_tunnel.transports.xmpp.frames import message_head


@implementer(IAddress)
class JIDAddress:
    """
    An XMPP address: a full JID, as text.
    """

    def __init__(self, jid):
        self.jid = jid

    def __eq__(self, other):
        return isinstance(other, JIDAddress) and other.jid == self.jid

    def __hash__(self):
        return hash(self.jid)

    def __str__(self):
        return self.jid


class PeerTransport:
    """
    The transport of one of the peer's resources, while it is available:
    frames go to it through its session's paced queue, and closing it tells
    the resource this half is leaving.

    :ivar peer: its full JID, as text.
    :ivar head: the start of every message to it.
    :ivar protocol: the connection made on it (by the endpoint).
    :ivar factory: the factory that built that connection, once it is made.
    :ivar disconnected: whether it has gone.
    """

    protocol = None
    factory = None
    disconnected = False
    _receive = None

    def __init__(self, session, jid):
        """
        :param session: the L{uhppoted_tunnel.transports.xmpp.session.XMPPSession}
            it is reached through.
        :param jid: its full JID, as text.
        """
        self.session = session
        self.peer = jid
        self.head = message_head(jid)

    def deliverTo(self, receive, factory):
        """
        Where its frames go, and who built the connection they are for.

        :param receive: called with C{(frame_id, payload)} for each frame.
        :param factory: the connection's factory.
        """
        self._receive = receive
        self.factory = factory

    def frameReceived(self, frame_id, payload):
        if self._receive is not None:
            self._receive(frame_id, payload)

    def sendFrame(self, frame_id, payload):
        """
        Queue a frame for the resource.

        :return: False if it was dropped.
        """
        if self.disconnected:
            return False
        return self.session.send(self, frame_id, payload)

    def loseConnection(self):
        """
        Leave: tell the resource that this half is unavailable.
        """
        self.session.closeLink(self, Failure(ConnectionDone("closed")), goodbye=True)

    abortConnection = loseConnection

    def getPeer(self):
        return JIDAddress(self.peer)

    def getHost(self):
        return JIDAddress(self.session.account.full())

    def lost(self, reason):
        """
        The resource has gone (or this half left it): its connection is
        lost.
        """
        self.disconnected = True
        if self.protocol is not None:
            self.protocol.connectionLost(reason)


@implementer(IFrameConnection)
class XMPPConnection(WhenClosed, Protocol):
    """
    One of the peer's resources, as a connection of a stream end: built by
    the end's factory and connected to its L{PeerTransport} once the
    resource is available.

    :ivar closed: whether it has closed.
    """

    log_tag = "XMPP"
    closed = False

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self.peer = "?"

    def connectionMade(self):
        self.peer = self.transport.peer
        self.transport.deliverTo(partial(self.factory.relay.frameReceived, self), self.factory)
        self.factory.connectionReady(self)

    def sendFrame(self, frame_id, payload):
        """
        Queue a frame, paced under the server's limit (the session warns
        of what it drops).

        :return: False if the frame was dropped.
        """
        return self.transport.sendFrame(frame_id, payload)

    def close(self):
        """
        Leave the resource: it is told this half is unavailable.
        """
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.closed = True
        waiting = self._closedNow()
        self.factory.connectionClosed(self, reason)
        for d in waiting:
            d.callback(None)
