# -*- test-case-name: tests.unit.test_lifecycle -*-
"""
How an end says that it is listening, or that it cannot go on: written
once for every end (L{uhppoted_tunnel.interfaces.IEnd}).

An end that cannot start (a port in use) or cannot go on (a client out of
retries) calls L{EndLifecycle.failed} with a one-line message naming the
address: the message is logged as an error, every L{whenListening} still
waiting fails with L{EndFailed}, and every L{whenFailed} fires with it.
Nothing is raised out of C{startService}, so the console script and
twistd see the same thing.

An end that listens does it with L{EndLifecycle.listenOn}: once the
endpoint listens, the end's C{port} is the listening port, its
L{EndLifecycle.announce} says so in the log and L{EndLifecycle.listening}
tells whoever waits; a listen that fails (and is not cancelled) is
L{EndLifecycle.cannotListen}. Its C{stopService} calls
L{EndLifecycle.cancelListen}, which cancels a listen still under way and
hands back the port to stop.

Each end also keeps its L{LinkState} (C{end.link}): whether it is up,
since when, and its connected peers, for C{/readyz}, the status page and
the metrics. L{listening} and L{failed} move it; an end whose links are
connections reports each one ready and closed with C{end.link.connected}
and C{end.link.disconnected} (the stream ends' C{FrameFactory} does, for
every transport built on it).

A server end whose factory holds connections of its own (in a TLS
handshake, an upgrade, a call not yet made) or reports of its own (the
connection caps' refusals) listens on a L{StoppingPort}, whose
C{stopListening} lets go of them too.
"""

from twisted.internet.defer import CancelledError, Deferred, fail, gatherResults, maybeDeferred, succeed
from twisted.python.failure import Failure

from uhppoted_tunnel.core.addresses import format_address


class EndFailed(Exception):
    """
    An end could not start or could not go on; the message says why, in
    one line naming the address.
    """


#: What an end's link state depends on (L{LinkState.kind}): a socket is up
#: once it listens (C{udp/*}, C{http/}); a server once it listens and has a
#: peer; a client once it is connected, and "connecting" while it dials.
SOCKET, SERVER, CLIENT = "socket", "server", "client"

#: The states an end can be in.
UP, DOWN, CONNECTING, FAILED = "up", "down", "connecting", "failed"


class LinkState:
    """
    Whether one end is up, since when, and who is connected to it.

    :ivar kind: L{SOCKET}, L{SERVER} or L{CLIENT}.
    :ivar state: L{UP}, L{DOWN}, L{CONNECTING} or L{FAILED}.
    :ivar since: when C{state} began (seconds since the epoch), or C{None}
        when the end has no clock.
    :ivar peers: connection -> C{(address, connected since)}, oldest first.
    :ivar ups: times the end went up; C{downs}: times it went from up to
        any other state.
    """

    __slots__ = ("kind", "clock", "started", "failure", "peers", "state", "since", "ups", "downs")

    def __init__(self, kind=SOCKET, clock=None):
        """
        :param kind: see L{kind}.
        :param clock: an C{IReactorTime} for the times, or C{None}.
        """
        self.kind = kind
        self.clock = clock
        self.started = False
        self.failure = None
        self.peers = {}
        self.state = DOWN
        self.since = self._now()
        self.ups = 0
        self.downs = 0

    def _now(self):
        return None if self.clock is None else self.clock.seconds()

    def _derive(self):
        if self.failure is not None:
            return FAILED
        if self.kind == SOCKET:
            return UP if self.started else DOWN
        if self.peers:
            return UP if self.started else DOWN
        return CONNECTING if self.kind == CLIENT and self.started else DOWN

    def _update(self):
        state = self._derive()
        if state != self.state:
            if state == UP:
                self.ups += 1
            elif self.state == UP:
                self.downs += 1
            self.state = state
            self.since = self._now()

    def start(self):
        """
        The end listens (or, for a client, has begun dialling).
        """
        self.started = True
        self._update()

    def fail(self, message):
        """
        The end cannot start or cannot go on.
        """
        self.failure = message
        self._update()

    def connected(self, connection, address):
        """
        A connection is ready.

        :param connection: the connection (any object, the key of its
            entry).
        :param address: the peer as text (C{host:port}).
        """
        self.peers[connection] = (address, self._now())
        self._update()

    def disconnected(self, connection):
        """
        A ready connection has closed.
        """
        if self.peers.pop(connection, None) is not None:
            self._update()


class EndLifecycle:
    """
    A mixin for an end (a C{Service}): L{whenListening} and L{whenFailed},
    and what the end calls to settle them; and its L{link}.
    """

    #: see L{LinkState.kind}
    link_kind = SOCKET
    #: the end's C{IReactorTime}, which times its link, if it has one
    reactor = None
    _link = None

    @property
    def link(self):
        """
        The end's L{LinkState}, timed by its C{reactor} (if it has one).
        """
        if self._link is None:
            self._link = LinkState(self.link_kind, self.reactor)
        return self._link

    #: C{(port,)} once listening, the message once failed, and who waits
    _end_listening = None
    _end_failure = None
    _listening_waiters = ()
    _failed_waiters = ()

    def whenListening(self):
        """
        :return: a Deferred that fires once the end is listening (with its
            listening port, whose C{getHost()} tells the real port of a
            C{:0} address) or, for an end that dials or only sends, once it
            has started (with C{None}); it fails with L{EndFailed} if the
            end could not start.
        """
        if self._end_failure is not None:
            return fail(EndFailed(self._end_failure))
        if self._end_listening is not None:
            return succeed(self._end_listening[0])
        d = Deferred()
        self._listening_waiters = self._listening_waiters + (d,)
        return d

    def whenFailed(self):
        """
        :return: a Deferred that fires with a one-line message if the end
            cannot start or cannot go on; it never fires for an end that
            stops normally.
        """
        if self._end_failure is not None:
            return succeed(self._end_failure)
        d = Deferred()
        self._failed_waiters = self._failed_waiters + (d,)
        return d

    def listening(self, port=None):
        """
        The end is listening (or, for a client, has started).

        :param port: the listening port, or C{None}.
        """
        if self._end_listening is not None or self._end_failure is not None:
            return
        self._end_listening = (port,)
        self.link.start()
        waiting, self._listening_waiters = self._listening_waiters, ()
        for d in waiting:
            d.callback(port)

    def failed(self, log_format, **fields):
        """
        The end cannot start or cannot go on: log an error with its fields
        and tell whoever waits the formatted message. Only the first
        failure counts.

        :param log_format: a C{twisted.logger} format naming the address
            and the reason, e.g. C{"cannot listen on {address}: {reason}"}.
        :param fields: its fields.
        """
        if self._end_failure is not None:
            return
        message = self._end_failure = log_format.format(**fields)
        self.link.fail(message)
        self.log.error(log_format, **fields)
        waiting, self._listening_waiters = self._listening_waiters, ()
        for d in waiting:
            d.errback(Failure(EndFailed(message)))
        waiting, self._failed_waiters = self._failed_waiters, ()
        for d in waiting:
            d.callback(message)

    def cannotListen(self, address, failure):
        """
        A listen failed: one line naming the address and OpenSSL's, the
        kernel's or the parser's reason.

        :param address: the address as the user wrote it.
        :param failure: the L{Failure} or exception.
        """
        reason = failure.getErrorMessage() if isinstance(failure, Failure) else str(failure)
        self.failed("cannot listen on {address}: {reason}", address=address, reason=reason)

    #: the listening port once L{listenOn} has listened, until L{cancelListen}
    port = None
    #: the listen under way (a Deferred), or C{None}
    _listen = None

    def listenOn(self, endpoint, factory):
        """
        Listen on C{endpoint} with C{factory}: once listening, C{port} is
        the listening port, L{announce} says so and L{listening} tells
        whoever waits; if it cannot, L{cannotListen} names the end's
        address (C{spec.address}).

        :param endpoint: an C{IStreamServerEndpoint}.
        :param factory: the factory it listens with.
        """
        self._listen = endpoint.listen(factory)
        self._listen.addCallbacks(self._listened, self._cannotListen)

    def _listened(self, port):
        self._listen = None
        self.port = port
        self.announce(port.getHost())
        self.listening(port)

    def _cannotListen(self, failure):
        self._listen = None
        if not failure.check(CancelledError):
            self.cannotListen(self.spec.address, failure)

    def announce(self, address):
        """
        Say in the log that the end listens (an end adds its warnings).

        :param address: the address listened on (the port's C{getHost()}).
        """
        self.log.info("listening on {address}", address=format_address(address))

    def cancelListen(self):
        """
        Cancel a listen still under way (for C{stopService}).

        :return: the listening port, forgotten (the caller stops it), or
            C{None}.
        """
        if self._listen is not None:
            self._listen.cancel()
        port, self.port = self.port, None
        return port


class StoppingPort:
    """
    A listening port whose C{stopListening} also has its factory let go of
    what it holds (C{also}: close the connections not yet handed on,
    report what is not yet reported); everything else is the port's.
    """

    def __init__(self, port, also):
        """
        :param port: the C{IListeningPort}.
        :param also: called once when the port stops listening, before
            it; a Deferred it returns is waited for too.
        """
        self._port = port
        self._also = also

    def __getattr__(self, name):
        return getattr(self._port, name)

    def stopListening(self):
        """
        :return: a Deferred that fires once the port and C{also} are done.
        """
        return gatherResults([maybeDeferred(self._also), maybeDeferred(self._port.stopListening)],
                             consumeErrors=True)
