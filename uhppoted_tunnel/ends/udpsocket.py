# -*- test-case-name: tests.unit.test_udp -*-
"""
The UDP sockets under the UDP ends: a receive buffer as large as the
process may ask for, C{DrainingPort}, which reads all that is queued on
each wake-up and counts what the kernel dropped, and the kernel's reason
when a port cannot be bound.

The ends that receive from applications and controllers (C{udp/listen},
and C{udp/event} as an in end) ask the kernel for a large receive buffer
(C{--udp-receive-buffer}), so that a burst of events waits in the kernel
while the tunnel is busy, read everything queued in one go per wake-up,
and count what the kernel dropped all the same (its per-socket drop
counter, read once per wake-up), so that no datagram is lost untold.
"""

import socket
import struct
from functools import partial

from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.udp import Port

from uhppoted_tunnel.link.bind import set_freebind


#: The receive buffer C{udp/listen} and C{udp/event} in ends ask for, in
#: bytes: about 5,000 queued 64-byte datagrams (the kernel charges each
#: about 800 bytes) while the tunnel is busy, against about 250 with the
#: kernel's usual 208 KiB.
DEFAULT_RECEIVE_BUFFER = 4 * 1024 * 1024

# Linux socket options Python does not name.
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_MEMINFO = getattr(socket, "SO_MEMINFO", 55)
#: struct sock's meminfo array; its 9th field is the socket's drop count
#: (the counter SO_RXQ_OVFL reports), since Linux 4.6.
_MEMINFO = struct.Struct("=9I")
_MEMINFO_DROPS = 8


def set_receive_buffer(sock, size):
    """
    Ask for a receive buffer of C{size} bytes: with C{SO_RCVBUFFORCE} when
    the process may (root, or C{CAP_NET_ADMIN}), which gets past
    C{net.core.rmem_max}, else with C{SO_RCVBUF}, which the kernel caps at
    it.

    :param sock: a socket object.
    :return: the size granted, as asked for (the kernel reports twice
        that, for its own bookkeeping).
    """
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, option, size)
        except OSError:
            continue
        break
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2


def kernel_drops(sock):
    """
    The number of datagrams the kernel has dropped on a socket so far (its
    receive buffer was full), modulo 2**32.

    :param sock: a socket object.
    :return: the count, or C{None} where the kernel does not say (not
        Linux, or Linux before 4.6).
    """
    try:
        info = sock.getsockopt(socket.SOL_SOCKET, SO_MEMINFO, _MEMINFO.size)
    except OSError:
        return None
    if len(info) < _MEMINFO.size:
        return None
    return _MEMINFO.unpack(info)[_MEMINFO_DROPS]


class DrainingPort(Port):
    """
    A UDP port with a large receive buffer that reads all that is queued
    on each wake-up, and reports what the kernel dropped.

    Twisted's C{Port.doRead} reads until the socket is empty or
    C{maxThroughput} bytes have been read; that is raised to the buffer's
    size, so one wake-up empties a full buffer. Then, on a wake-up at most
    every C{check_interval} seconds (and at stop), the socket's drop
    counter is read: the kernel drops only while the buffer is full, that
    is while a datagram waits to be read, and the counter is cumulative,
    so every drop is counted, exactly, a little later at the most.
    """

    def __init__(self, port, protocol, interface, reactor, receive_buffer, dropped):
        """
        :param receive_buffer: the receive buffer to ask for, in bytes.
        :param dropped: called with the number of datagrams the kernel
            dropped since the last call.
        """
        Port.__init__(self, port, protocol, interface, reactor=reactor)
        self.receive_buffer = receive_buffer
        self.granted = None
        self.dropped = dropped
        self._drops = None

    #: bind an address that is not up yet (C{--freebind})
    freebind = False

    def createInternetSocket(self):
        sock = Port.createInternetSocket(self)
        if self.freebind:
            set_freebind(sock)
        self.granted = set_receive_buffer(sock, self.receive_buffer)
        self.maxThroughput = max(Port.maxThroughput, self.granted)
        self._drops = kernel_drops(sock)
        return sock

    #: the least time between two reads of the drop counter on wake-ups
    #: (it is read at stop too, and the count is cumulative: nothing is
    #: missed, a report may only come a little later)
    check_interval = 0.05
    _checked = float("-inf")

    def doRead(self):
        try:
            Port.doRead(self)
        finally:
            if self._drops is not None:
                now = self.reactor.seconds()
                if now - self._checked >= self.check_interval:
                    self._checked = now
                    self.checkDrops()

    def checkDrops(self):
        """
        Report what the kernel dropped since the last check.
        """
        if self._drops is None or self.socket is None:
            return
        drops = kernel_drops(self.socket)
        if drops is not None and drops != self._drops:
            lost = (drops - self._drops) & 0xFFFFFFFF
            self._drops = drops
            self.dropped(lost)


def send_datagram(port, datagram, address):
    """
    Send a datagram from a UDP port to a numeric address of the port's own
    family (one a datagram came from, or a destination checked when the end
    was made): straight to the socket, without the checks of the address
    that Twisted's C{Port.write} makes on every call (three address
    parsings per datagram). After an error, and on a port with no socket
    (a fake, or one closed), it is sent with C{port.write}, which handles
    or raises the error as it always does. (L{datagram_sender} has checked
    that C{port} is a real one; a fake that reaches here has no socket.)

    :param port: a listening UDP port.
    :param datagram: the bytes.
    :param address: C{(host, port)}.
    """
    sock = getattr(port, "socket", None)
    if sock is not None:
        try:
            sock.sendto(datagram, address)
            return
        except OSError:
            pass
    port.write(datagram, address)


def datagram_sender(port):
    """
    The way to send from a UDP port: L{send_datagram} for a real port, the
    port's own C{write} for any other (a fake).

    :return: a callable taking C{(datagram, address)}.
    """
    if isinstance(port, Port):
        return partial(send_datagram, port)
    return port.write


def listen_udp(reactor, port, protocol, interface, receive_buffer, dropped, freebind=False):
    """
    Listen with a L{DrainingPort} on a real reactor (and with
    C{reactor.listenUDP} on a fake one).

    :param freebind: bind an address that is not up yet.
    :return: the listening port.
    """
    if not isinstance(reactor, PosixReactorBase):
        return reactor.listenUDP(port, protocol, interface=interface)
    listening = DrainingPort(port, protocol, interface, reactor, receive_buffer, dropped)
    listening.freebind = freebind
    listening.startListening()
    return listening


def cannot_listen_reason(error):
    """
    The kernel's reason in a C{CannotListenError}, without the address
    (which the message names already).
    """
    socket_error = getattr(error, "socketError", None)
    return getattr(socket_error, "strerror", None) or str(socket_error or error)
