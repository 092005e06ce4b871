# -*- test-case-name: tests.loopback.test_tls,tests.unit.test_tls -*-
"""
The TLS stream ends: C{tls/server} and C{tls/client}, in and out.

The same ends as C{tcp/server} and C{tcp/client} (framing, reconnecting,
queueing), over TLS; see L{uhppoted_tunnel.tls} for the policy. A
connection is used only once its handshake has completed, and a handshake
that fails or times out is dropped with a warning saying why.
"""

from twisted.protocols.tls import TLSMemoryBIOFactory

from uhppoted_tunnel import tls
from uhppoted_tunnel.connectors.addresses import go_address
from uhppoted_tunnel.connectors.stream import StreamConnectorMaker


class TLSConnectorMaker(StreamConnectorMaker):
    """
    Makes C{tls/server} and C{tls/client} ends.
    """

    log_tag = "TLS"

    def __init__(self):
        StreamConnectorMaker.__init__(self, "tls")

    def makeEnd(self, spec, role, settings, router, reactor):
        end = StreamConnectorMaker.makeEnd(self, spec, role, settings, router, reactor)
        end.handshake_timeout = settings["handshake-timeout"]
        return end

    def serverEndpoint(self, reactor, spec, settings):
        return tls.wrap_server(StreamConnectorMaker.serverEndpoint(self, reactor, spec, settings), settings)

    def clientWrapper(self, spec, settings):
        address = go_address(spec.address)
        if address is None or not address[0]:
            raise ValueError("'{}': a TLS client needs HOST:PORT (the server's certificate must name HOST)".format(
                spec.text))
        creator = tls.client_options(settings, address[0])
        return lambda factory: TLSMemoryBIOFactory(creator, True, factory)
