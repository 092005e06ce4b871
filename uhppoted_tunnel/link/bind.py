# -*- test-case-name: tests.loopback.test_bind -*-
"""
Binding sockets to a network interface (C{tcp/client::eth0:...}).

Twisted's endpoints take an address to bind to but not a device, so the
ends that name an interface use a reactor proxy that sets
C{SO_BINDTODEVICE} on each socket it creates, before the socket connects
and as soon as it listens; everything else goes to the real reactor.
"""

import socket
import sys

from twisted.internet import tcp

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)

#: Linux's IP_FREEBIND (Python does not name it): bind an address that is
#: not (yet) on any interface.
IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15 if sys.platform.startswith("linux") else None)


def check_freebind():
    """
    Check that this platform can bind addresses that are not up yet.

    :raise ValueError: a one-line error naming the flag.
    """
    if IP_FREEBIND is None:
        raise ValueError("--freebind: IP_FREEBIND is not available on this platform ({})".format(sys.platform))


def set_freebind(sock):
    """
    Let a socket bind an address that is not on any interface yet.
    """
    sock.setsockopt(socket.IPPROTO_IP, IP_FREEBIND, 1)


class _FreebindTCPPort(tcp.Port):
    def createInternetSocket(self):
        sock = tcp.Port.createInternetSocket(self)
        set_freebind(sock)
        return sock


class FreebindReactor:
    """
    A reactor whose TCP listening ports may bind an address that is not up
    yet (C{--freebind}), so that a tunnel bound to a given address can start
    before the network is online.
    """

    def __init__(self, reactor):
        self._reactor = reactor

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def listenTCP(self, port, factory, backlog=50, interface=""):
        listening = _FreebindTCPPort(port, factory, backlog, interface, self._reactor)
        listening.startListening()
        return listening


def bind_to_device(sock, interface):
    """
    Restrict a socket to one network interface.

    :param sock: a socket object.
    :param interface: an interface name such as C{eth0}.
    :raise OSError: if the interface does not exist or binding is not
        allowed.
    """
    sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode("utf-8") + b"\0")


def check_interface(interface):
    """
    Check that an interface exists.

    :raise ValueError: naming the interface if it does not.
    """
    try:
        socket.if_nametoindex(interface)
    except OSError:
        raise ValueError("no such network interface '{}'".format(interface)) from None


class DeviceBoundReactor:
    """
    A reactor whose TCP and UDP sockets are bound to one interface.
    """

    def __init__(self, reactor, interface):
        """
        :param reactor: the real reactor.
        :param interface: the interface name.
        """
        self._reactor = reactor
        self._interface = interface

    def __getattr__(self, name):
        return getattr(self._reactor, name)

    def connectTCP(self, host, port, factory, timeout=30, bindAddress=None):
        connector = self._reactor.connectTCP(host, port, factory, timeout, bindAddress)
        bind_to_device(connector.transport.socket, self._interface)
        return connector

    def listenTCP(self, port, factory, backlog=50, interface=""):
        listening = self._reactor.listenTCP(port, factory, backlog, interface)
        bind_to_device(listening.socket, self._interface)
        return listening

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        listening = self._reactor.listenUDP(port, protocol, interface, maxPacketSize)
        bind_to_device(listening.socket, self._interface)
        return listening


def reactor_for(reactor, interface):
    """
    The reactor to build an end's sockets with.

    :param reactor: the real reactor.
    :param interface: an interface name or C{None}.
    """
    return reactor if interface is None else DeviceBoundReactor(reactor, interface)
