# -*- test-case-name: tests.unit.test_xmpp,tests.loopback.test_xmpp -*-
"""
The XMPP transport: C{xmpp/client:JID} (and C{xmpp/event/client:JID}), in
and out, for sites where neither half can accept a connection but both
can reach an XMPP server, which relays between them.

Each half logs in as its own account (L{uhppoted_tunnel.transports.xmpp.login})
and the two find each other by presence, with no roster needed: a half
that logs in says it is available, then sends the other account
(C{--xmpp-peer}) directed presence with a C{<hello/>} in this project's
namespace. A half that hears available presence from one of the peer's
resources answers it with directed presence (once: an answer is not
answered), and from then on that resource is a connection, an
L{IFrameConnection} given to the shared relays, until it sends
unavailable presence, which the server sends for it when it logs out or
its connection drops (RFC 6121 4.6.3). A C{<hello/>} from a resource
already connected means that half logged in again: its old connection
ends and a new one begins.

Frames go to the peer's full JID in message stanzas
(L{uhppoted_tunnel.transports.xmpp.frames}), paced under the server's rate
limit (C{--xmpp-rate}) through a queue bounded by C{--max-send-queue}.
Stanzas from anyone but the peer, and frames that are not well formed,
are dropped with throttled warnings.

A logged-in stream that is lost is C{ClientService}'s to redial, as for
the other client ends; the connections it carried close with it.
"""

import os
from functools import partial
from xml.sax.saxutils import quoteattr

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import xmlstream
from zope.interface import alsoProvides, implementer

from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.link.bind import check_interface
from uhppoted_tunnel.transports import proxy
from uhppoted_tunnel.link.ends import ClientEnd
from uhppoted_tunnel.link.factory import FrameFactory
from uhppoted_tunnel.link.framed import tune
from uhppoted_tunnel.transports.tls.secure import watch_certificates
from uhppoted_tunnel.transports.xmpp.frames import (
    BAD_BASE64,
    BAD_FRAME,
    BAD_ID,
    DEFAULT_XMPP_RATE,
    NS_TUNNEL,
    TOO_LONG,
    Peer,
    STRANGER,
    SendQueue,
    frame_element,
    message_head,
    parse_jid,
    read_frames,
)
from uhppoted_tunnel.transports.xmpp.login import SRVEndpoint, XMPPClientEndpoint
from uhppoted_tunnel.core.counts import QUEUE_FULL
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IFrameConnection, IInEnd, IOutEnd
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.app.spec import ConnectorSpec

#: The longest password file read.
MAX_PASSWORD = 4096

_STANZA_ERROR = "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>"

#: The warning for each kind of thing dropped (C{{n}} of them, the last
#: from or for C{{sender}}).
_DROPPED = {
    STRANGER: "dropped {n} stanza(s) from others than the peer {peer}, the last from {sender}",
    BAD_ID: "dropped {n} frame(s) with a missing or bad id, the last from {sender}",
    BAD_BASE64: "dropped {n} frame(s) that were not base64, the last from {sender}",
    TOO_LONG: "dropped {n} frame(s) over --max-payload {limit} bytes, the last from {sender}",
    "full": "dropped {n} frame(s) for {sender}: {limit} bytes already wait to be sent at --xmpp-rate {rate} "
            "bytes/s (--max-send-queue)",
    "stale": "dropped {n} frame(s) that waited longer than --udp-timeout for their turn: more is sent than "
             "--xmpp-rate {rate} bytes/s allows",
}


@implementer(IFrameConnection)
class PeerLink:
    """
    One of the peer's resources, while it is available: a connection as
    the relays see it.

    :ivar head: the start of every message to it.
    """

    #: L{FrameFactory.connectionReady} tunes a connection's transport: the
    #: stream's is tuned once, at login
    transport = None

    def __init__(self, session, jid):
        """
        :param session: the L{XMPPSession} it is reached through.
        :param jid: its full JID, as text.
        """
        self.session = session
        self.peer = jid
        self.head = message_head(jid)
        self.closed = False
        self._waiting = []

    def sendFrame(self, frame_id, payload):
        return self.session.send(self, frame_id, payload)

    def close(self):
        """
        Leave: tell the peer's resource that this half is unavailable.
        """
        self.session.closeLink(self, Failure(ConnectionDone("closed")), goodbye=True)

    def whenClosed(self):
        if self.closed:
            return succeed(None)
        d = Deferred()
        self._waiting.append(d)
        return d

    def lost(self):
        self.closed = True
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)


class XMPPSession(Protocol):
    """
    One logged-in stream to the server: presence, frames in and out, and
    the links to the peer's resources. Connected (C{makeConnection}) once
    the login is done, with the stream given first (L{attach}).

    :ivar links: full JID -> L{PeerLink}, for the peer's available
        resources.
    """

    log = Logger()
    stream = None
    queue = None
    account = None
    closing = False

    def __init__(self, factory):
        self.factory = factory
        self.log_tag = factory.log_tag
        self.peer = factory.peer
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
        settings = self.factory.settings
        tune(self.transport, settings["max-send-queue"], settings["dead-peer-timeout"])
        self.queue = SendQueue(self.factory.clock, self.stream.send, self.factory.rate, settings["max-send-queue"],
                               None if settings["events"] else settings["udp-timeout"],
                               partial(self.factory.dropped, "stale", None))
        self.factory.sessionStarted(self)
        # available, so that presence to the bare JID reaches this resource;
        # then hello to the peer, whichever of its resources are online
        self.stream.send("<presence/>")
        self.stream.send("<presence to={}><hello xmlns='{}'/></presence>".format(quoteattr(self.peer.jid.full()),
                                                                                  NS_TUNNEL))

    def send(self, link, frame_id, payload):
        """
        Queue a frame for a link: see L{IFrameConnection.sendFrame}.
        """
        if self.closing:
            # the stream is being closed: nothing more may follow its end
            return False
        if self.queue.push(link, frame_element(frame_id, payload)):
            return True
        self.factory.dropped("full", link.peer)
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
        relay = self.factory.relay
        for frame_id, payload in read_frames(message, self.factory.max_payload,
                                             partial(self.factory.dropped, sender=sender)):
            relay.frameReceived(link, frame_id, payload)

    def _link(self, sender, kind):
        """
        The link of a message's sender when the fast lookup failed: the
        peer's resource written another way, or nobody's.
        """
        full = self.peer.matches(sender)
        if full is None:
            if kind != "error" and not self._own(sender):
                self.factory.dropped(STRANGER, sender)
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
                self.factory.dropped(STRANGER, sender)
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
            link = self.links[full] = PeerLink(self, full)
            self.factory.connectionReady(link)
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
            self.factory.dropped(STRANGER, sender)
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
        self.factory.connectionClosed(link, reason)
        link.lost()

    def goodbye(self):
        """
        The end is stopping: say so and close the stream (the connection
        closes once the server has read it).
        """
        if self.closing:
            return
        self.closing = True
        self.queue.stop()
        self.stream.send("<presence type='unavailable'/>")
        self.stream.sendFooter()

    def connectionLost(self, reason):
        self.closing = True
        self.queue.stop()
        for link in list(self.links.values()):
            self.closeLink(link, reason)
        self.factory.sessionEnded(self, reason)


class XMPPFactory(FrameFactory):
    """
    An C{xmpp/} end's factory: builds its L{XMPPSession} once the login is
    done, keeps the peer's links as the end's connections, and warns of
    what is dropped (throttled).

    :ivar session: the session logged in, or C{None}.
    :ivar peer: the L{Peer}.
    :ivar lost: called with the reason when a logged-in stream is lost.
    """

    session = None
    peer = None
    lost = None

    def __init__(self, relay, settings, clock, log_tag, closed=None, link=None, **kwargs):
        FrameFactory.__init__(self, relay, settings, clock, log_tag, closed, link, **kwargs)
        self.settings = settings
        self.rate = settings.get("xmpp-rate") or DEFAULT_XMPP_RATE
        self._senders = {}
        self._warnings = {kind: Throttle(clock, partial(self._warn, kind)) for kind in _DROPPED}

    def buildProtocol(self, addr):
        return XMPPSession(self)

    def sessionStarted(self, session):
        self.session = session
        self.log.info("logged in as {account}, waiting for {peer}", account=session.account.full(),
                      peer=str(self.peer))

    def sessionEnded(self, session, reason):
        if self.session is session:
            self.session = None
        self.log.info("logged out of the XMPP server: {reason}", reason=reason.getErrorMessage())
        if self.lost is not None:
            self.lost(reason)

    def dropped(self, kind, sender, n=1):
        """
        Count something dropped, for a throttled warning.

        :param kind: a key of L{_DROPPED}.
        :param sender: who sent (or was to get) it.
        """
        self._senders[kind] = sender
        self._warnings[kind].count(n)

    def _warn(self, kind, count):
        self.log.warn(_DROPPED[kind], n=count, sender=self._senders.get(kind), peer=str(self.peer),
                      limit=self.settings["max-send-queue"] if kind == "full" else self.max_payload, rate=self.rate)

    @property
    def refusedStanzas(self):
        """
        Stanzas dropped because they came from others than the peer.
        """
        return self._warnings[STRANGER].total

    def tally(self, t):
        FrameFactory.tally(self, t)
        counted = {kind: throttle.total for kind, throttle in self._warnings.items()}
        t.drop(QUEUE_FULL, counted["full"] + counted["stale"])
        t.drop(TOO_LONG, counted[TOO_LONG])
        t.drop(BAD_FRAME, counted[BAD_ID] + counted[BAD_BASE64])
        t.drop(STRANGER, counted[STRANGER])

    def closeAll(self):
        for throttle in self._warnings.values():
            throttle.flush()
        return FrameFactory.closeAll(self)


class XMPPEnd(ClientEnd):
    """
    C{xmpp/client:JID}: logs in, and keeps logging in, as the stream
    client ends dial: C{ClientService} with Go's backoff and
    C{--max-retries}, a refused login counting as a failed attempt.
    """

    factory_class = XMPPFactory

    def __init__(self, spec, role, router, reactor, settings, endpoint, peer, watch=None):
        """
        :param endpoint: the L{XMPPClientEndpoint}, which reloads the
            certificates on SIGHUP.
        :param peer: the L{Peer}.
        :param watch: the certificates' expiry watch, or C{None}.
        """
        ClientEnd.__init__(self, spec, role, router, reactor, settings, endpoint, "XMPP", watch=watch,
                           reloader=endpoint)
        self.factory.peer = peer
        self.factory.lost = partial(ClientEnd.connectionClosed, self, None)

    def connectionClosed(self, connection, reason):
        # one of the peer's resources went offline: the stream to the
        # server, which is what ClientService redials, is still up
        pass

    def stopService(self):
        if self.factory.session is not None:
            self.factory.session.goodbye()
        return ClientEnd.stopService(self)


def read_password(path):
    """
    Read an account's password: the first line of a file.

    :return: C{(password, warning)}, the warning C{None} unless others
        than its owner may read the file.
    :raise ValueError: naming the file when it cannot be used.
    """
    if not path:
        raise ValueError("xmpp/ needs --xmpp-password-file FILE (TOML xmpp-password-file): the file holding the "
                         "account's password")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_PASSWORD + 1)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as e:
        raise ValueError("--xmpp-password-file '{}': {}".format(path, e.strerror or e)) from None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError("--xmpp-password-file '{}': not UTF-8 text".format(path)) from None
    if len(data) > MAX_PASSWORD or not lines or not lines[0]:
        raise ValueError("--xmpp-password-file '{}': expected the password on the first line".format(path))
    warning = None
    if mode & 0o077:
        warning = "--xmpp-password-file '{}' may be read by others than its owner (mode {:04o}): chmod 600 it".format(
            path, mode & 0o7777)
    return lines[0], warning


def _jid(text, where, example):
    found = parse_jid(text)
    if found is None or not found.user:
        raise ValueError("{}: '{}' is not an account's JID (expected e.g. {})".format(where, text, example))
    return found


@implementer(IPlugin, IConnectorMaker)
class XMPPConnectorMaker:
    """
    Makes C{xmpp/client:JID} and C{xmpp/event/client:JID} ends.
    """

    log = Logger()
    log_tag = "XMPP"
    prefixes = ("xmpp/client:", "xmpp/event/client:")

    def roles(self, prefix):
        return frozenset([IN, OUT])

    def relaysEvents(self, prefix):
        return "/event/" in prefix

    def makeEnd(self, spec, role, settings, router, reactor):
        account = _jid(spec.address, "'{}'".format(spec.text), "xmpp/client:site@example.org")
        if not settings.get("xmpp-peer"):
            raise ValueError("xmpp/ needs --xmpp-peer JID (TOML xmpp-peer): the account of the other half")
        peer = Peer(_jid(settings["xmpp-peer"], "--xmpp-peer", "host@example.org"))
        if peer.bare == account.userhost():
            raise ValueError("--xmpp-peer {} is this half's own account: each half needs its own".format(peer.bare))
        password, warning = read_password(settings.get("xmpp-password-file"))
        if spec.interface is not None:
            check_interface(spec.interface)
        server = settings.get("xmpp-server")

        def to(address, text):
            # through the proxy chosen for a TLS end (https_proxy), if any
            return proxy.client_endpoint(reactor, ConnectorSpec(text, "", spec.interface, address), settings, True,
                                         self.log_tag)

        if server:
            dial = to(server, "--xmpp-server " + server)
        else:
            dial = SRVEndpoint(reactor, account.host, dial=lambda host, port: to(
                "{}:{}".format(host, port), "{} ({}'s DNS SRV records)".format(spec.text, account.host)))
            server = str(dial)
        endpoint = XMPPClientEndpoint(dial, server, account, password,
                                      lambda: tls.client_options(settings, account.host), reactor,
                                      settings["handshake-timeout"])
        end = XMPPEnd(spec, role, router, reactor, settings, endpoint, peer,
                      watch_certificates(settings, "client", reactor, self.log_tag))
        alsoProvides(end, IInEnd if role == IN else IOutEnd)
        if warning is not None:
            self.log.warn("{warning}", warning=warning)
        return end
