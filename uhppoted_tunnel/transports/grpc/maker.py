# -*- test-case-name: tests.unit.test_grpc,tests.loopback.test_grpc -*-
"""
The gRPC transport: C{grpc/server:ADDR} and C{grpc/client:HOST:PORT}, and
C{grpcs/server:ADDR} and C{grpcs/client:HOST:PORT} over TLS (with the
C{tls/} flags), each as an in or an out end, with C{/event/} forms as for
C{tcp/}.

A link is one call of C{uhppoted.tunnel.Tunnel/Relays} (or C{/Relay}
with a server from before it), a bidirectional stream of messages
(C{uhppoted_tunnel/transports/grpc/proto/tunnel.proto}). The gRPC ends
speak HTTP/2 themselves, with C{h2}'s state machine, on the tunnel's own
reactor and its own TCP and TLS endpoints, as C{ws/} speaks WebSocket:
each call is one L{GRPCConnection} given to the stream ends and relays
every transport shares (L{uhppoted_tunnel.link.ends}). The server end
listens on the tunnel's TCP endpoint under the connection caps (TLS with
ALPN C{h2} for C{grpcs/}) and takes each call under the caps again, so
that a refused client is told why; the client end dials with the
tunnel's stream client endpoint, through a proxy as C{tcp/} does.
HTTP/2 and the calls are L{uhppoted_tunnel.transports.grpc.server} and
L{uhppoted_tunnel.transports.grpc.client}, imported only when a gRPC end
is built.
"""

from twisted.logger import Logger

from uhppoted_tunnel.core.addresses import go_address, is_ip_address
from uhppoted_tunnel.link.limits import LISTEN_BACKLOG, DEFAULT_MAX_CONNECTIONS, limit_endpoint
from uhppoted_tunnel.transports import proxy
from uhppoted_tunnel.transports.endpoints import DIAL_TIMEOUT, server_endpoint
from uhppoted_tunnel.transports.grpc.call import GRPCConnection
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.transports.tls.secure import SecureClientEndpoint, SecureServerEndpoint, watch_certificates

__all__ = ["GRPCConnection", "GRPCConnectorMaker"]

#: The ALPN protocol of gRPC, which its clients require.
ALPN = [b"h2"]

#: TCP connections a server end takes for each call it may take
#: (C{--max-connections}): a client over the cap is then refused by the
#: end, which tells it why, rather than at the door.
CONNECTIONS_PER_CALL = 2


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
        # the server's endpoint is under the calls' caps
        grpc = endpoint.endpoint if side == "server" else endpoint
        return watch_certificates(settings, side, reactor, self.log_tag), grpc.secure

    def serverEndpoint(self, reactor, spec, settings):
        """
        The tunnel's TCP endpoint under the connection caps (twice
        C{--max-connections} of TCP connections), TLS with ALPN C{h2} for
        C{grpcs/}, HTTP/2 on every connection, and the caps again on the
        calls.
        """
        from uhppoted_tunnel.transports.grpc.server import GRPCServerEndpoint

        _address(spec, server=True)
        doors = dict(settings)
        doors["max-connections"] = CONNECTIONS_PER_CALL * (settings.get("max-connections")
                                                           or DEFAULT_MAX_CONNECTIONS)
        endpoint = limit_endpoint(server_endpoint(reactor, spec, backlog=LISTEN_BACKLOG), doors, reactor,
                                  self.log_tag)
        secure = None
        if self.secure:
            endpoint = secure = SecureServerEndpoint(endpoint, lambda: tls.server_options(settings, ALPN), reactor,
                                                     settings["handshake-timeout"], self.log_tag,
                                                     "is the peer a plain grpc/ or tcp/ connector?")
        grpc = GRPCServerEndpoint(endpoint, settings, reactor, self.log_tag, secure)
        return limit_endpoint(grpc, settings, reactor, self.log_tag)

    def clientEndpoint(self, reactor, spec, settings):
        """
        The tunnel's stream client endpoint (through the proxy C{--proxy}
        or the environment names, as for C{tcp/}), TLS with ALPN C{h2}
        and the server-name check for C{grpcs/}, and HTTP/2 on it.
        """
        from uhppoted_tunnel.transports.grpc.client import GRPCClientEndpoint

        host, port = _address(spec, server=False)
        endpoint = proxy.client_endpoint(reactor, spec, settings, self.secure, self.log_tag)
        secure = None
        timeout = DIAL_TIMEOUT
        if self.secure:
            endpoint = secure = SecureClientEndpoint(endpoint, lambda: tls.client_options(settings, host, ALPN),
                                                     reactor, settings["handshake-timeout"], self.log_tag,
                                                     "is the server a plain grpc/ or tcp/ connector?")
            timeout += settings["handshake-timeout"]
        return GRPCClientEndpoint(endpoint, host, port, settings, reactor, self.log_tag, timeout, secure)
