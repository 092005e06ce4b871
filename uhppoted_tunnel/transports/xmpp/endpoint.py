# -*- test-case-name: tests.unit.test_xmpp,tests.unit.test_xmppendpoint -*-
"""
The XMPP session as an endpoint: an C{xmpp/} end's connections are the
peer's resources, reported by an L{XMPPEndpoint} that logs in to the
server as the end's own account (L{uhppoted_tunnel.transports.xmpp.login})
and keeps the stream (L{uhppoted_tunnel.transports.xmpp.session}).

- C{connect(factory)} logs in (or uses the stream already logged in) and
  fires with the connection of the first of the peer's resources that
  comes online, or fails with the reason the login failed or the stream
  was lost: a client end's C{ClientService} owns the retries, the backoff
  and C{--max-retries}, as for every other client end. A resource that
  comes online while no C{connect} waits (another of a bare JID's
  resources, or one that logged in again) is a connection too, built by
  the factory of the one before, so the end has each of the peer's
  resources as its own connection.
- C{listen(factory)} logs in and reports every resource that comes
  online through C{factory}, until the stream ends.

The endpoint is also a service of its end: stopping it says this half is
unavailable and closes the stream.
"""

from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.interfaces import ICertificateReloader, ICountingEndpoint
from uhppoted_tunnel.link.limits import NOTHING
from uhppoted_tunnel.transports.xmpp.connection import JIDAddress
from uhppoted_tunnel.transports.xmpp.drops import Drops
from uhppoted_tunnel.transports.xmpp.options import DEFAULT_XMPP_RATE
from uhppoted_tunnel.transports.xmpp.login import LoginFailed
from uhppoted_tunnel.transports.xmpp.session import XMPPSession


class _SessionFactory(Factory):
    """
    Builds the session of each login.
    """

    noisy = False

    def __init__(self, endpoint):
        self.endpoint = endpoint

    def buildProtocol(self, addr):
        return XMPPSession(self.endpoint)


@implementer(IListeningPort)
class XMPPPort:
    """
    An endpoint listening for the peer's resources.
    """

    def __init__(self, endpoint, factory):
        self.endpoint = endpoint
        self.factory = factory

    def startListening(self):
        pass

    def stopListening(self):
        """
        Report no more resources, and log out.
        """
        return self.endpoint.stopListening(self.factory)

    def getHost(self):
        return JIDAddress(self.endpoint.account.full())


@implementer(IStreamClientEndpoint, IStreamServerEndpoint, ICountingEndpoint, ICertificateReloader)
class XMPPEndpoint(Service):
    """
    Logs in as an account and reports the peer's resources as connections.

    :ivar endpoint: the L{uhppoted_tunnel.transports.xmpp.login.XMPPClientEndpoint}
        that logs in (its TLS handshake failures are the end's).
    :ivar session: the session logged in, or C{None}.
    :ivar drops: the end's L{Drops}.
    """

    log = Logger()
    log_tag = "XMPP"
    session = None
    _login = None
    _others = None

    def __init__(self, login, peer, settings, clock):
        """
        :param login: the L{uhppoted_tunnel.transports.xmpp.login.XMPPClientEndpoint}.
        :param peer: the L{uhppoted_tunnel.transports.xmpp.frames.Peer}.
        :param settings: the tunnel's options (C{max-payload},
            C{max-send-queue}, C{dead-peer-timeout}, C{udp-timeout},
            C{events}, C{xmpp-rate}).
        :param clock: an C{IReactorTime}.
        """
        self.endpoint = login
        self.account = login.account
        self.server = login.server
        self.peer = peer
        self.settings = settings
        self.clock = clock
        self.rate = settings.get("xmpp-rate") or DEFAULT_XMPP_RATE
        self.drops = Drops(clock, peer, settings["max-payload"], settings["max-send-queue"], self.rate)
        self.sessions = _SessionFactory(self)
        #: C{(factory, Deferred)} of each C{connect} waiting for a resource
        self._waiting = []
        #: the factories of C{listen}, and the Deferreds waiting for a login
        self._listeners = []
        self._listens = []
        self._ended = []

    def reloadCertificates(self):
        """
        Read the TLS files again for the next login.
        """
        return self.endpoint.reloadCertificates()

    @property
    def refusedStanzas(self):
        """
        Stanzas dropped because they came from others than the peer.
        """
        return self.drops.refusedStanzas

    #: the login does the handshakes (C{endpoint}); no caps
    handshake_failures = refused = NOTHING

    @property
    def dropped(self):
        """
        The metrics' reason -> what was dropped (see L{Drops.counts}).
        """
        return self.drops.counts()

    def connect(self, factory):
        waiting = Deferred(self._cancel)
        self._waiting.append((factory, waiting))
        self._logIn()
        return waiting

    def listen(self, factory):
        self._listeners.append(factory)
        if self.session is not None:
            return succeed(XMPPPort(self, factory))
        listening = Deferred()
        self._listens.append((factory, listening))
        self._logIn()
        return listening

    def stopListening(self, factory):
        if factory in self._listeners:
            self._listeners.remove(factory)
        return self.logOut()

    def _logIn(self):
        if self.session is not None or self._login is not None:
            return
        self._login = self.endpoint.connect(self.sessions)
        self._login.addCallbacks(self._loggedIn, self._notLoggedIn)

    def _loggedIn(self, session):
        self._login = None

    def _notLoggedIn(self, failure):
        self._login = None
        if not failure.check(CancelledError):
            self._fail(failure)

    def _fail(self, failure):
        waiting, self._waiting = self._waiting, []
        listens, self._listens = self._listens, []
        for factory, d in listens:
            self._listeners.remove(factory)
        for _, d in waiting + listens:
            d.errback(failure)

    def _cancel(self, waiting):
        # ClientService cancels its attempt when the end stops
        self._waiting = [(factory, d) for factory, d in self._waiting if d is not waiting]
        if not self._waiting and not self._listens and self._login is not None:
            self._login.cancel()

    def sessionStarted(self, session):
        """
        A login is done.
        """
        self.session = session
        self.log.info("logged in as {account}, waiting for {peer}", account=session.account.full(),
                      peer=str(self.peer))
        listens, self._listens = self._listens, []
        for factory, d in listens:
            d.callback(XMPPPort(self, factory))

    def peerOnline(self, transport):
        """
        One of the peer's resources is online: make its connection, for the
        C{connect} waiting first, else for C{listen}, else with the factory
        of the connection before.

        :param transport: its L{uhppoted_tunnel.transports.xmpp.connection.PeerTransport}.
        :return: whether it is a connection.
        """
        waiting = None
        if self._waiting:
            factory, waiting = self._waiting.pop(0)
        elif self._listeners:
            factory = self._listeners[-1]
        else:
            factory = self._others
        if factory is None:
            return False
        protocol = factory.buildProtocol(transport.getPeer())
        if protocol is None:
            if waiting is not None:
                waiting.errback(Failure(LoginFailed("refused by the end")))
            return False
        transport.protocol = protocol
        protocol.makeConnection(transport)
        if transport.factory is not None:
            self._others = transport.factory
        if waiting is not None:
            waiting.callback(protocol)
        return True

    def sessionEnded(self, session, reason):
        """
        A logged-in stream was lost: a C{connect} still waiting fails with
        the reason.
        """
        self.log.info("logged out of the XMPP server: {reason}", reason=reason.getErrorMessage())
        if self.session is not session:
            return
        self.session = None
        self._fail(Failure(LoginFailed("logged out of the XMPP server: {}".format(reason.getErrorMessage()))))
        ended, self._ended = self._ended, []
        for d in ended:
            d.callback(None)

    def logOut(self):
        """
        Say this half is unavailable and close the stream.

        :return: a Deferred that fires once it has closed.
        """
        if self._login is not None:
            self._login.cancel()
        if self.session is None:
            return succeed(None)
        ended = Deferred()
        self._ended.append(ended)
        self.session.goodbye()
        return ended

    def stopService(self):
        Service.stopService(self)
        self.drops.flush()
        return self.logOut()
