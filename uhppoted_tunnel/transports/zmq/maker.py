# -*- test-case-name: tests.unit.test_zmq,tests.unit.test_zmq_endpoints,tests.loopback.test_zmq -*-
"""
The ZeroMQ transport: C{zmq/server:ADDR} (a ROUTER socket) and
C{zmq/client:HOST:PORT} (a DEALER), in and out, and C{zmq/event/...} as
for tcp.

ROUTER and DEALER because a ROUTER knows each peer by a routing id and
sends to one peer by naming it: a reply goes back on the connection its
request came by, an out end fans a request out to every peer, and each
peer is its own L{uhppoted_tunnel.interfaces.IFrameConnection}, which is
what the shared relays (L{uhppoted_tunnel.core.relays}) expect. (REQ/REP
would allow one request in flight; PUB/SUB has no replies; PAIR one peer
and no reconnection.)

The ends are the stream ends every transport shares
(L{uhppoted_tunnel.link.ends}): a C{ServerEnd} whose endpoint binds a
ROUTER (L{uhppoted_tunnel.transports.zmq.server}), a C{ClientEnd} whose
endpoint dials with a DEALER (L{uhppoted_tunnel.transports.zmq.client});
reconnecting, backoff, C{--max-retries} and the log lines are those of
C{tcp/}. Each link is a L{ZMQConnection}
(L{uhppoted_tunnel.transports.zmq.connection}); a message holds one frame
or several (L{uhppoted_tunnel.transports.zmq.wire}, sent a turn's worth
at a time by L{uhppoted_tunnel.transports.zmq.batch}); the sockets are read from the
reactor (L{uhppoted_tunnel.transports.zmq.sockets}).

Security: CURVE (C{--zmq-server-key}, C{--zmq-client-key},
C{--zmq-authorized-keys}; L{uhppoted_tunnel.transports.zmq.curve}) with
a ZAP handler in the server's context, which also applies the connection
caps in the handshake: ZeroMQ has no way to close one peer of a ROUTER,
so a connection over a cap is refused before it is a peer, and its
client backs off.
"""

import zmq

from uhppoted_tunnel.core.addresses import parse_host_port
from uhppoted_tunnel.link.ends import ClientEnd, ServerEnd
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports.zmq.client import Dealer, ZMQClientEndpoint
from uhppoted_tunnel.transports.zmq.connection import ZMQConnection
from uhppoted_tunnel.transports.zmq.curve import client_keys, server_keys
from uhppoted_tunnel.transports.zmq.router import RouterSocket
from uhppoted_tunnel.transports.zmq.server import ZMQServerEndpoint
from uhppoted_tunnel.transports.zmq.wire import libzmq_host


class ZMQConnectorMaker(StreamConnectorMaker):
    """
    Makes C{zmq/server}, C{zmq/client} and their C{zmq/event/} aliases:
    the stream ends, over ZeroMQ endpoints.
    """

    log_tag = "ZMQ"
    protocol = ZMQConnection

    def __init__(self, router=RouterSocket, dealer=Dealer):
        """
        :param router: makes a server's socket (L{RouterSocket}).
        :param dealer: makes a client's socket for one attempt
            (L{Dealer}).
        """
        StreamConnectorMaker.__init__(self, "zmq")
        self.router = router
        self.dealer = dealer

    def makeEnd(self, spec, role, settings, router, reactor):
        server = spec.prefix.endswith("/server:")
        if server:
            # the endpoint warns of a plain or open end itself, naming the
            # CURVE flags
            return ServerEnd(spec, role, router, reactor, settings, self.serverEndpoint(reactor, spec, settings),
                             self.log_tag, secure=True, protocol=self.protocol)
        return ClientEnd(spec, role, router, reactor, settings, self.clientEndpoint(reactor, spec, settings),
                         self.log_tag, protocol=self.protocol)

    def _address(self, spec, server):
        """
        :return: C{(host, port)} of a zmq/ end, the host as libzmq wants it.
        :raise ValueError: one line naming the connector.
        """
        if spec.interface is not None:
            raise ValueError("'{}': zmq/ ends cannot be bound to a network interface".format(spec.text))
        try:
            host, port = parse_host_port(spec.address, default_host="0.0.0.0" if server else None)
        except ValueError as e:
            raise ValueError("'{}': {}".format(spec.text, e)) from None
        if not server and not port:
            raise ValueError("'{}': a zmq/client needs HOST:PORT with a port".format(spec.text))
        return libzmq_host(host), port

    @staticmethod
    def _checkCurve(settings):
        if (settings.get("zmq-server-key") or settings.get("zmq-client-key")) and not zmq.has("curve"):
            raise ValueError("--zmq-server-key: this libzmq was built without CURVE")

    def serverEndpoint(self, reactor, spec, settings):
        """
        A ROUTER bound to the end's address, with the server's CURVE keys
        and the authorised clients; the caps are its own (in the ZAP
        handshake).
        """
        address = self._address(spec, server=True)
        self._checkCurve(settings)
        curve, authorized = server_keys(settings)
        return ZMQServerEndpoint(reactor, address, settings, curve, authorized, self.router)

    def clientEndpoint(self, reactor, spec, settings):
        """
        A DEALER per attempt, dialling the end's address (ZeroMQ speaks no
        HTTP proxy: C{--proxy} does not apply).
        """
        address = self._address(spec, server=False)
        self._checkCurve(settings)
        return ZMQClientEndpoint(reactor, address, spec.address, settings, client_keys(settings), self.dealer)
