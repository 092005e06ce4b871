# -*- test-case-name: tests.test_stream -*-
"""
The stream ends: C{tcp/server} and C{tcp/client}, each as an in or an out
end. Framing, reconnecting, queueing and logging are written once here and
shared by every stream transport (TLS wraps the same ends).

An I{in} stream end receives request frames and answers each on the
connection it came by, with the same id. An I{out} stream end numbers the
requests it sends, fans each one out to every connected peer, and matches
reply frames by connection and id in a L{ReplyTable}.

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
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import alsoProvides, implementer

from uhppoted_tunnel.bind import check_interface, reactor_for
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IInEnd, IOutEnd
from uhppoted_tunnel.logging import hexdump
from uhppoted_tunnel.router import REPLY_IDLE, ReplyTable
from uhppoted_tunnel.spec import is_ip_address, parse_host_port
from uhppoted_tunnel.wire import FramedProtocol

#: Go: a client gives up dialling after 5 s.
DIAL_TIMEOUT = 5

#: Go: TCP keepalive every 15 s on stream sockets.
KEEPALIVE = 15

#: Requests held while an out end has no peer (Go holds 16).
QUEUE_SIZE = 16

#: The first reconnect delay; it doubles after each failure.
FIRST_RETRY = 5.0

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


class StreamProtocol(FramedProtocol):
    """
    A framed connection of a stream end: keepalive on, Nagle off.
    """

    def connectionMade(self):
        transport = self.transport
        if hasattr(transport, "setTcpNoDelay"):
            transport.setTcpNoDelay(True)
            transport.setTcpKeepAlive(True)
            handle = getattr(transport, "getHandle", lambda: None)()
            if hasattr(handle, "setsockopt") and hasattr(socket, "TCP_KEEPIDLE"):
                try:
                    handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE)
                    handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE)
                except OSError:
                    pass
        self.closed = Deferred()
        FramedProtocol.connectionMade(self)

    def connectionLost(self, reason):
        FramedProtocol.connectionLost(self, reason)
        self.closed.callback(None)


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
        self.connections = []
        self.factory = StreamFactory(self)
        self.replies = ReplyTable(reactor.seconds)
        self.queue = deque(maxlen=QUEUE_SIZE)
        self._next_id = 0
        self._sweeper = None

    def startService(self):
        MultiService.startService(self)
        if self.role == OUT:
            self._sweeper = LoopingCall(self.replies.sweep)
            self._sweeper.clock = self.reactor
            self._sweeper.start(REPLY_IDLE / 3, now=False)

    def stopService(self):
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        self.queue.clear()
        stopped = MultiService.stopService(self)
        closing = [connection.closed for connection in self.connections]
        for connection in self.connections:
            connection.transport.loseConnection()
        return gatherResults([stopped] + closing, consumeErrors=True)

    # connections

    def connectionMade(self, protocol):
        self.connections.append(protocol)
        self.log.info("connected to {peer}", peer=protocol.peer)
        if self.queue:
            self._flush(protocol)

    def connectionLost(self, protocol, reason):
        if protocol in self.connections:
            self.connections.remove(protocol)
        self.replies.discard(protocol)
        self.log.info("connection to {peer} closed", peer=protocol.peer)

    # frames

    def frameReceived(self, protocol, frame_id, payload):
        if self.trace:
            self.log.debug("received frame {id} ({n} bytes) from {peer}\n{dump}", id=frame_id, n=len(payload),
                           peer=protocol.peer, dump=hexdump(payload))
        if self.role == IN:
            self.router.request(payload, partial(self._reply, protocol, frame_id))
        elif not self.replies.dispatch(protocol, frame_id, payload) and self.trace:
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
        if not self.connections:
            if len(self.queue) == self.queue.maxlen:
                self.log.warn("not connected: dropped the oldest of {n} queued requests", n=len(self.queue))
            self.queue.append((self.reactor.seconds(), payload, reply))
            return
        frame_id = self._allocate()
        for protocol in self.connections:
            if reply is not None:
                self.replies.add(protocol, frame_id, reply)
            protocol.sendFrame(frame_id, payload)
        if self.trace:
            self.log.debug("sent frame {id} ({n} bytes)\n{dump}", id=frame_id, n=len(payload), dump=hexdump(payload))

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
    Wraps a client endpoint to remember why the last dial failed, for the
    retry message.
    """

    def __init__(self, endpoint):
        self.endpoint = endpoint
        self.last_failure = None

    def connect(self, factory):
        def failed(failure):
            self.last_failure = failure
            return failure

        return self.endpoint.connect(factory).addErrback(failed)


class ClientEnd(StreamEnd):
    """
    C{tcp/client:ADDRESS}: dials a peer and keeps redialling.
    """

    def __init__(self, spec, role, router, reactor, settings, endpoint):
        StreamEnd.__init__(self, spec, role, router, reactor, settings)
        self.endpoint = _DialEndpoint(endpoint)
        self.max_retries = settings["max-retries"]
        self.client = ClientService(self.endpoint, self.factory, retryPolicy=self._policy(settings["max-retry-delay"]),
                                    clock=reactor)
        self.client.setServiceParent(self)

    def _policy(self, max_delay):
        policy = retry_policy(max_delay)

        def logged(attempt):
            delay = policy(attempt)
            failure = self.endpoint.last_failure
            self.log.warn("could not connect to {address} ({reason}): retrying in {delay:g}s",
                          address=self.spec.address, delay=delay,
                          reason=failure.getErrorMessage() if failure is not None else "connection lost")
            return delay

        return logged

    def startService(self):
        StreamEnd.startService(self)
        self._watch()

    def connectionLost(self, protocol, reason):
        StreamEnd.connectionLost(self, protocol, reason)
        if self.running:
            self.endpoint.last_failure = None
            self._watch()

    def _watch(self):
        """
        Fail the tunnel if the next connection takes more than
        C{--max-retries} failed attempts.
        """
        if self.max_retries < 0:
            return
        waiting = self.client.whenConnected(failAfterFailures=self.max_retries + 1)
        waiting.addErrback(self._giveUp)

    def _giveUp(self, failure):
        if failure.check(CancelledError) or not self.running:
            return
        message = "could not connect to {} after {} attempt(s): {}".format(
            self.spec.address, self.max_retries + 1, failure.getErrorMessage()
        )
        self.log.error("{message}", message=message)
        if self.fatal is not None:
            self.fatal(message)


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
        self.prefixes = (kind + "/server:", kind + "/client:")

    def roles(self, prefix):
        return frozenset([IN, OUT])

    def makeEnd(self, spec, role, settings, router, reactor):
        if spec.interface is not None:
            check_interface(spec.interface)
        if spec.prefix.endswith("/server:"):
            end = ServerEnd(spec, role, router, reactor, settings, self.serverEndpoint(reactor, spec, settings))
        else:
            end = ClientEnd(spec, role, router, reactor, settings, self.clientEndpoint(reactor, spec, settings))
        end.log_tag = self.log_tag
        return _provide(end, role)

    def serverEndpoint(self, reactor, spec, settings):
        return server_endpoint(reactor, spec)

    def clientEndpoint(self, reactor, spec, settings):
        return client_endpoint(reactor, spec)


def _provide(end, role):
    """
    Declare the end's role on the instance, so that C{IInEnd.providedBy}
    and C{IOutEnd.providedBy} say what it is.
    """
    alsoProvides(end, IInEnd if role == IN else IOutEnd)
    return end
