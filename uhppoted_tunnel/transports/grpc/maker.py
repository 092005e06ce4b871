# -*- test-case-name: tests.unit.test_grpc,tests.loopback.test_grpc -*-
"""
The gRPC transport: C{grpc/server:ADDR} and C{grpc/client:HOST:PORT}, and
C{grpcs/server:ADDR} and C{grpcs/client:HOST:PORT} over TLS (with the
C{tls/} flags), each as an in or an out end, with C{/event/} forms as for
C{tcp/}.

A link is one call of C{uhppoted.tunnel.Tunnel/Relay}, a bidirectional
stream of C{Frame} messages (C{uhppoted_tunnel/transports/grpc/proto/tunnel.proto}), one
frame each. Each call is one L{GRPCConnection} given to the stream ends
and relays every transport shares (L{uhppoted_tunnel.link.ends}):
the server end is a C{ServerEnd} whose endpoint is a gRPC server, the
client end a C{ClientEnd} whose endpoint dials one; their connection caps,
reconnecting, backoff, C{--max-retries} and log lines are those of
C{tcp/}. How the call meets grpcio's threads is
L{uhppoted_tunnel.transports.grpc.loop}; what is asked of grpcio is
L{uhppoted_tunnel.transports.grpc.link}, imported only when a gRPC end is
built.
"""

from functools import partial

from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel.core.addresses import go_address, is_ip_address
from uhppoted_tunnel.transports import proxy
from uhppoted_tunnel.transports.grpc.loop import MessageTooLong, NotAFrame, StallTimeout, TooManyFrames
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports.tls.secure import watch_certificates
from uhppoted_tunnel.interfaces import IFrameConnection
from uhppoted_tunnel.link.limits import limit_endpoint
from uhppoted_tunnel.link.framed import WhenClosed, underlying
from uhppoted_tunnel.core.frames import DEFAULT_MAX_PAYLOAD, FrameTooLong


@implementer(IFrameConnection)
class GRPCConnection(WhenClosed, Protocol):
    """
    One C{Relay} call, as a connection of a stream end: built by the end's
    factory, connected to the call's
    L{uhppoted_tunnel.transports.grpc.loop.StreamTransport} once the call
    is ready, and telling the factory what a byte stream's connection
    tells it (C{connectionReady}, C{connectionClosed}, C{frameDropped},
    C{frameTooLong}, C{stalledTooLong}). Each frame goes straight to the
    relay.
    """

    log = Logger()
    log_tag = "GRPC"
    relay = None
    stream = None

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self.peer = "?"

    def connectionMade(self):
        # under the caps' wrapper, if any
        self.stream = underlying(self.transport)
        self.peer = self.stream.peer
        self.stream.receiver = partial(self.relay.frameReceived, self)
        self.factory.connectionReady(self)

    def sendFrame(self, frame_id, payload):
        """
        Send one frame, unless the peer is not reading what is sent to it.

        :return: False if the frame was dropped.
        """
        if self.stream.sendFrame(frame_id, payload):
            return True
        if not self.stream.disconnected:
            self.factory.frameDropped(self)
        return False

    def close(self):
        """
        End the call once what is queued is sent.
        """
        self.transport.loseConnection()

    def connectionLost(self, reason):
        if reason.check(FrameTooLong, NotAFrame, MessageTooLong, TooManyFrames):
            self.factory.frameTooLong(self, reason.value)
        elif reason.check(StallTimeout):
            self.factory.stalledTooLong(self, reason.value.timeout)
        waiting = self._closedNow()
        self.factory.connectionClosed(self, reason)
        for d in waiting:
            d.callback(None)


def _address(spec, server):
    """
    :return: C{(host, port)} of a gRPC end's C{HOST:PORT}.
    :raise ValueError: for anything else.
    """
    if spec.interface is not None:
        raise ValueError("'{}': a gRPC end cannot be bound to an interface".format(spec.text))
    parsed = go_address(spec.address)
    if parsed is None:
        raise ValueError("'{}': a gRPC end takes HOST:PORT, not an endpoint description".format(spec.text))
    host, port = parsed
    if server:
        if host and not is_ip_address(host):
            raise ValueError("invalid address in '{}': listen on an IP address".format(spec.text))
        return host or "0.0.0.0", port
    if not host or not port:
        raise ValueError("invalid address in '{}' (expected HOST:PORT)".format(spec.text))
    return host, port


class GRPCConnectorMaker(StreamConnectorMaker):
    """
    Makes the ends of C{grpc/} (plain) or C{grpcs/} (TLS).
    """

    protocol = GRPCConnection
    log = Logger()

    def __init__(self, kind="grpc"):
        StreamConnectorMaker.__init__(self, kind)
        self.secure = kind == "grpcs"
        self.log_tag = kind.upper()

    def makeEnd(self, spec, role, settings, router, reactor):
        server = spec.prefix.endswith("/server:")
        _address(spec, server)
        if server and settings.get("freebind"):
            self.log.warn("--freebind does not apply to {kind} ends: {address} must be up when the tunnel starts",
                          kind=spec.kind, address=spec.address)
        return StreamConnectorMaker.makeEnd(self, spec, role, settings, router, reactor)

    def certificates(self, settings, side, reactor, endpoint):
        if not self.secure:
            return None, None
        # the server's endpoint is under the caps' wrapper
        dialled = endpoint.endpoint if side == "server" else endpoint
        return watch_certificates(settings, side, reactor, self.log_tag), dialled.certificates

    def serverEndpoint(self, reactor, spec, settings):
        from uhppoted_tunnel.transports.grpc import conf as grpcconf
        from uhppoted_tunnel.transports.grpc import link as grpclink

        host, port = _address(spec, server=True)
        certificates = grpcconf.server_certificates(settings, self.log_tag) if self.secure else None
        endpoint = grpclink.ServerEndpoint(reactor, host, port, settings, certificates)
        return limit_endpoint(endpoint, settings, reactor, self.log_tag)

    def clientEndpoint(self, reactor, spec, settings):
        """
        The endpoint a client end dials, through the HTTP proxy
        C{--proxy} or the environment names as for C{tcp/} (grpc speaks
        to it itself).
        """
        from uhppoted_tunnel.transports.grpc import conf as grpcconf
        from uhppoted_tunnel.transports.grpc import link as grpclink

        host, port = _address(spec, server=False)
        certificates = grpcconf.client_certificates(settings, self.log_tag) if self.secure else None
        chosen, _, _ = proxy.proxy_for(spec, settings, self.secure, self.log_tag)
        return grpclink.ClientEndpoint(reactor, host, port, settings, certificates, chosen)
