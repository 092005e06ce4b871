# -*- test-case-name: tests.unit.test_stream -*-
"""
The stream ends: C{tcp/server} and C{tcp/client}, each as an in or an out
end. Framing, reconnecting, queueing and logging are written once here and
shared by every stream transport (TLS wraps the same ends).

An I{in} stream end receives request frames and answers each on the
connection it came by, with the same id. An I{out} stream end numbers the
requests it sends, fans each one out to every connected peer, and matches
reply frames by connection and id in a L{ReplyTable}.

In an event tunnel the out end sends events and keeps each one until the
peer acknowledges it (an empty frame with its id), sending the rest again
after a reconnect; the in end forwards each event once and acknowledges
it. These four behaviours are the relays of
L{uhppoted_tunnel.connectors.relays}.

A client end is a C{ClientService}: the first retry comes 5 s after a
failure and the delay doubles up to C{--max-retry-delay}; after
C{--max-retries} failures in a row the tunnel stops with an error.
"""

from OpenSSL import SSL
from twisted.application.internet import ClientService
from twisted.application.service import MultiService
from twisted.internet.defer import CancelledError, Deferred, gatherResults, maybeDeferred
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import alsoProvides, implementer

from uhppoted_tunnel.bind import check_interface
from uhppoted_tunnel.connectors.addresses import client_endpoint, server_endpoint
from uhppoted_tunnel.connectors.relays import relay_for
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IInEnd, IOutEnd
from uhppoted_tunnel.logging import hexdump
from uhppoted_tunnel.spec import format_address
from uhppoted_tunnel.connectors.streamprotocol import StreamProtocol

#: The first reconnect delay; it doubles after each failure.
FIRST_RETRY = 5.0


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


class StreamFactory(Factory):
    """
    Builds the connections of one stream end, whose protocols report their
    events (C{connectionMade}, C{frameReceived}, C{connectionLost}) straight
    to the end: no forwarding call per frame.
    """

    noisy = False

    def __init__(self, end):
        self.end = end
        self.connectionMade = end.connectionMade
        self.frameReceived = end.frameReceived
        self.connectionLost = end.connectionLost

    def buildProtocol(self, addr):
        protocol = StreamProtocol(self.end.max_payload)
        protocol.factory = self
        protocol.log_tag = self.end.log_tag
        return protocol


class StreamEnd(MultiService):
    """
    What every stream end shares: its connections, its lifecycle and its
    logging; what it does with frames is its relay's (L{relay_for}).
    Subclasses add the listening or dialling.
    """

    log = Logger()
    log_tag = "TCP"

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
        self.trace = settings["debug"]
        self.events = settings["events"]
        self.fatal = None
        #: seconds a TLS handshake may take; None for a plain stream
        self.handshake_timeout = None
        #: every connection, including those still in a TLS handshake
        self.protocols = set()
        #: connections ready for frames
        self.connections = []
        self.factory = StreamFactory(self)
        self.relay = relay_for(self, role, settings)

    def startService(self):
        self.relay.start()
        MultiService.startService(self)

    def stopService(self):
        self.relay.stop()
        stopped = MultiService.stopService(self)
        closing = [protocol.closed for protocol in self.protocols]
        for protocol in list(self.protocols):
            protocol.transport.loseConnection()
        return gatherResults([stopped] + closing, consumeErrors=True)

    def handshakeFailed(self, protocol, reason):
        """
        A TLS connection closed before its handshake completed (already
        logged by the protocol).
        """

    def connectionMade(self, protocol):
        self.connections.append(protocol)
        self.log.info("connected to {peer}", peer=protocol.peer)
        self.relay.connected(protocol)

    def connectionLost(self, protocol, reason):
        if protocol in self.connections:
            self.connections.remove(protocol)
            self.relay.disconnected(protocol)
        self.log.info("connection to {peer} closed", peer=protocol.peer)

    def frameReceived(self, protocol, frame_id, payload):
        if self.trace:
            self.log.debug("received frame {id} ({n} bytes) from {peer}\n{dump}", id=frame_id, n=len(payload),
                           peer=protocol.peer, dump=hexdump(payload))
        self.relay.frameReceived(protocol, frame_id, payload)

    def send(self, payload, reply):
        """
        Send a packet from the router (out ends only).
        """
        if self.trace:
            self.log.debug("sending {n} bytes\n{dump}", n=len(payload), dump=hexdump(payload))
        self.relay.send(payload, reply)


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
        self.log.info("listening on {address}", address=format_address(port.getHost()))
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
        if self.givenUp and self.running and self.fatal is not None:
            message = "could not connect to {} after {} attempt(s): {}".format(
                self.spec.address, self.failures, failure.getErrorMessage())
            self.log.error("{message}", message=message)
            self.fatal(message)

    @property
    def givenUp(self):
        """
        Whether the failures in a row are past C{--max-retries}.
        """
        return 0 <= self.max_retries < self.failures

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
        if not self.givenUp:
            self.log.warn("could not connect to {address} ({reason}): retrying in {delay:g}s",
                          address=self.spec.address, reason=self.last_failure.getErrorMessage(), delay=delay)
        return delay


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
