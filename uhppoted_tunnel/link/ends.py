# -*- test-case-name: tests.unit.test_stream,tests.unit.test_events -*-
"""
The stream ends: C{tcp/server} and C{tcp/client}, each as an in or an out
end, written once for every byte-stream transport. A secure transport
(C{tls/}) is the same ends over other endpoints: its handshake, timeout
and diagnosis live in its own module, which hands these ends only
connections that are ready.

What an end does with frames is its relay's
(L{uhppoted_tunnel.core.relays}): the end owns the listening or the
dialling and the set of ready connections, and its protocols talk to the
relay directly.

A client end is a C{ClientService}, which owns the reconnect loop: the
first retry comes 5 s after a failure and the delay doubles up to
C{--max-retry-delay}; after C{--max-retries} failed attempts in a row the
end fails (L{uhppoted_tunnel.link.lifecycle}) and the tunnel stops.
"""

import ipaddress
import socket

from twisted.application.internet import ClientService
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, gatherResults, maybeDeferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import alsoProvides, implementer

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.link.bind import check_interface
from uhppoted_tunnel.transports import proxy
from uhppoted_tunnel.transports.endpoints import server_endpoint
from uhppoted_tunnel.core.relays import TracingRelay, relay_for
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IInEnd, IOutEnd
from uhppoted_tunnel.link.lifecycle import CLIENT, SERVER, EndLifecycle
from uhppoted_tunnel.link.limits import LISTEN_BACKLOG, limit_endpoint
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.core.counts import QUEUE_FULL, TOO_LONG
from uhppoted_tunnel.link.framed import DEFAULT_DEAD_PEER_TIMEOUT, DEFAULT_MAX_SEND_QUEUE, FramedProtocol, underlying

#: The first reconnect delay; it doubles after each failure.
FIRST_RETRY = 5.0

#: Go: TCP keepalive every 15 s on stream sockets.
KEEPALIVE = 15


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


def tune(transport, max_send_queue=DEFAULT_MAX_SEND_QUEUE, dead_peer_timeout=DEFAULT_DEAD_PEER_TIMEOUT):
    """
    Set up the TCP connection under a (possibly TLS-wrapped) transport:
    Nagle off; Go's 15 s keepalive; C{TCP_USER_TIMEOUT}, so that a peer
    that vanished (data or keepalive probes unacknowledged) is noticed
    within C{dead_peer_timeout}; and what may be queued for the peer, in
    the kernel (C{SO_SNDBUF}) and in the transport (past which the peer
    counts as not reading).
    """
    transport = underlying(transport)
    if not hasattr(transport, "setTcpNoDelay"):
        return
    transport.setTcpNoDelay(True)
    transport.setTcpKeepAlive(True)
    transport.bufferSize = max_send_queue
    handle = getattr(transport, "getHandle", lambda: None)()
    if hasattr(handle, "setsockopt") and hasattr(socket, "TCP_KEEPIDLE"):
        try:
            # the kernel's share of what is queued for the peer (Linux
            # doubles it for its own bookkeeping)
            handle.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, max_send_queue)
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE)
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(dead_peer_timeout * 1000))
        except OSError:
            pass


def _loopback(address):
    """
    Whether a listening address is reachable from this machine only (a
    loopback IP address, or not an IP address at all: a UNIX socket).
    """
    host = getattr(address, "host", None)
    if host is None:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


class FrameFactory(Factory):
    """
    Builds the connections of one stream end and keeps those that are
    ready (the relay's C{connections}); tells the relay and the end of each
    one that comes and goes.

    :ivar connections: the ready connections, oldest first.
    :ivar protocols: every open connection, to close at stop: the ready
        ones, and those a secure transport holds in their handshake (each
        with C{close()} and C{whenClosed()}).
    """

    noisy = False
    log = Logger()
    #: what each connection is: a byte stream's L{FramedProtocol}, or a
    #: message transport's own L{IFrameConnection} (built the same way)
    protocol = FramedProtocol

    def __init__(self, relay, settings, clock, log_tag, closed=None, link=None):
        """
        :param relay: the end's L{uhppoted_tunnel.interfaces.IRelay}.
        :param settings: the tunnel's options (C{max-payload},
            C{max-send-queue}, C{stall-timeout}, C{dead-peer-timeout}).
        :param clock: an C{IReactorTime}.
        :param log_tag: the tag of the end's log lines.
        :param closed: called with C{(connection, reason)} when a ready
            connection closes, or C{None}.
        :param link: the end's L{uhppoted_tunnel.link.lifecycle.LinkState}, told
            of each connection ready and closed, or C{None}.
        """
        self.relay = relay
        self.clock = clock
        self.max_payload = settings["max-payload"]
        self.max_send_queue = settings["max-send-queue"]
        self.stall_timeout = settings["stall-timeout"]
        self.dead_peer_timeout = settings["dead-peer-timeout"]
        self.log_tag = log_tag
        self.closed = closed
        self.link = link
        self.connections = []
        self.protocols = set()
        self._dropped = Throttle(clock, self._warnDropped)
        self._last = {}
        self._too_long = Throttle(clock, self._warnTooLong)
        self._stalled = Throttle(clock, self._warnStalled)

    def buildProtocol(self, addr):
        protocol = self.protocol(self.max_payload)
        protocol.factory = self
        protocol.relay = self.relay
        protocol.log_tag = self.log_tag
        return protocol

    def connectionReady(self, connection):
        tune(connection.transport, self.max_send_queue, self.dead_peer_timeout)
        self.protocols.add(connection)
        self.connections.append(connection)
        self.log.info("connected to {peer}", peer=connection.peer)
        if self.link is not None:
            self.link.connected(connection, connection.peer)
        self.relay.connected(connection)

    def connectionClosed(self, connection, reason):
        self.protocols.discard(connection)
        if connection in self.connections:
            self.connections.remove(connection)
            self.relay.disconnected(connection)
            if self.link is not None:
                self.link.disconnected(connection)
        self.log.info("connection to {peer} closed", peer=connection.peer)
        if self.closed is not None:
            self.closed(connection, reason)

    def frameDropped(self, connection):
        """
        A frame for a peer that is not reading was dropped.
        """
        self._dropped.count()

    def frameTooLong(self, connection, error):
        """
        A peer sent a frame longer than C{--max-payload}: it is dropped.
        """
        self._last["too long"] = (connection.peer, error)
        self._too_long.count()

    def _warnTooLong(self, count):
        peer, error = self._last["too long"]
        if count == 1:
            self.log.warn("closing connection from {peer}: {reason}", peer=peer, reason=error)
        else:
            self.log.warn("closed {count} connections that sent impossible frames, the last from {peer}: {reason}",
                          count=count, peer=peer, reason=error)

    def stalledTooLong(self, connection, timeout):
        """
        A peer read nothing for C{--stall-timeout}: it is dropped.
        """
        self._last["stalled"] = connection.peer
        self._stalled.count()

    def _warnStalled(self, count):
        self.log.warn("closed {count} connection(s) that read nothing sent to them for {timeout:g}s, the last "
                      "to {peer} (--stall-timeout)", count=count, timeout=self.stall_timeout,
                      peer=self._last["stalled"])

    def _warnDropped(self, count):
        self.log.warn("dropped {n} frame(s) for peers that are not reading what is sent to them "
                      "(--max-send-queue {limit} bytes each)", n=count, limit=self.max_send_queue)

    @property
    def dropped(self):
        """
        The number of frames dropped for peers that were not reading.
        """
        return self._dropped.total

    def tally(self, t):
        """
        Add the frames dropped to a L{uhppoted_tunnel.observe.telemetry.Tally}.
        """
        t.drop(QUEUE_FULL, self._dropped.total)
        t.drop(TOO_LONG, self._too_long.total)

    def closeAll(self):
        """
        Close every connection, and report the drops not yet reported.

        :return: a Deferred that fires once they have all closed.
        """
        for throttle in (self._dropped, self._too_long, self._stalled):
            throttle.flush()
        closing = [protocol.whenClosed() for protocol in self.protocols]
        for protocol in list(self.protocols):
            protocol.close()
        return gatherResults(closing, consumeErrors=True)


class StreamEnd(EndLifecycle, MultiService):
    """
    What every stream end shares: its relay, its connections and its
    lifecycle. Subclasses add the listening or dialling.
    """

    log = Logger()
    log_tag = "TCP"
    #: the certificate expiry watch of a secure end, or C{None}
    watch = None
    #: what keeps the end's ready connections and tells the relay of them
    #: (a message transport's connections are not L{FramedProtocol}s, so
    #: its end names its own L{FrameFactory})
    factory_class = FrameFactory

    def __init__(self, spec, role, router, reactor, settings, log_tag="TCP"):
        """
        :param spec: the connector spec.
        :param role: L{IN} or L{OUT}.
        :param router: the tunnel's router (used by an in end).
        :param reactor: the reactor.
        :param settings: the tunnel's options.
        :param log_tag: the tag of the end's log lines (C{TCP}, C{TLS}).
        """
        MultiService.__init__(self)
        self.spec = spec
        self.role = role
        self.router = router
        self.reactor = reactor
        self.events = settings["events"]
        self.log_tag = log_tag
        self.factory = self.factory_class(None, settings, reactor, log_tag, self.connectionClosed, self.link)
        self.connections = self.factory.connections
        self.relay = relay_for(role, settings, router, reactor, self.connections, log_tag)
        self.relay.failed = self.failed
        self.factory.relay = TracingRelay(self.relay, log_tag) if settings["debug"] else self.relay
        if role == OUT:
            # the router calls the relay straight: nothing in between
            self.send = self.factory.relay.send

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

    def tally(self, t):
        """
        Add what the end counted to a L{uhppoted_tunnel.observe.telemetry.Tally}.
        """
        self.factory.tally(t)
        count = getattr(self.relay, "tally", None)
        if count is not None:
            count(t)
        t.endpoint(getattr(self, "endpoint", None))
        t.watch(self.watch)


class ServerEnd(StreamEnd):
    """
    C{tcp/server:ADDRESS}: listens for peers.
    """

    link_kind = SERVER

    def __init__(self, spec, role, router, reactor, settings, endpoint, log_tag="TCP", secure=False):
        """
        :param secure: whether the transport authenticates and encrypts
            (TLS); a plain end on a network address is warned of.
        """
        StreamEnd.__init__(self, spec, role, router, reactor, settings, log_tag)
        self.endpoint = endpoint
        self.secure = secure
        self.port = None
        self._listening = None

    def startService(self):
        StreamEnd.startService(self)
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallbacks(self._listened, self._cannotListen)

    def _listened(self, port):
        self._listening = None
        self.port = port
        address = port.getHost()
        self.log.info("listening on {address}", address=format_address(address))
        if not self.secure and not _loopback(address):
            self.log.warn("{address} is a plain {kind} end on a network address: anyone who can reach it can read "
                          "every request (card numbers, PINs) and forge replies; across networks you do not "
                          "control, use tls/ or wss/ with --client-auth", address=format_address(address),
                          kind=self.log_tag)
        self.listening(port)

    def _cannotListen(self, failure):
        self._listening = None
        if not failure.check(CancelledError):
            self.cannotListen(self.spec.address, failure)

    def stopService(self):
        if self._listening is not None:
            self._listening.cancel()
        port, self.port = self.port, None
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

    def __init__(self, spec, role, router, reactor, settings, endpoint, log_tag="TCP"):
        StreamEnd.__init__(self, spec, role, router, reactor, settings, log_tag)
        self.max_retries = settings["max-retries"]
        self.delay = retry_policy(settings["max-retry-delay"])
        self.failures = 0
        self.reconnects = 0
        self._refused = 0
        self._after_loss = False
        self.endpoint = endpoint
        self._dialled = _Dialled(endpoint)
        self.client = ClientService(self._dialled, self.factory, retryPolicy=self._retry, clock=reactor)
        self.client.setServiceParent(self)

    def startService(self):
        StreamEnd.startService(self)
        self.listening(None)

    def connectionClosed(self, connection, reason):
        self._after_loss = True
        if reason.check(LinkRefused):
            self._refused += 1
            self._dialled.why = reason
        else:
            self._refused = 0

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


@implementer(IPlugin, IConnectorMaker)
class StreamConnectorMaker:
    """
    Makes the C{KIND/server} and C{KIND/client} ends of a stream transport.
    A secure transport subclasses it and wraps the endpoints.

    :ivar kind: the transport name, e.g. C{tcp}.
    """

    log_tag = "TCP"
    #: whether the transport authenticates and encrypts its peers
    secure = False
    #: the connection its endpoints connect (see L{FrameFactory.protocol})
    protocol = FramedProtocol

    def __init__(self, kind="tcp"):
        self.kind = kind
        # the Go tunnel of January 2023 named event ends explicitly
        self.prefixes = (kind + "/server:", kind + "/client:", kind + "/event/server:", kind + "/event/client:")

    def roles(self, prefix):
        return frozenset([IN, OUT])

    def relaysEvents(self, prefix):
        return "/event/" in prefix

    def makeEnd(self, spec, role, settings, router, reactor):
        if spec.interface is not None:
            check_interface(spec.interface)
        if spec.prefix.endswith("/server:"):
            end = ServerEnd(spec, role, router, reactor, settings, self.serverEndpoint(reactor, spec, settings),
                            self.log_tag, self.secure)
        else:
            end = ClientEnd(spec, role, router, reactor, settings, self.clientEndpoint(reactor, spec, settings),
                            self.log_tag)
        end.factory.protocol = self.protocol
        alsoProvides(end, IInEnd if role == IN else IOutEnd)
        return end

    def serverEndpoint(self, reactor, spec, settings):
        """
        The endpoint a server end listens on, whose connections reach the
        end's factory once they are ready for frames: a listen backlog of
        L{LISTEN_BACKLOG}, and the connection caps (C{--max-connections},
        C{--max-connections-per-source}) outside anything a secure
        transport adds, so that a refused connection costs no handshake.
        """
        return limit_endpoint(server_endpoint(reactor, spec, backlog=LISTEN_BACKLOG,
                                              freebind=settings.get("freebind", False)), settings, reactor,
                              self.log_tag)

    def clientEndpoint(self, reactor, spec, settings):
        """
        The endpoint a client end dials, whose C{connect} fires once the
        connection is ready for frames (and fails if it never is): through
        an HTTP proxy when C{--proxy} or the environment names one for a
        Go C{HOST:PORT} (L{uhppoted_tunnel.transports.proxy}; C{https_proxy}
        when the transport is L{secure}), else straight to the address.
        """
        return proxy.client_endpoint(reactor, spec, settings, self.secure, self.log_tag)
