# -*- test-case-name: tests.unit.test_xmpp,tests.unit.test_xmppendpoint -*-
"""
One logged-in stream to the XMPP server: presence, the stanza observers,
frames in and out, and the peer's resources while they are available.

The two halves find each other by presence, with no roster needed: a half
that logs in says it is available, then sends the other account
(C{--xmpp-peer}) directed presence with a C{<hello/>} in this project's
namespace. A half that hears available presence from one of the peer's
resources answers it with directed presence (once: an answer is not
answered), and from then on that resource is a connection
(L{uhppoted_tunnel.transports.xmpp.connection}), reported by the
session's endpoint (L{uhppoted_tunnel.transports.xmpp.endpoint}) to the
end, until it sends unavailable presence, which the server sends for it
when it logs out or its connection drops (RFC 6121 4.6.3). A C{<hello/>}
from a resource already connected means that half logged in again: its
old connection ends and a new one begins.

Frames go to the peer's full JID in message stanzas
(L{uhppoted_tunnel.transports.xmpp.frames}), paced under the server's rate
limit (C{--xmpp-rate}) through a queue bounded by C{--max-send-queue}.
Stanzas from anyone but the peer, and frames that are not well formed,
are dropped with throttled warnings
(L{uhppoted_tunnel.transports.xmpp.drops}).
"""

from functools import partial
from xml.sax.saxutils import quoteattr

from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import xmlstream

from uhppoted_tunnel.link.framed import tune
from uhppoted_tunnel.transports.xmpp.connection import PeerTransport
from uhppoted_tunnel.transports.xmpp.frames import NS_TUNNEL, STRANGER, SendQueue, frame_element, parse_jid, read_frames

_STANZA_ERROR = "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"


class XMPPSession(Protocol):
    """
    One logged-in stream to the server. Connected (C{makeConnection}) once
    the login is done, with the stream given first (L{attach}); tells its
    endpoint when it starts and ends, and of each of the peer's resources
    that comes online.

    :ivar links: full JID -> L{PeerTransport}, for the peer's available
        resources.
    """

    log = Logger()
    log_tag = "XMPP"
    stream = None
    queue = None
    account = None
    closing = False

    def __init__(self, endpoint):
        """
        :param endpoint: the L{uhppoted_tunnel.transports.xmpp.endpoint.XMPPEndpoint}
            (its C{peer}, C{settings}, C{clock}, C{rate} and C{drops}).
        """
        self.endpoint = endpoint
        self.peer = endpoint.peer
        self.drops = endpoint.drops
        self.links = {}

    def attach(self, stream):
        """
        Take over the stream's stanzas (the login is done).
        """
        self.stream = stream
        self.account = stream.authenticator.jid
        stream.addObserver("/message", self.onMessage)
        stream.addObserver("/presence", self.onPresence)
        stream.addObserver("/iq", self.onIQ)
        stream.addObserver(xmlstream.STREAM_ERROR_EVENT, self.onStreamError)

    def connectionMade(self):
        endpoint = self.endpoint
        settings = endpoint.settings
        tune(self.transport, settings["max-send-queue"], settings["dead-peer-timeout"])
        self.queue = SendQueue(endpoint.clock, self.stream.send, endpoint.rate, settings["max-send-queue"],
                               None if settings["events"] else settings["udp-timeout"], self._stale)
        endpoint.sessionStarted(self)
        # available, so that presence to the bare JID reaches this resource;
        # then hello to the peer, whichever of its resources are online
        self.stream.send("<presence/>")
        self.stream.send("<presence to={}><hello xmlns='{}'/></presence>".format(quoteattr(self.peer.jid.full()),
                                                                                  NS_TUNNEL))

    def _stale(self, n):
        self.drops.dropped("stale", None, n)

    def send(self, link, frame_id, payload):
        """
        Queue a frame for a link: see L{PeerTransport.sendFrame}.
        """
        if self.closing:
            # the stream is being closed: nothing more may follow its end
            return False
        if self.queue.push(link, frame_element(frame_id, payload)):
            return True
        self.drops.dropped("full", link.peer)
        return False

    def onMessage(self, message):
        sender = message.getAttribute("from")
        link = self.links.get(sender)
        if link is None:
            link = self._link(sender, message.getAttribute("type"))
            if link is None:
                return
        elif message.getAttribute("type") == "error":
            return
        for frame_id, payload in read_frames(message, self.endpoint.settings["max-payload"],
                                             partial(self.drops.dropped, sender=sender)):
            link.frameReceived(frame_id, payload)

    def _link(self, sender, kind):
        """
        The link of a message's sender when the fast lookup failed: the
        peer's resource written another way, or nobody's.
        """
        full = self.peer.matches(sender)
        if full is None:
            if kind != "error" and not self._own(sender):
                self.drops.dropped(STRANGER, sender)
            return None
        link = self.links.get(full)
        if link is None or kind == "error":
            # an error bounced (perhaps a frame of ours: never a frame), or a
            # resource of the peer that has not said it is online
            self.log.debug("dropped a message from {sender}, which is not connected", sender=sender)
            return None
        return link

    def _own(self, sender):
        """
        Whether a stanza is this account's own business, no one to warn
        of: from the server for the account (no sender), or from one of
        its own resources (its presence, reflected).
        """
        if not sender:
            return True
        found = parse_jid(sender)
        return found is not None and found.userhost() == self.account.userhost()

    def onPresence(self, presence):
        sender = presence.getAttribute("from")
        kind = presence.getAttribute("type")
        if kind == "error":
            self._bounced(presence, sender)
            return
        full = self.peer.matches(sender)
        if full is None:
            if not self._own(sender):
                self.drops.dropped(STRANGER, sender)
            return
        link = self.links.get(full)
        if kind is None:
            hello = any(child.uri == NS_TUNNEL and child.name == "hello" for child in presence.elements())
            if link is not None:
                if not hello:
                    return
                # that half logged in again with the same resource
                self.closeLink(link, Failure(ConnectionDone("{} logged in again".format(full))))
            self.stream.send("<presence to={}/>".format(quoteattr(full)))
            link = self.links[full] = PeerTransport(self, full)
            if not self.endpoint.peerOnline(link) and self.links.get(full) is link:
                del self.links[full]
        elif kind == "unavailable" and link is not None:
            self.closeLink(link, Failure(ConnectionDone("{} is offline".format(full))))

    def _bounced(self, presence, sender):
        """
        Presence of ours came back as an error: from the peer's account (or
        its server), a reason worth a warning; from anyone else, a
        stranger's stanza.
        """
        found = parse_jid(sender) if sender else None
        if found is None or found.userhost() not in (self.peer.bare, self.peer.jid.host):
            self.drops.dropped(STRANGER, sender)
            return
        error = presence.error
        condition = error.firstChildElement() if error is not None else None
        self.log.warn("the server could not deliver presence to {peer}: {condition}", peer=sender,
                      condition="no reason given" if condition is None else condition.name)

    def onIQ(self, iq):
        # every request must be answered (RFC 6120 8.2.3): this end offers
        # nothing, but answers pings
        if iq.getAttribute("type") not in ("get", "set"):
            return
        ping = any(child.uri == "urn:xmpp:ping" for child in iq.elements())
        to = iq.getAttribute("from")
        self.stream.send("<iq type='{}'{}{}>{}</iq>".format(
            "result" if ping else "error", "" if to is None else " to=" + quoteattr(to),
            " id=" + quoteattr(iq.getAttribute("id", "")), "" if ping else _STANZA_ERROR))

    def onStreamError(self, failure):
        self.log.warn("the XMPP server ended the stream: {reason}", reason=failure.getErrorMessage())

    def closeLink(self, link, reason, goodbye=False):
        """
        A link ends.

        :param goodbye: tell the peer's resource that this half is leaving.
        """
        if self.links.get(link.peer) is not link:
            return
        del self.links[link.peer]
        self.queue.discard(link)
        if goodbye and not self.closing and self.stream.transport is not None:
            self.stream.send("<presence type='unavailable' to={}/>".format(quoteattr(link.peer)))
        link.lost(reason)

    def goodbye(self):
        """
        The end is stopping: say so and close the stream.
        """
        if self.closing:
            return
        self.closing = True
        self.queue.stop()
        self.stream.send("<presence type='unavailable'/>")
        self.stream.sendFooter()
        self.transport.loseConnection()

    def connectionLost(self, reason):
        self.closing = True
        self.queue.stop()
        for link in list(self.links.values()):
            self.closeLink(link, reason)
        self.endpoint.sessionEnded(self, reason)
