# -*- test-case-name: tests.unit.test_limits -*-
"""
Connection caps for server ends: at most C{--max-connections} open
connections per end, and at most C{--max-connections-per-source} from one
source address, as HAProxy's C{maxconn} and nginx's C{limit_conn} do.

A connection over a cap is closed as soon as it is accepted, before any
protocol (or TLS) sees it: its factory's C{buildProtocol} returns C{None},
so Twisted closes the socket at once. But when the end is full and some
connection from a source holding more than the newcomer's would has not
proved itself (L{prove}: a TLS handshake with a client
certificate, a valid frame, a whole request) after its probation
(C{--connection-probation}, C{PROBATION} by default),
the oldest such is closed to make room instead, so idle connections that
never speak cannot lock a real peer out. Each refusal is counted and
reported through a L{Throttle} (the first at once, then a count at most
every 10 s), naming the cap, its flag and the peer.

Use either form around a server end's factory or endpoint::

    port = endpoint.listen(limit_connections(factory, settings, reactor, "TCP"))
    endpoint = limit_endpoint(endpoint, settings, reactor, "HTTP")

Wrap outside TLS (the endpoint given to L{uhppoted_tunnel.transports.tls.certs.wrap_server}
is the limited one) so that a refused connection costs no handshake.
"""

from types import MappingProxyType

from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from zope.interface import implementer

from uhppoted_tunnel.interfaces import ICountingEndpoint, IProvable

from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.link.lifecycle import StoppingPort

#: What an endpoint that counts none of it reports (read only).
NOTHING = MappingProxyType({})

#: The default cap on open connections per server end: far above what a
#: site or a few browsers use, and well under the usual 1,024-descriptor
#: limit, so that a flood is refused before it starves the process.
DEFAULT_MAX_CONNECTIONS = 512

#: The default cap on open connections from one source address: a quarter
#: of an end's, so that one source cannot take a whole end.
DEFAULT_MAX_CONNECTIONS_PER_SOURCE = 128

#: Seconds a new connection may stay unproven before it may be closed to
#: make room for a newcomer (C{--connection-probation}): well under the
#: HTTP request deadline, so that drip-feeding connections can be.
PROBATION = 5.0

#: The listen backlog of the server ends that take it (Twisted's default
#: is 50; the kernel trims it to C{net.core.somaxconn}).
LISTEN_BACKLOG = 1024


def source_of(address):
    """
    The source a connection is counted under.

    :param address: the peer's C{IAddress}.
    :return: its host for an IP address; C{None} (not counted per
        source) for anything else, such as a UNIX socket's peer.
    """
    return getattr(address, "host", None)


def describe(address):
    """
    :return: C{HOST:PORT} for an IP address, else C{str(address)}.
    """
    host, port = getattr(address, "host", None), getattr(address, "port", None)
    if host is None:
        return str(address)
    return ("[{}]:{}" if ":" in host else "{}:{}").format(host, port)


class ConnectionLimits:
    """
    Counts open connections, in total and per source, against two caps.

    :ivar total: the number open.
    :ivar sources: open connections by source (only sources with some).
    :ivar refused: connections refused, by cap (C{"max-connections"},
        C{"max-connections-per-source"}), since the start.
    """

    def __init__(self, max_connections, max_per_source):
        """
        :param max_connections: the cap on open connections.
        :param max_per_source: the cap on open connections from one source.
        """
        self.max_connections = max_connections
        self.max_per_source = max_per_source
        self.total = 0
        self.sources = {}
        self.refused = {"max-connections": 0, "max-connections-per-source": 0}
        #: unproven connections closed to make room for newcomers
        self.evicted = 0

    def check(self, source):
        """
        :param source: the new connection's L{source_of}.
        :return: C{None} if it may be admitted, else the key of the cap
            it would pass.
        """
        if self.total >= self.max_connections:
            return "max-connections"
        if source is not None and self.sources.get(source, 0) >= self.max_per_source:
            return "max-connections-per-source"
        return None

    def opened(self, source):
        self.total += 1
        if source is not None:
            self.sources[source] = self.sources.get(source, 0) + 1

    def closed(self, source):
        self.total -= 1
        if source is not None:
            left = self.sources[source] - 1
            if left:
                self.sources[source] = left
            else:
                del self.sources[source]


def prove(transport):
    """
    Tell the counted connection under a transport (through any wrapped
    around it, such as TLS) that its peer has proved itself.

    :param transport: a protocol's transport, or the counted connection.
    :return: whether a counted connection was found.
    """
    while transport is not None:
        if IProvable.providedBy(transport):
            transport.proven()
            return True
        transport = transport.transport if isinstance(transport, ProtocolWrapper) else None
    return False


@implementer(IProvable)
class _Counted(ProtocolWrapper):
    """
    A connection the caps count until it closes. What arrives and what is
    written go straight between the socket and the wrapped protocol, so
    counting costs the relay's hot path nothing.
    """

    source = None
    evicted = False

    def proven(self):
        self.factory.unproven.pop(self, None)

    def __init__(self, factory, wrappedProtocol):
        ProtocolWrapper.__init__(self, factory, wrappedProtocol)
        self.dataReceived = wrappedProtocol.dataReceived

    def makeConnection(self, transport):
        self.write = transport.write
        self.writeSequence = transport.writeSequence
        ProtocolWrapper.makeConnection(self, transport)


class LimitingFactory(WrappingFactory):
    """
    Wraps a server factory to refuse connections over the caps.

    :ivar limits: the L{ConnectionLimits}.
    :ivar log_tag: the end's log tag (e.g. C{"HTTP"}).
    """

    protocol = _Counted
    noisy = False
    log = Logger()

    def __init__(self, wrappedFactory, limits, clock, log_tag, probation=PROBATION):
        """
        :param wrappedFactory: the end's factory.
        :param limits: a L{ConnectionLimits}.
        :param clock: an C{IReactorTime}, for the throttled warnings.
        :param log_tag: the end's log tag.
        :param probation: seconds a connection may stay unproven before it
            may be closed to make room for a newcomer.
        """
        WrappingFactory.__init__(self, wrappedFactory)
        self.probation = probation
        self.limits = limits
        self.log_tag = log_tag
        self.clock = clock
        #: the connections not yet proven, oldest first, with when they opened
        self.unproven = {}
        self._last = {}
        self._throttles = {
            cap: Throttle(clock, lambda count, cap=cap: self._warn(cap, count))
            for cap in limits.refused
        }
        self._evictions = Throttle(clock, self._warnEvicted)

    def buildProtocol(self, addr):
        source = source_of(addr)
        cap = self.limits.check(source)
        if cap == "max-connections" and self._evict(source):
            cap = self.limits.check(source)
        if cap is not None:
            self.limits.refused[cap] += 1
            self._last[cap] = addr
            self._throttles[cap].count()
            return None
        wrapped = self.wrappedFactory.buildProtocol(addr)
        if wrapped is None:
            return None
        protocol = self.protocol(self, wrapped)
        protocol.source = source
        return protocol

    def registerProtocol(self, protocol):
        WrappingFactory.registerProtocol(self, protocol)
        self.limits.opened(protocol.source)
        self.unproven[protocol] = self.clock.seconds()

    def unregisterProtocol(self, protocol):
        self.unproven.pop(protocol, None)
        if protocol in self.protocols and not protocol.evicted:
            self.limits.closed(protocol.source)
        WrappingFactory.unregisterProtocol(self, protocol)

    def _evict(self, source):
        """
        Close the oldest unproven connection past its probation from a
        source that holds more connections than the newcomer's would, if
        any, to make room for the newcomer: so a flood cannot make room for
        itself by churning, while a source with few connections (a real
        peer) finds room among the flood's.

        :param source: the newcomer's L{source_of}.
        :return: whether one was closed.
        """
        sources = self.limits.sources
        floor = sources.get(source, 0) + 1
        if not sources or max(sources.values()) <= floor:
            return False
        now = self.clock.seconds()
        for victim, since in self.unproven.items():
            if now - since < self.probation:
                return False
            if sources.get(victim.source, 0) > floor:
                del self.unproven[victim]
                victim.evicted = True
                self.limits.closed(victim.source)
                self.limits.evicted += 1
                self._last["evicted"] = victim.transport.getPeer()
                self._evictions.count()
                victim.transport.abortConnection()
                return True
        return False

    def _warnEvicted(self, count):
        self.log.warn("closed {count} connection(s) that had not proved themselves within {probation:g}s "
                      "(--connection-probation), the oldest first, the last from {peer}, to make room under "
                      "--max-connections ({limit}) for new ones", count=count, probation=self.probation,
                      peer=describe(self._last["evicted"]),
                      limit=self.limits.max_connections)

    def _warn(self, cap, count):
        peer = self._last[cap]
        if cap == "max-connections":
            limit, what = self.limits.max_connections, "open connections"
        else:
            limit, what = self.limits.max_per_source, "open connections from " + str(source_of(peer))
        self.log.warn("refused {count} connection(s), the last from {peer}: {limit} {what} already "
                      "(--{cap}; {total} open)", count=count, peer=describe(peer), limit=limit, what=what, cap=cap,
                      total=self.limits.total)

    def flush(self):
        """
        Report the refusals not yet reported (when the end stops).
        """
        for throttle in self._throttles.values():
            throttle.flush()
        self._evictions.flush()


def limits_from(settings):
    """
    :param settings: the tunnel's options (C{max-connections},
        C{max-connections-per-source}; a missing key takes its default).
    :return: a new L{ConnectionLimits}.
    """
    return ConnectionLimits(settings.get("max-connections") or DEFAULT_MAX_CONNECTIONS,
                            settings.get("max-connections-per-source") or DEFAULT_MAX_CONNECTIONS_PER_SOURCE)


def limit_connections(factory, settings, clock, log_tag):
    """
    Cap the connections a server end's factory accepts.

    :param factory: the end's C{IProtocolFactory}.
    :param settings: the tunnel's options (C{max-connections},
        C{max-connections-per-source}; C{connection-probation}).
    :param clock: an C{IReactorTime}, for the throttled warnings.
    :param log_tag: the end's log tag, for the warnings.
    :return: a L{LimitingFactory} (an C{IProtocolFactory}) to listen with;
        its C{limits} tell what is open and what was refused.
    """
    return LimitingFactory(factory, limits_from(settings), clock, log_tag,
                           settings.get("connection-probation") or PROBATION)


@implementer(IStreamServerEndpoint, ICountingEndpoint)
class LimitedServerEndpoint:
    """
    A server endpoint whose every listening factory is capped with
    L{limit_connections}.

    :ivar factory: the last L{LimitingFactory} listened with, or C{None}.
    """

    #: it does no handshake and sees no frames
    handshake_failures = dropped = NOTHING

    def __init__(self, endpoint, settings, clock, log_tag):
        self.endpoint = endpoint
        self.settings = settings
        self.clock = clock
        self.log_tag = log_tag
        self.factory = None

    @property
    def refused(self):
        """
        Connections refused by the caps, by cap.
        """
        return NOTHING if self.factory is None else self.factory.limits.refused

    def listen(self, factory):
        self.factory = limited = limit_connections(factory, self.settings, self.clock, self.log_tag)
        return self.endpoint.listen(limited).addCallback(StoppingPort, limited.flush)



def limit_endpoint(endpoint, settings, clock, log_tag):
    """
    Cap the connections accepted through a server endpoint (see
    L{limit_connections}).

    :return: a L{LimitedServerEndpoint}.
    """
    return LimitedServerEndpoint(endpoint, settings, clock, log_tag)
