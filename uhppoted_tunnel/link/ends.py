# -*- test-case-name: tests.unit.test_stream,tests.unit.test_events -*-
"""
The ends of every transport: L{ServerEnd} listens and L{ClientEnd} dials,
each as an in or an out end. A transport supplies only an endpoint whose
C{listen} or C{connect} hands the end connections that are ready for
frames (after a handshake or an upgrade, if any), the connection class
its factory builds (providing
L{uhppoted_tunnel.interfaces.IFrameConnection}, and reporting to the
factory as L{uhppoted_tunnel.interfaces.IConnectionReporter} declares)
and, if secure, its certificates' watch and reloader; its maker
(L{uhppoted_tunnel.transports.tcp.maker} for the stream transports)
builds the end with them.

What an end does with frames is its relay's
(L{uhppoted_tunnel.core.relays}): the end owns the listening or the
dialling, its factory (L{uhppoted_tunnel.link.factory}) the set of ready
connections, and its protocols talk to the relay directly.

A client end is a C{ClientService}, which owns the reconnect loop: the
first retry comes 5 s after a failure and the delay doubles up to
C{--max-retry-delay}; after C{--max-retries} failed attempts in a row the
end fails (L{uhppoted_tunnel.link.lifecycle}) and the tunnel stops.
"""

from twisted.application.service import IService, MultiService
from twisted.internet.defer import CancelledError, gatherResults, maybeDeferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import directlyProvides, implementer

from uhppoted_tunnel.core.addresses import format_address, is_loopback
from uhppoted_tunnel.core.relay import TracingRelay
from uhppoted_tunnel.core.relays import relay_for
from uhppoted_tunnel.interfaces import IN, OUT, IEnd, IInEnd, IOutEnd, IReplyTimer, ISecureEnd, ITally
from uhppoted_tunnel.link.lifecycle import CLIENT, SERVER, EndLifecycle
from uhppoted_tunnel.link.factory import FrameFactory
from uhppoted_tunnel.link.framed import FramedProtocol

#: The first reconnect delay; it doubles after each failure.
FIRST_RETRY = 5.0


class LinkRefused(Exception):
    """
    The peer refused this end after the connection was ready: a TLS 1.3
    server refuses a client's certificate only after the client's
    handshake is done. A client end counts it as a failed attempt.
    """


def retry_policy(max_delay, first=FIRST_RETRY):
    """
    The Go tunnel's reconnect schedule: 5 s, 10 s, 20 s ... up to
    C{max_delay}, with no jitter.

    :param max_delay: the longest delay in seconds.
    :return: a function of the number of failures in a row (1 for the
        first), giving the delay before the next attempt.
    """

    def policy(failures):
        return min(first * 2 ** min(max(failures, 1) - 1, 32), max_delay)

    return policy


@implementer(IEnd, ITally)
class StreamEnd(EndLifecycle, MultiService):
    """
    What every stream end shares: its relay, its connections and its
    lifecycle. Subclasses add the listening or dialling.

    An end provides L{IInEnd} or L{IOutEnd} from its construction, as its
    role says; an out end's C{send} is its relay's own (the router calls
    it straight: nothing in between). An end given its certificates' watch
    and reloader provides L{ISecureEnd}.
    """

    log = Logger()
    log_tag = "TCP"
    #: the certificate expiry watch of a secure end, or C{None}
    watch = None
    #: the endpoint the end listens on or dials, if it has one
    endpoint = None
    #: what keeps the end's ready connections and tells the relay of them
    factory_class = FrameFactory

    def __init__(self, spec, role, router, reactor, settings, log_tag="TCP", protocol=FramedProtocol, watch=None,
                 reloader=None):
        """
        :param spec: the connector spec.
        :param role: L{IN} or L{OUT}.
        :param router: the tunnel's router (used by an in end; C{None}
            for an out end).
        :param reactor: the reactor.
        :param settings: the tunnel's options.
        :param log_tag: the tag of the end's log lines (C{TCP}, C{TLS}).
        :param protocol: what each connection is (see L{FrameFactory}).
        :param watch: the L{uhppoted_tunnel.interfaces.ICertificateWatch}
            of a secure end's certificates, or C{None}.
        :param reloader: the L{uhppoted_tunnel.interfaces.ICertificateReloader}
            of a secure end (its endpoint), or C{None}.
        """
        MultiService.__init__(self)
        self.spec = spec
        self.role = role
        self.router = router
        self.reactor = reactor
        self.events = settings["events"]
        self.log_tag = log_tag
        self.connections = []
        self.relay = relay_for(role, settings, router, reactor, self.connections, log_tag, self.failed)
        relay = TracingRelay(self.relay, log_tag) if settings["debug"] else self.relay
        self.factory = self.factory_class(relay, settings, reactor, log_tag, self.connectionClosed, self.link,
                                          protocol=protocol, connections=self.connections)
        provided = [IInEnd if role == IN else IOutEnd]
        if role == OUT:
            # the router calls the relay straight: nothing in between
            self.send = relay.send
            if IReplyTimer.providedBy(self.relay):
                provided.append(IReplyTimer)
        if watch is not None:
            # a child of the end, added last by the subclass
            self.watch = watch
        self._reloader = reloader
        if reloader is not None:
            provided.append(ISecureEnd)
        directlyProvides(self, *provided)

    @property
    def reply_times(self):
        """
        An out end whose relay times its replies (L{IReplyTimer}) has them
        timed there.
        """
        return self.relay.reply_times

    @reply_times.setter
    def reply_times(self, times):
        self.relay.reply_times = times

    def startService(self):
        self.relay.start()
        MultiService.startService(self)

    def stopService(self):
        self.relay.stop()
        stopped = MultiService.stopService(self)
        return gatherResults([stopped, self.factory.closeAll()], consumeErrors=True)

    def connectionClosed(self, connection, reason):
        """
        A connection closed (after it was ready or not).
        """

    def reloadCertificates(self):
        """
        Read a secure end's certificates again (see L{ISecureEnd}).

        :return: what its reloader returns (True if reloaded), or C{None}
            for a plain end.
        """
        if self._reloader is not None:
            return self._reloader.reloadCertificates()

    def tally(self, t):
        """
        Add what the end counted to a L{uhppoted_tunnel.observe.telemetry.Tally}.
        """
        self.factory.tally(t)
        if ITally.providedBy(self.relay):
            self.relay.tally(t)
        t.endpoint(self.endpoint)
        t.watch(self.watch)


class ServerEnd(StreamEnd):
    """
    C{tcp/server:ADDRESS}: listens for peers.
    """

    link_kind = SERVER

    def __init__(self, spec, role, router, reactor, settings, endpoint, log_tag="TCP", secure=False,
                 protocol=FramedProtocol, watch=None, reloader=None):
        """
        :param endpoint: the C{IStreamServerEndpoint} to listen on, whose
            connections reach the end's factory once ready for frames.
        :param secure: whether the transport authenticates and encrypts
            (TLS); a plain end on a network address is warned of.

        The other parameters are L{StreamEnd}'s.
        """
        StreamEnd.__init__(self, spec, role, router, reactor, settings, log_tag, protocol, watch, reloader)
        self.endpoint = endpoint
        self.secure = secure
        if watch is not None:
            watch.setServiceParent(self)

    def startService(self):
        StreamEnd.startService(self)
        self.listenOn(self.endpoint, self.factory)

    def announce(self, address):
        StreamEnd.announce(self, address)
        if not self.secure and not is_loopback(address):
            self.log.warn("{address} is a plain {kind} end on a network address: anyone who can reach it can read "
                          "every request (card numbers, PINs) and forge replies; across networks you do not "
                          "control, use tls/ or wss/ with --client-auth", address=format_address(address),
                          kind=self.log_tag)

    def stopService(self):
        port = self.cancelListen()
        stopping = StreamEnd.stopService(self)
        if port is None:
            return stopping
        return gatherResults([stopping, maybeDeferred(port.stopListening)], consumeErrors=True)


@implementer(IStreamClientEndpoint)
class _Dialled:
    """
    The endpoint a client end dials, remembering why the last attempt
    failed (C{ClientService} keeps no reason for the log).
    """

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.why = None

    def connect(self, factory):
        return self.endpoint.connect(factory).addErrback(self._remember)

    def _remember(self, failure):
        if not failure.check(CancelledError):
            self.why = failure
        return failure


class ClientEnd(StreamEnd):
    """
    C{tcp/client:ADDRESS}: dials a peer and keeps redialling.

    C{ClientService} owns the loop and counts failed attempts in a row (a
    dial that fails and, over TLS, a handshake that fails or times out, as
    the secure transport's endpoint reports them). The one failure it
    cannot see is a peer that refuses the link once it is ready
    (L{LinkRefused}), which this end adds to its count. The count sets the
    delay before the next dial (5 s, 10 s, 20 s, ... up to
    C{--max-retry-delay}) and, past C{--max-retries}, fails the end.

    :ivar failures: failed attempts in a row, as of the last retry.
    :ivar reconnects: dials after the first.
    """

    link_kind = CLIENT

    def __init__(self, spec, role, router, reactor, settings, endpoint, log_tag="TCP", protocol=FramedProtocol,
                 watch=None, reloader=None, silent_close=None):
        """
        :param endpoint: the C{IStreamClientEndpoint} to dial, whose
            C{connect} fires once the connection is ready for frames. An
            endpoint that is also an C{IService} (a session that outlives
            its attempts, as a login to a message server does) runs as the end's child,
            stopped before the end's C{ClientService}.
        :param silent_close: what it probably means when the server closes
            a L{FramedProtocol} connection without sending a byte, by a
            reset or after this end sent a frame (a plain client at a
            secure server, which resets a connection whose handshake never
            comes, and closes one that sends something else), or C{None}:
            such a close then counts as a failed attempt, with this
            reason.

        The other parameters are L{StreamEnd}'s.
        """
        StreamEnd.__init__(self, spec, role, router, reactor, settings, log_tag, protocol, watch, reloader)
        self.max_retries = settings["max-retries"]
        self.delay = retry_policy(settings["max-retry-delay"])
        self.failures = 0
        self.reconnects = 0
        self._refused = 0
        self._after_loss = False
        self.silent_close = silent_close
        self.endpoint = endpoint
        self._dialled = _Dialled(endpoint)
        # ClientService brings automat: only a half with a client end loads it
        from twisted.application.internet import ClientService

        self.client = ClientService(self._dialled, self.factory, retryPolicy=self._retry, clock=reactor)
        self.client.setServiceParent(self)
        if watch is not None:
            watch.setServiceParent(self)
        if IService.providedBy(endpoint):
            # children stop in reverse order: the session goes first
            endpoint.setServiceParent(self)

    def startService(self):
        StreamEnd.startService(self)
        self.listening(None)

    def connectionClosed(self, connection, reason):
        self._after_loss = True
        if self._silent(connection, reason):
            reason = Failure(LinkRefused(self.silent_close))
        if reason.check(LinkRefused):
            self._refused += 1
            self._dialled.why = reason
        else:
            self._refused = 0

    def _silent(self, connection, reason):
        """
        Whether the server reset C{connection}, or closed it after a frame,
        having sent nothing (a plain server that stops closes an idle
        connection cleanly: that is not a failed attempt).
        """
        if self.silent_close is None or not self.running or not isinstance(connection, FramedProtocol):
            return False
        if connection.heard or connection.closing:
            return False
        return reason.check(ConnectionLost) is not None or (
            connection.spoke and reason.check(ConnectionDone) is not None)

    def _retry(self, attempt):
        """
        C{ClientService}'s retry policy: C{attempt} counts its failures in a
        row, the loss of a ready connection included (as attempt 1).
        """
        failures = self.failures = self._refused + attempt - (1 if self._after_loss else 0)
        self.reconnects += 1
        delay = self.delay(failures)
        if failures == 0:
            self.log.info("reconnecting to {address} in {delay:g}s", address=self.spec.address, delay=delay)
        elif 0 <= self.max_retries < failures:
            self.failed("could not connect to {address} after {attempts} attempt(s): {reason}",
                        address=self.spec.address, attempts=failures, reason=self._why())
        else:
            self.log.warn("could not connect to {address} ({reason}): retrying in {delay:g}s",
                          address=self.spec.address, reason=self._why(), delay=delay)
        return delay

    def tally(self, t):
        StreamEnd.tally(self, t)
        t.reconnects += self.reconnects

    def _why(self):
        why = self._dialled.why
        return "unknown" if why is None else why.getErrorMessage()
