# -*- test-case-name: tests.unit.test_tunnel,tests.unit.test_metrics -*-
"""
Whole tunnel pairs in memory, shared by the unit tests that run one
(C{test_tunnel}, C{test_metrics}): an application's UDP socket, a host
half and a site half of the tunnel joined through C{iosim}, and emulated
controllers, all on one L{FakeReactor}.
"""

from twisted.internet.protocol import DatagramProtocol
from twisted.test.iosim import ConnectionCompleter

from uhppoted_tunnel.app import config
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.app.tunnel import TunnelService
from uhppoted_tunnel.emulator import Controller, EmulatorProtocol
from uhppoted_tunnel.testing import FakeReactor

#: The serial numbers of the emulated controllers.
SERIALS = (405419896, 303986753)


class Application(DatagramProtocol):
    """
    A UHPPOTE application's UDP socket: keeps what it receives.
    """

    def __init__(self):
        self.received = []

    def datagramReceived(self, data, address):
        self.received.append(data)


def tunnel(reactor, *args):
    """
    A tunnel half, not started, from its command line (with a rate limit
    no test reaches).
    """
    options = Options()
    options.parseOptions(list(args) + ["--rate-limit", "1000"])
    return TunnelService(options, reactor)


class TunnelPairMixin:
    """
    A host half and a site half, started from C{host_args} and
    C{site_args}, the application on 127.0.0.1:50000 and the controllers
    (L{SERIALS}) on 127.0.0.1:60005; the connection dialled at start is
    completed.

    :ivar pumps: an C{iosim} pump for each connection completed.
    """

    host_args = None
    site_args = None

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.reactor = FakeReactor()
        self.controllers = EmulatorProtocol([Controller(serial) for serial in SERIALS])
        self.reactor.listenUDP(60005, self.controllers, interface="127.0.0.1")
        self.app = Application()
        self.app_port = self.reactor.listenUDP(50000, self.app, interface="127.0.0.1")
        self.host = tunnel(self.reactor, *self.host_args)
        self.site = tunnel(self.reactor, *self.site_args)
        self.host.startService()
        self.site.startService()
        self.pumps = []
        self.connect()

    def connect(self):
        """
        Complete the connection dialled last.
        """
        self.pumps.append(ConnectionCompleter(self.reactor).succeedOnce())
        self.relay()

    def relay(self, rounds=10):
        for _ in range(rounds):
            self.reactor.advance(0)
            for pump in self.pumps:
                pump.flush()

    def send(self, request):
        """
        Send a request from the application to the host half's udp/listen
        port, and relay it.
        """
        self.app_port.write(bytes(request), ("127.0.0.1", 60000))
        self.relay()

    def ask(self, request):
        """
        L{send}, then take what the application received.
        """
        self.send(request)
        received, self.app.received = self.app.received, []
        return received
