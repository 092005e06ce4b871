# -*- test-case-name: tests.loopback.test_bind -*-
"""
L{uhppoted_tunnel.link.bind} for real: sockets bound to the loopback interface
with C{SO_BINDTODEVICE} (which needs C{CAP_NET_RAW}: root, as under CI).
"""

import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase

from tests.tools import under_ci
from uhppoted_tunnel.link.bind import (
    SO_BINDTODEVICE,
    DeviceBoundReactor,
    bind_to_device,
    check_interface,
    reactor_for,
)


def bound_device(sock):
    """
    The interface a socket is bound to, or C{""}.
    """
    return sock.getsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, 32).split(b"\0", 1)[0].decode()


def require_bind():
    """
    Skip unless this process may bind sockets to a device.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        bind_to_device(probe, "lo")
    except PermissionError:
        if under_ci():
            raise AssertionError("SO_BINDTODEVICE not permitted under CI (tests run as root there)")
        raise SkipTest("SO_BINDTODEVICE needs CAP_NET_RAW (run the tests as root)")
    finally:
        probe.close()


class Echo(DatagramProtocol):
    def __init__(self):
        self.received = Deferred()

    def datagramReceived(self, data, address):
        if not self.received.called:
            self.received.callback(data)


class CheckInterfaceTests(SynchronousTestCase):
    def test_loopback(self):
        """
        The loopback interface exists.
        """
        check_interface("lo")

    def test_missing(self):
        """
        An interface that does not exist is a one-line error naming it.
        """
        e = self.assertRaises(ValueError, check_interface, "nosuch0")
        self.assertEqual(str(e), "no such network interface 'nosuch0'")

    def test_plainReactor(self):
        """
        Without an interface the real reactor is used as it is.
        """
        self.assertIs(reactor_for(reactor, None), reactor)
        self.assertIsInstance(reactor_for(reactor, "lo"), DeviceBoundReactor)

    def test_bindMissingDevice(self):
        """
        Binding a socket to a device that does not exist fails.
        """
        require_bind()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sock.close)
        self.assertRaises(OSError, bind_to_device, sock, "nosuch0")


class DeviceBoundReactorTests(TestCase):
    timeout = 30

    def setUp(self):
        require_bind()
        self.bound = DeviceBoundReactor(reactor, "lo")

    @inlineCallbacks
    def test_udp(self):
        """
        A UDP port opened through the proxy is bound to the interface and
        receives what is sent to it over loopback.
        """
        echo = Echo()
        port = self.bound.listenUDP(0, echo, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.assertEqual(bound_device(port.socket), "lo")
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        sender.sendto(b"ping", ("127.0.0.1", port.getHost().port))
        data = yield echo.received
        self.assertEqual(data, b"ping")

    @inlineCallbacks
    def test_tcp(self):
        """
        A TCP port and a TCP connection made through the proxy are bound to
        the interface, and connect over loopback.
        """
        accepted = Deferred()

        class Accept(Protocol):
            def connectionMade(self):
                accepted.callback(self.transport)

        port = self.bound.listenTCP(0, Factory.forProtocol(Accept), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        self.assertEqual(bound_device(port.socket), "lo")
        client = yield connectProtocol(TCP4ClientEndpoint(self.bound, "127.0.0.1", port.getHost().port), Protocol())
        self.assertEqual(bound_device(client.transport.socket), "lo")
        server = yield accepted
        client.transport.loseConnection()
        server.loseConnection()
