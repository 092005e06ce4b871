# -*- test-case-name: tests.test_stream -*-
"""
The stream ends: C{tcp/server} and C{tcp/client}, each as an in or an out
end. Framing, reconnecting, queueing and logging are written once here and
shared by every stream transport (TLS wraps the same ends).

An I{in} stream end receives request frames and answers each on the
connection it came by, with the same id. An I{out} stream end numbers the
requests it sends, fans each one out to every connected peer, and matches
reply frames by connection and id in a L{ReplyTable}.

In an event tunnel the out end sends events from an L{EventBuffer} and
forgets each one when the peer acknowledges it (an empty frame with its
id), sending the rest again after a reconnect; the in end forwards each
event once (L{SeenEvents}) and acknowledges it.

A client end is a C{ClientService}: the first retry comes 5 s after a
failure and the delay doubles up to C{--max-retry-delay}; after
C{--max-retries} failures in a row the tunnel stops with an error.
"""

import socket
from collections import deque
from functools import partial

from twisted.application.internet import ClientService
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IHandshakeListener, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from OpenSSL import SSL
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.plugin import IPlugin
from zope.interface import alsoProvides, implementer

from uhppoted_tunnel.bind import check_interface, reactor_for
from uhppoted_tunnel.events import EventBuffer, SeenEvents, event_key
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IInEnd, IOutEnd
from uhppoted_tunnel.logging import hexdump
from uhppoted_tunnel.router import REPLY_IDLE, ReplyTable, Throttle, is_unicast
from uhppoted_tunnel.spec import is_ip_address, parse_host_port
from uhppoted_tunnel.wire import FramedProtocol, _describe_address

#: Go: a client gives up dialling after 5 s.
DIAL_TIMEOUT = 5

#: Go: TCP keepalive every 15 s on stream sockets.
KEEPALIVE = 15

#: Requests held while an out end has no peer (Go holds 16).
QUEUE_SIZE = 16

#: The first reconnect delay; it doubles after each failure.
FIRST_RETRY = 5.0

#: A peer that has not acknowledged an event this long after it was sent
#: is taken for one that never will (a Go tunnel).
ACK_GRACE = 5.0

#: Endpoint types that mark an address as a Twisted endpoint description
#: rather than a Go C{HOST:PORT}.
ENDPOINT_TYPES = frozenset(["tcp", "tcp6", "unix", "ssl", "tls", "systemd", "tor", "onion"])


def retry_policy(max_delay, first=FIRST_RETRY):
    """
    The Go tunnel's reconnect schedule: 5 s, 10 s, 20 s ... up to
    C{max_delay}, with no jitter.

    :param max_delay: the longest delay in seconds.
    :return: a C{ClientService} retry policy (called with 1 for the first
        retry).
    """

    def policy(attempt):
        return min(first * 2 ** min(attempt - 1, 32), max_delay)

    return policy


@implementer(IHandshakeListener)
class StreamProtocol(FramedProtocol):
    """
    A framed connection of a stream end: keepalive on, Nagle off.

    Over TLS the connection counts as made only once the handshake has
    completed; a handshake that fails or takes longer than the end's
    C{handshake_timeout} drops the connection with a warning that says what
    probably happened, and a client counts it as a failed attempt.

    :ivar closed: fires when the connection has closed.
    """

    _timer = None
    announced = False
    timed_out = False
    #: event tunnels: whether the peer acknowledges events (None: not known yet)
    acks = None
    ack_timer = None

    def connectionMade(self):
        _tune(self.transport)
        self.peer = _describe_address(self.transport.getPeer())
        self.closed = Deferred()
        end = self.factory.end
        end.protocols.add(self)
        if end.handshake_timeout is None:
            self._announce()
        else:
            self._timer = end.reactor.callLater(end.handshake_timeout, self._handshakeTimedOut)

    def handshakeCompleted(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._announce()

    def _announce(self):
        self.announced = True
        self.factory.connectionMade(self)

    def _handshakeTimedOut(self):
        self._timer = None
        self.timed_out = True
        timeout = self.factory.end.handshake_timeout
        self.log.warn("TLS handshake with {peer} timed out after {timeout:g}s: is the peer a plain TCP connector?",
                      peer=self.peer, timeout=timeout)
        self.factory.end.handshakeFailed(self, Failure(HandshakeTimeout(timeout)))
        self.transport.abortConnection()

    def connectionLost(self, reason):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        end = self.factory.end
        end.protocols.discard(self)
        if self.announced:
            FramedProtocol.connectionLost(self, reason)
            if reason.check(SSL.Error):
                # TLS 1.3: the server checks our certificate after our
                # handshake is done, and refuses it with an alert
                self.log.warn("TLS connection with {peer} failed: {reason}", peer=self.peer,
                              reason=_tls_reason(reason))
                end.handshakeFailed(self, reason)
        elif not self.timed_out:
            self.log.warn("TLS handshake with {peer} failed: {reason}", peer=self.peer, reason=_tls_reason(reason))
            end.handshakeFailed(self, reason)
        self.closed.callback(None)


class HandshakeTimeout(Exception):
    """
    A TLS handshake did not complete in time.
    """

    def __str__(self):
        return "TLS handshake timed out after {:g}s".format(self.args[0])


def _tune(transport):
    """
    Nagle off and Go's 15 s keepalive on the TCP connection under a
    (possibly TLS-wrapped) transport.
    """
    while not hasattr(transport, "setTcpNoDelay") and hasattr(transport, "transport"):
        transport = transport.transport
    if not hasattr(transport, "setTcpNoDelay"):
        return
    transport.setTcpNoDelay(True)
    transport.setTcpKeepAlive(True)
    handle = getattr(transport, "getHandle", lambda: None)()
    if hasattr(handle, "setsockopt") and hasattr(socket, "TCP_KEEPIDLE"):
        try:
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE)
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE)
        except OSError:
            pass


def _tls_reason(reason):
    """
    A one-line reason for a failed handshake, from OpenSSL's error stack.
    """
    value = reason.value
    errors = getattr(value, "args", [None])[0]
    if isinstance(errors, list) and errors and isinstance(errors[0], tuple):
        return "; ".join(str(e[-1]) for e in errors)
    return reason.getErrorMessage()


class StreamFactory(Factory):
    """
    Builds the connections of one stream end and passes their events to it.
    """

    noisy = False

    def __init__(self, end):
        self.end = end

    def buildProtocol(self, addr):
        protocol = StreamProtocol(self.end.max_payload)
        protocol.factory = self
        protocol.log_tag = self.end.log_tag
        return protocol

    def connectionMade(self, protocol):
        self.end.connectionMade(protocol)

    def frameReceived(self, protocol, frame_id, payload):
        self.end.frameReceived(protocol, frame_id, payload)

    def connectionLost(self, protocol, reason):
        self.end.connectionLost(protocol, reason)


class StreamEnd(MultiService):
    """
    What every stream end shares: its connections, its role and its
    logging. Subclasses add the listening or dialling child service.
    """

    log = Logger()
    log_tag = "TCP"
    events = False

    def __init__(self, spec, role, router, reactor, settings):
        """
        :param spec: the connector spec.
        :param role: L{IN} or L{OUT}.
        :param router: the tunnel's router (used by an in end).
        :param reactor: the reactor.
        :param settings: the tunnel's options.
        """
        MultiService.__init__(self)
        self.spec = spec
        self.role = role
        self.router = router
        self.reactor = reactor
        self.max_payload = settings["max-payload"]
        self.udp_timeout = settings["udp-timeout"]
        self.trace = settings["debug"]
        self.fatal = None
        #: seconds a TLS handshake may take; None for a plain stream
        self.handshake_timeout = None
        #: every connection, including those still in a TLS handshake
        self.protocols = set()
        #: connections ready for frames
        self.connections = []
        self.factory = StreamFactory(self)
        self.replies = ReplyTable(reactor.seconds)
        self.queue = deque(maxlen=QUEUE_SIZE)
        self._next_id = 0
        self._sweeper = None
        self.events = settings["events"]
        if self.events:
            self.spool = settings["event-spool"]
            self.buffer = EventBuffer(reactor.seconds, settings["event-buffer"], settings["event-buffer-age"])
            self.window = settings["event-window"]
            self.seen = None
            self.duplicates = 0
            self._lost = Throttle(reactor.seconds)

    def startService(self):
        if self.events:
            self._startEvents()
        elif self.role == OUT:
            self._sweeper = LoopingCall(self.replies.sweep)
            self._sweeper.clock = self.reactor
            self._sweeper.start(REPLY_IDLE / 3, now=False)
        MultiService.startService(self)

    def stopService(self):
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        self.queue.clear()
        if self.events:
            self._stopEvents()
        stopped = MultiService.stopService(self)
        closing = [protocol.closed for protocol in self.protocols]
        for protocol in list(self.protocols):
            protocol.transport.loseConnection()
        return gatherResults([stopped] + closing, consumeErrors=True)

    # connections

    def handshakeFailed(self, protocol, reason):
        """
        A TLS connection closed before its handshake completed (already
        logged by the protocol).
        """

    def connectionMade(self, protocol):
        self.connections.append(protocol)
        self.log.info("connected to {peer}", peer=protocol.peer)
        if self.events:
            if self.role == OUT:
                self._pump()
        elif self.queue:
            self._flush(protocol)

    def connectionLost(self, protocol, reason):
        if protocol in self.connections:
            self.connections.remove(protocol)
        self.replies.discard(protocol)
        if protocol.ack_timer is not None:
            protocol.ack_timer.cancel()
            protocol.ack_timer = None
        if self.events and self.role == OUT and not self.connections:
            self.buffer.requeue()
        self.log.info("connection to {peer} closed", peer=protocol.peer)

    # frames

    def frameReceived(self, protocol, frame_id, payload):
        if self.trace:
            self.log.debug("received frame {id} ({n} bytes) from {peer}\n{dump}", id=frame_id, n=len(payload),
                           peer=protocol.peer, dump=hexdump(payload))
        if self.role == IN:
            if not payload:
                return
            if self.events:
                self._eventReceived(protocol, frame_id, payload)
            else:
                self.router.request(payload, partial(self._reply, protocol, frame_id))
        elif self.events:
            # an event sender hears only acknowledgements; like the Go
            # tunnel's, it discards anything else sent back
            if not payload:
                self._acknowledged(protocol, frame_id)
        elif not (payload and self.replies.dispatch(protocol, frame_id, payload)) and self.trace:
            self.log.debug("dropped reply {id} from {peer}: no request is waiting for it", id=frame_id,
                           peer=protocol.peer)

    def _reply(self, protocol, frame_id, payload):
        """
        Answer a request frame on the connection it came by.
        """
        if protocol.transport is not None and protocol in self.connections:
            protocol.sendFrame(frame_id, payload)

    def send(self, payload, reply):
        """
        Send a request to every connected peer (out ends only), or hold it
        until one connects.
        """
        if self.events:
            self._sendEvent(payload)
            return
        if not self.connections:
            if len(self.queue) == self.queue.maxlen:
                self.log.warn("not connected: dropped the oldest of {n} queued requests", n=len(self.queue))
            self.queue.append((self.reactor.seconds(), payload, reply))
            return
        frame_id = self._allocate()
        once = is_unicast(payload)
        for protocol in self.connections:
            if reply is not None:
                self.replies.add(protocol, frame_id, reply, once)
            protocol.sendFrame(frame_id, payload)
        if self.trace:
            self.log.debug("sent frame {id} ({n} bytes)\n{dump}", id=frame_id, n=len(payload), dump=hexdump(payload))

    # events

    def _startEvents(self):
        if self.role == IN:
            self.seen = SeenEvents(self.window, self.spool + ".seen")
            return
        path = self.spool + ".events"
        spooled = EventBuffer.unspool(path)
        for stamp, payload in spooled:
            self.buffer.add(self._allocate(), payload, stamp)
        if spooled:
            self.log.info("{n} undelivered event(s) from the last run, from {path}", n=len(spooled), path=path)

    def _stopEvents(self):
        for protocol in self.connections:
            if protocol.ack_timer is not None:
                protocol.ack_timer.cancel()
                protocol.ack_timer = None
        if self.role == IN:
            if self.seen is not None:
                self.seen.close()
            return
        self.buffer.expire()
        if self.buffer:
            path = self.spool + ".events"
            self.buffer.spool(path)
            self.log.info("kept {n} undelivered event(s) for the next run in {path}", n=len(self.buffer), path=path)

    def _eventReceived(self, protocol, frame_id, payload):
        """
        Forward an event once, and acknowledge it.
        """
        key = event_key(payload)
        if key is not None and key in self.seen:
            self.duplicates += 1
            if self.trace:
                self.log.debug("event {index} from {serial} already forwarded", serial=key[0], index=key[1])
        else:
            self.router.request(payload, None)
            if key is not None:
                self.seen.add(key)
        protocol.sendFrame(frame_id, b"")

    def _sendEvent(self, payload):
        dropped = self.buffer.add(self._allocate(), payload)
        if dropped:
            report = self._lost.count(dropped)
            if report:
                self.log.warn("event buffer full: dropped the {n} oldest event(s) ({total} lost so far; "
                              "--event-buffer {limit}, --event-buffer-age {age:g}s)", n=report,
                              total=self.buffer.lost, limit=self.buffer.limit, age=self.buffer.max_age)
        self._pump()

    def _pump(self):
        """
        Send every event not yet sent on the current link, oldest first.
        """
        if not self.connections:
            return
        unacknowledged = all(protocol.acks is False for protocol in self.connections)
        for frame_id, payload in self.buffer.unsent():
            for protocol in self.connections:
                protocol.sendFrame(frame_id, payload)
                if protocol.acks is None and protocol.ack_timer is None:
                    protocol.ack_timer = self.reactor.callLater(ACK_GRACE, self._noAcknowledgements, protocol)
            if unacknowledged:
                self.buffer.acknowledge(frame_id)
            else:
                self.buffer.sent(frame_id)

    def _acknowledged(self, protocol, frame_id):
        if protocol.acks is not True:
            protocol.acks = True
            if protocol.ack_timer is not None:
                protocol.ack_timer.cancel()
                protocol.ack_timer = None
        self.buffer.acknowledge(frame_id)

    def _noAcknowledgements(self, protocol):
        """
        The peer has acknowledged nothing: it is a Go tunnel, or another
        that does not acknowledge. Relay to it as the Go tunnel does.
        """
        protocol.ack_timer = None
        if protocol.acks is None:
            protocol.acks = False
            self.buffer.release_sent()
            self.log.info("{peer} does not acknowledge events (a Go tunnel?): relaying without acknowledgements",
                          peer=protocol.peer)

    def _allocate(self):
        self._next_id = self._next_id + 1 if self._next_id < 0xFFFFFFFF else 1
        return self._next_id

    def _flush(self, protocol):
        """
        Send what was queued while no peer was connected, less what is
        older than C{--udp-timeout} (nobody is waiting for it any more).
        """
        cutoff = self.reactor.seconds() - self.udp_timeout
        queued, self.queue = list(self.queue), deque(maxlen=QUEUE_SIZE)
        stale = 0
        for stamp, payload, reply in queued:
            if stamp < cutoff:
                stale += 1
            else:
                self.send(payload, reply)
        if stale:
            self.log.info("dropped {n} queued request(s) older than the UDP timeout", n=stale)


class ServerEnd(StreamEnd):
    """
    C{tcp/server:ADDRESS}: listens for peers.
    """

    def __init__(self, spec, role, router, reactor, settings, endpoint):
        StreamEnd.__init__(self, spec, role, router, reactor, settings)
        self.endpoint = endpoint
        self.port = None
        self._listening = None

    def startService(self):
        StreamEnd.startService(self)
        self._listening = self.endpoint.listen(self.factory)
        self._listening.addCallbacks(self._listened, self._cannotListen)

    def _listened(self, port):
        self.port = port
        self.log.info("listening on {address}", address=_describe_host(port.getHost()))
        return port

    def whenListening(self):
        """
        :return: a Deferred that fires with the listening port (whose
            C{getHost()} tells the real port number of a C{:0} address).
        """
        result = Deferred()
        self._listening.addCallback(lambda port: result.callback(port) or port)
        return result

    def _cannotListen(self, failure):
        if failure.check(CancelledError):
            return
        message = "cannot listen on {}: {}".format(self.spec.address, failure.getErrorMessage())
        self.log.error("{message}", message=message)
        if self.fatal is not None:
            self.fatal(message)

    def stopService(self):
        if self._listening is not None:
            self._listening.cancel()
        port, self.port = self.port, None
        stopping = StreamEnd.stopService(self)
        if port is None:
            return stopping
        return gatherResults([stopping, maybeDeferred(port.stopListening)], consumeErrors=True)


@implementer(IStreamClientEndpoint)
class _DialEndpoint:
    """
    Wraps a client endpoint to report each failed dial to its end.
    """

    def __init__(self, endpoint, failed):
        """
        :param endpoint: the endpoint dialled.
        :param failed: called with the failure of each dial that fails.
        """
        self.endpoint = endpoint
        self.failed = failed

    def connect(self, factory):
        def failed(failure):
            self.failed(failure)
            return failure

        return self.endpoint.connect(factory).addErrback(failed)


class ClientEnd(StreamEnd):
    """
    C{tcp/client:ADDRESS}: dials a peer and keeps redialling.

    The end counts failed attempts in a row itself: a dial that fails and,
    over TLS, a connection whose handshake fails or times out, or that the
    server closes with a TLS alert (with TLS 1.3 a server refuses a client
    certificate only after the client's handshake is done). The count sets
    the delay before the next dial (5 s, 10 s, 20 s, ... up to
    C{--max-retry-delay}) and, past C{--max-retries}, stops the tunnel; a
    connection that closes without a TLS error resets it. (C{ClientService}
    alone would see a failed handshake as a good connection lost, and retry
    it every 5 s forever.)
    """

    def __init__(self, spec, role, router, reactor, settings, endpoint, wrap=None):
        """
        :param wrap: wraps the end's factory for each dial (TLS), or C{None}.
        """
        StreamEnd.__init__(self, spec, role, router, reactor, settings)
        self.max_retries = settings["max-retries"]
        self.failures = 0
        self.last_failure = None
        self.delay = retry_policy(settings["max-retry-delay"])
        factory = self.factory if wrap is None else wrap(self.factory)
        self.client = ClientService(_DialEndpoint(endpoint, self.attemptFailed), factory, retryPolicy=self._retry,
                                    clock=reactor)
        self.client.setServiceParent(self)

    def attemptFailed(self, failure):
        """
        Count a failed attempt; stop the tunnel after too many in a row.

        :param failure: why it failed.
        """
        self.failures += 1
        self.last_failure = failure
        if 0 <= self.max_retries < self.failures and self.running and self.fatal is not None:
            message = "could not connect to {} after {} attempt(s): {}".format(
                self.spec.address, self.failures, failure.getErrorMessage())
            self.log.error("{message}", message=message)
            self.fatal(message)

    def handshakeFailed(self, protocol, reason):
        self.attemptFailed(reason)

    def connectionLost(self, protocol, reason):
        StreamEnd.connectionLost(self, protocol, reason)
        if not reason.check(SSL.Error):
            # a connection that worked and then closed: start again at 5 s
            self.failures = 0

    def _retry(self, attempt):
        """
        C{ClientService}'s retry policy, driven by our own count.
        """
        if self.failures == 0:
            delay = self.delay(1)
            self.log.info("reconnecting to {address} in {delay:g}s", address=self.spec.address, delay=delay)
            return delay
        delay = self.delay(self.failures)
        if not 0 <= self.max_retries < self.failures:
            self.log.warn("could not connect to {address} ({reason}): retrying in {delay:g}s",
                          address=self.spec.address, reason=self.last_failure.getErrorMessage(), delay=delay)
        return delay


def _describe_host(address):
    host = getattr(address, "host", None)
    if host is None:
        return str(address)
    return "{}:{}".format(host, address.port) if ":" not in host else "[{}]:{}".format(host, address.port)


def go_address(address):
    """
    Parse a Go-style stream address, or return C{None} when the address is
    a Twisted endpoint description.

    :return: C{(host, port)} or C{None}.
    """
    head = address.split(":", 1)[0]
    if head in ENDPOINT_TYPES:
        return None
    try:
        return parse_host_port(address, default_host="")
    except ValueError:
        return None


def server_endpoint(reactor, spec):
    """
    The endpoint a stream server end listens on.

    :param reactor: the reactor.
    :param spec: the connector spec.
    :raise ValueError: for an unusable address.
    """
    parsed = go_address(spec.address)
    if parsed is None:
        if spec.interface is not None:
            raise ValueError("'{}': an interface binding needs a HOST:PORT address".format(spec.text))
        return endpoints.serverFromString(reactor, spec.address)
    host, port = parsed
    if host and not is_ip_address(host):
        raise ValueError("invalid address in '{}': listen on an IP address".format(spec.text))
    reactor = reactor_for(reactor, spec.interface)
    if ":" in host:
        return endpoints.TCP6ServerEndpoint(reactor, port, interface=host)
    return endpoints.TCP4ServerEndpoint(reactor, port, interface=host)


def client_endpoint(reactor, spec):
    """
    The endpoint a stream client end dials.

    :param reactor: the reactor.
    :param spec: the connector spec.
    :raise ValueError: for an unusable address.
    """
    parsed = go_address(spec.address)
    if parsed is None:
        if spec.interface is not None:
            raise ValueError("'{}': an interface binding needs a HOST:PORT address".format(spec.text))
        return endpoints.clientFromString(reactor, spec.address)
    host, port = parsed
    if not host or port == 0:
        raise ValueError("invalid address in '{}' (expected HOST:PORT)".format(spec.text))
    reactor = reactor_for(reactor, spec.interface)
    if is_ip_address(host):
        if ":" in host:
            return endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT)
        return endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT)
    return endpoints.HostnameEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT)


@implementer(IPlugin, IConnectorMaker)
class StreamConnectorMaker:
    """
    Makes the C{KIND/server} and C{KIND/client} ends of a stream transport.

    :ivar kind: the transport name, e.g. C{tcp}.
    """

    log_tag = "TCP"

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
            end = ServerEnd(spec, role, router, reactor, settings, self.serverEndpoint(reactor, spec, settings))
        else:
            end = ClientEnd(spec, role, router, reactor, settings, self.clientEndpoint(reactor, spec, settings),
                            self.clientWrapper(spec, settings))
        end.log_tag = self.log_tag
        return _provide(end, role)

    def serverEndpoint(self, reactor, spec, settings):
        """
        The endpoint a server end listens on; a secure transport wraps it.
        """
        return server_endpoint(reactor, spec)

    def clientEndpoint(self, reactor, spec, settings):
        """
        The endpoint a client end dials.
        """
        return client_endpoint(reactor, spec)

    def clientWrapper(self, spec, settings):
        """
        A callable wrapping the client end's factory for each dial (TLS
        goes here, inside C{ClientService}'s protocol proxy, so that the
        stream protocol hears of the handshake), or C{None}.
        """
        return None


def _provide(end, role):
    """
    Declare the end's role on the instance, so that C{IInEnd.providedBy}
    and C{IOutEnd.providedBy} say what it is.
    """
    alsoProvides(end, IInEnd if role == IN else IOutEnd)
    return end
