# -*- test-case-name: tests.loopback.test_routes -*-
"""
Fake site halves in one process, over real sockets, for the routing tests
and C{bench/hub.py}: each L{GoSite} dials a host's stream server end,
speaks the Go wire format (L{tests.gowire}; no session frame, as a Go site
sends none) and answers for one emulated controller, as a site half with
the controller behind its C{udp/broadcast} end would. It counts every
request frame it receives and those addressed to a controller it does not
serve (C{misrouted}: the routing matrix must keep that at 0).
"""

import datetime

from twisted.internet.defer import Deferred
from twisted.internet.protocol import ClientFactory, Protocol

from tests.gowire import go_depacketize, go_packetize
from uhppoted_tunnel.emulator import Controller


class GoSite(Protocol):
    """
    One site: a connection and one controller.

    :ivar received: request frames received.
    :ivar broadcasts: of them, broadcasts.
    :ivar misrouted: of them, unicasts for another controller.
    :ivar forged: answer as this serial instead (a rogue site), or C{None}.
    """

    def __init__(self, serial, forged=None):
        self.serial = serial
        self.controller = Controller(forged or serial)
        self.buffer = b""
        self.received = 0
        self.broadcasts = 0
        self.misrouted = 0
        self.ready = Deferred()
        self.closed = Deferred()

    def connectionMade(self):
        self.ready.callback(self)

    def dataReceived(self, data):
        messages, self.buffer = go_depacketize(self.buffer + data)
        now = datetime.datetime.now()
        for frame_id, message in messages:
            self.received += 1
            serial = int.from_bytes(message[4:8], "little")
            if not serial:
                self.broadcasts += 1
            elif serial != self.controller.serial:
                self.misrouted += 1
            reply = self.controller.handle(message, now)
            if reply is not None:
                self.transport.write(go_packetize(frame_id, reply))

    def close(self):
        self.transport.loseConnection()
        return self.closed

    def connectionLost(self, reason):
        self.closed.callback(None)


class GoSiteFactory(ClientFactory):
    """
    Builds one L{GoSite}; C{failed} fires if the dial fails.
    """

    def __init__(self, site):
        self.site = site

    def buildProtocol(self, addr):
        return self.site

    def clientConnectionFailed(self, connector, reason):
        self.site.ready.errback(reason)


def dial(reactor, port, serial, forged=None, tls=None):
    """
    Connect a site to a host's server end on loopback.

    :param tls: client TLS options (C{optionsForClientTLS}), or C{None}
        for plain TCP.
    :return: a Deferred firing with the L{GoSite} once connected (once its
        TLS handshake is under way, for TLS).
    """
    site = GoSite(serial, forged)
    factory = GoSiteFactory(site)
    if tls is None:
        reactor.connectTCP("127.0.0.1", port, factory)
    else:
        reactor.connectSSL("127.0.0.1", port, factory, tls)
    return site.ready
