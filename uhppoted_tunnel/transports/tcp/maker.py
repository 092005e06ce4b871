# -*- test-case-name: tests.unit.test_stream,tests.unit.test_events -*-
"""
The maker of the stream transports' ends (C{tcp/server}, C{tcp/client}
and their C{/event/} forms): the link's L{ServerEnd} and L{ClientEnd}
over TCP endpoints, with the connection caps, the HTTP proxy and the
interface binding. A secure or message transport (C{tls/}, C{ws/},
C{grpc/}) subclasses it and gives other endpoints, connections and
certificates.
"""

from twisted.plugin import IPlugin
from zope.interface import implementer

from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker
from uhppoted_tunnel.link.bind import check_interface
from uhppoted_tunnel.link.ends import ClientEnd, ServerEnd
from uhppoted_tunnel.link.framed import FramedProtocol
from uhppoted_tunnel.link.limits import LISTEN_BACKLOG, limit_endpoint
from uhppoted_tunnel.transports import proxy
from uhppoted_tunnel.transports.endpoints import server_endpoint


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
    #: the connection the ends' factory builds and its endpoints connect (see
    #: L{uhppoted_tunnel.link.factory.FrameFactory})
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
            endpoint = self.serverEndpoint(reactor, spec, settings)
            watch, reloader = self.certificates(settings, "server", reactor, endpoint)
            return ServerEnd(spec, role, router, reactor, settings, endpoint, self.log_tag, self.secure,
                             self.protocol, watch, reloader)
        endpoint = self.clientEndpoint(reactor, spec, settings)
        watch, reloader = self.certificates(settings, "client", reactor, endpoint)
        return ClientEnd(spec, role, router, reactor, settings, endpoint, self.log_tag, self.protocol, watch,
                         reloader, self.silent_close())

    def silent_close(self):
        """
        What a server closing a client's connection without a word probably
        means: for plain TCP, that it is a TLS server (which waits for a
        handshake, and closes on anything else); C{None} for a transport
        that has its own handshake.
        """
        if self.secure or self.protocol is not FramedProtocol:
            return None
        return ("the server closed the connection without sending anything: is it a TLS server? A {0}/client "
                "cannot talk to one: use tls/client with --ca-cert (or the server is over its "
                "--max-connections)".format(self.kind))

    def certificates(self, settings, side, reactor, endpoint):
        """
        What a secure transport's end is given to watch and reload its
        certificates.

        :param side: C{"server"} or C{"client"}.
        :param endpoint: the end's endpoint, as L{serverEndpoint} or
            L{clientEndpoint} made it.
        :return: C{(watch, reloader)}: an
            L{uhppoted_tunnel.interfaces.ICertificateWatch} and an
            L{uhppoted_tunnel.interfaces.ICertificateReloader}, or
            C{(None, None)} for a plain transport.
        """
        return None, None

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
