"""
Tests for L{uhppoted_tunnel.app.tunnel}: whole tunnel pairs in memory, from an
application's UDP socket through host and site halves to emulated
controllers and back.
"""

from twisted.trial.unittest import SynchronousTestCase
from uhppoted import decode, encode

from tests.unit.pairs import SERIALS, TunnelPairMixin


class TunnelTestsMixin(TunnelPairMixin):
    """
    What every pair of halves does, whatever joins them.
    """

    def test_broadcastReachesEveryController(self):
        """
        A get-all-controllers broadcast through the tunnel is answered by
        every controller.
        """
        replies = self.ask(encode.get_controller_request(0))
        self.assertEqual(sorted(decode.get_controller_response(r).controller for r in replies), sorted(SERIALS))

    def test_unicast(self):
        """
        A request to one controller is answered by that controller only.
        """
        [reply] = self.ask(encode.get_time_request(SERIALS[1]))
        self.assertEqual(decode.get_time_response(reply).controller, SERIALS[1])

    def test_noReply(self):
        """
        set-ip is relayed and, as with a real controller, not answered.
        """
        import ipaddress

        request = encode.set_ip_request(SERIALS[0], *map(ipaddress.IPv4Address, ("127.0.0.9", "255.0.0.0", "0.0.0.0")))
        self.assertEqual(self.ask(request), [])
        self.assertEqual(str(self.controllers.controllers[0].address), "127.0.0.9")

    def test_stopCleanly(self):
        """
        Stopping both halves closes every socket and leaves no timers.
        """
        self.ask(encode.get_controller_request(0))
        host, site = self.host.stopService(), self.site.stopService()
        self.relay()
        self.successResultOf(host)
        self.successResultOf(site)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        tunnel_ports = [port for port in self.reactor.udpPorts if port.protocol not in (self.app, self.controllers)]
        self.assertFalse(any(port.listening for port in tunnel_ports))


class ForwardTunnelTests(TunnelTestsMixin, SynchronousTestCase):
    """
    host: udp/listen -> tcp/server; site: tcp/client -> udp/broadcast.
    """

    host_args = ["--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:12345"]
    site_args = ["--in", "tcp/client:127.0.0.1:12345", "--out", "udp/broadcast:127.0.0.1:60005", "--udp-timeout", "1s"]


class ReverseTunnelTests(TunnelTestsMixin, SynchronousTestCase):
    """
    host: udp/listen -> tcp/client; site: tcp/server -> udp/broadcast.
    """

    host_args = ["--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/client:127.0.0.1:12345"]
    site_args = ["--in", "tcp/server:127.0.0.1:12345", "--out", "udp/broadcast:127.0.0.1:60005", "--udp-timeout", "1s"]


class WebSocketForwardTunnelTests(TunnelTestsMixin, SynchronousTestCase):
    """
    host: udp/listen -> ws/server; site: ws/client -> udp/broadcast: the
    same requests and replies, one frame per WebSocket message.
    """

    host_args = ["--in", "udp/listen:127.0.0.1:60000", "--out", "ws/server:127.0.0.1:12345/tunnel"]
    site_args = ["--in", "ws/client:127.0.0.1:12345/tunnel", "--out", "udp/broadcast:127.0.0.1:60005",
                 "--udp-timeout", "1s"]


class WebSocketReverseTunnelTests(TunnelTestsMixin, SynchronousTestCase):
    """
    host: udp/listen -> ws/client; site: ws/server -> udp/broadcast, on
    the default path.
    """

    host_args = ["--in", "udp/listen:127.0.0.1:60000", "--out", "ws/client:127.0.0.1:12345"]
    site_args = ["--in", "ws/server:127.0.0.1:12345", "--out", "udp/broadcast:127.0.0.1:60005", "--udp-timeout", "1s"]
