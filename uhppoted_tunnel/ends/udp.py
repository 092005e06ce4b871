# -*- test-case-name: tests.unit.test_udp -*-
"""
The UDP ends: C{udp/listen} (in), C{udp/broadcast} (out) and C{udp/event}
(in: events from controllers; out: events to the application's listener).

C{udp/listen} takes requests from applications and sends each reply back
to the address the request came from.

C{udp/broadcast} sends requests to the controllers' address (a broadcast
address or one controller) and delivers every reply that arrives within
C{--udp-timeout}. Unlike the Go tunnel, which opens a socket per request
and holds it for the whole timeout, it keeps a pool of long-lived sockets
and matches replies to requests by what a UHPPOTE reply repeats of its
request: the function code and the controller serial. A socket never holds
two requests a reply could be mistaken between, and a key that timed out
stays reserved on its socket for another timeout, so a late reply is
dropped rather than delivered to a later requester.

The ends that receive from applications and controllers (C{udp/listen},
and C{udp/event} as an in end) ask the kernel for a large receive buffer
(C{--udp-receive-buffer}), so that a burst of events waits in the kernel
while the tunnel is busy, read everything queued in one go per wake-up,
and count what the kernel dropped all the same (its per-socket drop
counter, read once per wake-up), so that no datagram is lost untold.

Every warning a sender can provoke at will (empty or oversized packets,
stray replies) goes through L{Throttle}: the first at once, then a count
at most every 10 s.
"""

import socket
import struct
from functools import partial

from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.posixbase import PosixReactorBase
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.udp import Port
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from uhppoted_tunnel.core.addresses import is_ip_address, parse_host_port
from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.link.bind import bind_to_device, check_interface, reactor_for, set_freebind
from uhppoted_tunnel.transports.endpoints import adopt, systemd_socket
from uhppoted_tunnel.core.deadlines import DeadlineQueue
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IControllerObserver, IInEnd, IOutEnd, ITally
from uhppoted_tunnel.link.lifecycle import EndLifecycle
from uhppoted_tunnel.core.packets import hexdump
from uhppoted_tunnel.core.packets import request_key
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.core.counts import EMPTY, KERNEL_OVERFLOW, QUEUE_FULL, TOO_LONG, UNMATCHED, serial_of

#: The most sockets a udp/broadcast end opens at once.
MAX_SOCKETS = 256

#: The key of a packet too short to be UHPPOTE: it takes a socket alone.
_OPAQUE = None

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


class _Request:
    """
    A request in flight, or (with C{reply} None) a key reserved after a
    timeout, or (with C{socket} None too) one answered, which lets go of
    everything but its place in the expiry queue.
    """

    __slots__ = ("key", "reply", "deadline", "socket", "answered")

    def __init__(self, key, reply, deadline, socket):
        self.key = key
        self.reply = reply
        self.deadline = deadline
        self.socket = socket
        #: a request that may have several replies has had one
        self.answered = False


class ReplySocket(DatagramProtocol):
    """
    One long-lived socket of a C{udp/broadcast} end, with the requests in
    flight on it.
    """

    log = Logger()
    log_tag = "UDP"

    def __init__(self, end):
        self.end = end
        #: key -> _Request (live or reserved)
        self.keys = {}
        #: function code -> number of keys held with it
        self.functions = {}

    def accepts(self, key):
        """
        True if a request with C{key} can go on this socket without any
        reply being mistaken between it and another request.
        """
        keys = self.keys
        if key is _OPAQUE:
            return not keys
        if _OPAQUE in keys:
            return False
        function, serial = key
        if serial == 0:
            return function not in self.functions
        return key not in keys and (function, 0) not in keys

    def hold(self, entry):
        self.keys[entry.key] = entry
        if entry.key is not _OPAQUE:
            function = entry.key[0]
            self.functions[function] = self.functions.get(function, 0) + 1

    def release(self, entry):
        key = entry.key
        if self.keys.get(key) is not entry:
            return
        del self.keys[key]
        if key is not _OPAQUE:
            function = key[0]
            count = self.functions[function] - 1
            if count:
                self.functions[function] = count
            else:
                del self.functions[function]
            # the next request with this key tries this socket first
            free = self.end.free
            if key in free:
                free[key].append(self)
            else:
                free[key] = [self]

    def datagramReceived(self, data, address):
        end = self.end
        if end.trace:
            self.log.debug(
                "received {n} bytes from {peer}\n{dump}", n=len(data), peer="{}:{}".format(*address[:2]), dump=hexdump(data)
            )
        if not data or len(data) > end.max_payload:
            end.badReply(len(data), address)
            return
        keys = self.keys
        key = request_key(data)
        if _OPAQUE in keys:
            entry = keys[_OPAQUE]
        elif key is not None:
            # a reply repeats its request's function code and serial
            entry = keys.get(key)
            if entry is None:
                entry = keys.get((key[0], 0))
            elif entry.reply is not None:
                # a unicast request is answered once
                reply = entry.reply
                self.release(entry)
                entry.reply = entry.socket = entry.key = None
                seen = end.seen_controllers
                if seen is not None:
                    # a known controller at its known address: one lookup
                    entry = seen.seen.get(key[1])
                    if entry is None or entry[0] != address:
                        seen.address(key[1], address)
                reply(data)
                return
        else:
            entry = None
        if entry is None or entry.reply is None:
            end.unmatched += 1
            if end.trace:
                self.log.debug("dropped an unmatched or late reply from {peer}", peer=address[0])
            return
        entry.answered = True
        seen = end.seen_controllers
        if seen is not None and key is not None:
            known = seen.seen.get(key[1])
            if known is None or known[0] != address:
                seen.address(key[1], address)
        entry.reply(data)


@implementer(IOutEnd, ITally, IControllerObserver)
class BroadcastEnd(EndLifecycle, Service):
    """
    C{udp/broadcast:ADDRESS}: sends requests to controllers and delivers
    their replies; C{udp/event:ADDRESS} as an out end: sends each event to
    the application's listener (which may be a broadcast address) and
    discards anything sent back.
    """

    log = Logger()
    log_tag = "UDP"
    role = OUT
    #: the tunnel's L{uhppoted_tunnel.observe.telemetry.Controllers} while
    #: something reads them: told where each controller's replies come from
    seen_controllers = None

    def __init__(self, spec, destination, timeout, reactor, max_payload, trace=False, max_sockets=MAX_SOCKETS,
                 events=False):
        """
        :param spec: the connector spec.
        :param destination: C{(host, port)} to send requests to.
        :param timeout: seconds to wait for replies.
        :param reactor: provides C{IReactorUDP} and C{IReactorTime}.
        :param max_payload: the longest packet relayed.
        :param trace: log every packet with a hex dump.
        """
        self.events = events
        self.spec = spec
        self.destination = destination
        self.timeout = timeout
        self.reactor = reactor
        self.max_payload = max_payload
        self.trace = trace
        self.max_sockets = max_sockets
        self.unmatched = 0
        self.timeouts = 0
        #: replies dropped for their size: empty, too long
        self.bad = {EMPTY: 0, TOO_LONG: 0}
        self.sockets = []
        #: key -> sockets that last freed it, most recent last
        self.free = {}
        self._full = Throttle(reactor, self._warnFull)
        self._bad = Throttle(reactor, self._warnBad)
        self._last_bad = None
        self._expiry = DeadlineQueue(reactor, timeout, self._expired)
        self._bind = "::" if ":" in destination[0] else "0.0.0.0"

    def startService(self):
        Service.startService(self)
        try:
            self._open()
        except CannotListenError as e:
            self.failed("cannot open a UDP socket for {address}: {reason}", address=self.spec.address,
                        reason=_reason(e))
            return
        self.log.info("sending to {host}:{port}", host=self.destination[0], port=self.destination[1])
        self.listening(None)

    def _open(self):
        protocol = ReplySocket(self)
        port = reactor_for(self.reactor, self.spec.interface).listenUDP(0, protocol, interface=self._bind)
        port.setBroadcastAllowed(True)
        self.sockets.append(protocol)
        return protocol

    def send(self, payload, reply):
        if not self.running:
            return
        if self.trace:
            self.log.debug("sending {n} bytes to {host}:{port}\n{dump}", n=len(payload), host=self.destination[0],
                           port=self.destination[1], dump=hexdump(payload))
        if reply is None:
            self.sockets[0].transport.write(payload, self.destination)
            return
        key = request_key(payload)
        sock = self._socket_for(key)
        if sock is None:
            self._full.count()
            return
        entry = _Request(key, reply, 0, sock)
        sock.hold(entry)
        self._expiry.add(entry)
        sock.transport.write(payload, self.destination)

    def badReply(self, size, address):
        """
        Count a reply dropped for its size (empty, or over C{max_payload}).
        """
        self._last_bad = (size, address)
        self.bad[TOO_LONG if size else EMPTY] += 1
        self._bad.count()

    def tally(self, t):
        for reason, n in self.bad.items():
            t.drop(reason, n)
        t.drop(UNMATCHED, self.unmatched)
        t.drop(QUEUE_FULL, self._full.total)
        t.timeouts += self.timeouts

    def _warnBad(self, count):
        size, address = self._last_bad
        if count == 1:
            self.log.warn("dropped a reply of {n} bytes from {peer} (limit {limit})", n=size, peer=address[0],
                          limit=self.max_payload)
        else:
            self.log.warn("dropped {count} replies empty or over {limit} bytes (the last: {n} bytes from {peer})",
                          count=count, limit=self.max_payload, n=size, peer=address[0])

    def _warnFull(self, count):
        self.log.warn("dropped {n} request(s): {sockets} sockets busy with requests like them", n=count,
                      sockets=len(self.sockets))

    def _socket_for(self, key):
        """
        A socket on which a request with C{key} can go: one that freed the
        key lately if it still can take it (the usual case, in constant
        time), else the first that can, else a new one.

        :return: a L{ReplySocket}, or C{None} when all L{MAX_SOCKETS} are
            busy with requests a reply could be mistaken between.
        """
        free = self.free.get(key)
        while free:
            sock = free.pop()
            if sock.accepts(key):
                return sock
        for sock in self.sockets:
            if sock.accepts(key):
                return sock
        if len(self.sockets) >= self.max_sockets:
            return None
        return self._open()

    def _expired(self, entries, now):
        """
        End the requests whose timeout has passed, and reserve their keys
        for one more timeout (by keeping them) so that a late reply cannot
        reach a later request.

        :return: the entries kept.
        """
        kept = []
        for entry in entries:
            sock = entry.socket
            if sock is None or sock.keys.get(entry.key) is not entry:
                continue
            if entry.reply is None:
                sock.release(entry)
            else:
                if not entry.answered:
                    self.timeouts += 1
                entry.reply = None
                kept.append(entry)
        return kept

    @property
    def in_flight(self):
        """
        The number of requests waiting for replies.
        """
        return sum(1 for sock in self.sockets for entry in sock.keys.values() if entry.reply is not None)

    def stopService(self):
        Service.stopService(self)
        self._full.flush()
        self._bad.flush()
        self._expiry.clear()
        self.free.clear()
        sockets, self.sockets = self.sockets, []
        return gatherResults([maybeDeferred(sock.transport.stopListening) for sock in sockets])


class ListenProtocol(DatagramProtocol):
    """
    Receives requests from applications on a C{udp/listen} end.
    """

    log = Logger()
    log_tag = "UDP"

    def __init__(self, end):
        self.end = end

    def datagramReceived(self, data, address):
        end = self.end
        if end.trace:
            self.log.debug("received {n} bytes from {peer}\n{dump}", n=len(data), peer="{}:{}".format(*address[:2]),
                           dump=hexdump(data))
        if not data or len(data) > end.max_payload:
            end.badPacket(len(data), address)
            return
        if end.events:
            if end.seen_controllers is not None:
                serial = serial_of(data)
                if serial is not None:
                    end.seen_controllers.address(serial, address)
            end.router.request(data, None)
        else:
            end.router.request(data, partial(end.reply, address), address[0])


@implementer(IInEnd, ITally, IControllerObserver)
class ListenEnd(EndLifecycle, Service):
    """
    C{udp/listen:ADDRESS}: receives requests from UHPPOTE applications;
    C{udp/event:ADDRESS} as an in end: receives events from controllers,
    which are relayed one way.
    """

    log = Logger()
    log_tag = "UDP"
    role = IN
    #: see L{BroadcastEnd.seen_controllers} (told where events come from)
    seen_controllers = None

    def __init__(self, spec, address, router, reactor, max_payload, trace=False, events=False,
                 receive_buffer=DEFAULT_RECEIVE_BUFFER, descriptor=None, freebind=False):
        """
        :param receive_buffer: the socket receive buffer to ask for, in
            bytes.
        :param descriptor: a datagram socket systemd passed, to use instead
            of C{address}; a datagram that woke the unit waits in it.
        :param freebind: bind C{address} even before it is up.
        """
        self.descriptor = descriptor
        self.freebind = freebind
        self.events = events
        self.spec = spec
        self.address = address
        self.router = router
        self.reactor = reactor
        self.max_payload = max_payload
        self.trace = trace
        self.receive_buffer = receive_buffer
        self.port = None
        self._bad = Throttle(reactor, self._warnBad)
        self._last_bad = None
        #: packets dropped for their size: empty, too long
        self.bad = {EMPTY: 0, TOO_LONG: 0}
        self._dropped = Throttle(reactor, self._warnDropped)

    def startService(self):
        Service.startService(self)
        if self.descriptor is not None:
            self._adopt()
            return
        host, port = self.address
        try:
            self.port = listen_udp(self.reactor, port, ListenProtocol(self), host, self.receive_buffer,
                                   self._dropped.count, self.freebind)
            if self.spec.interface is not None and isinstance(self.port, DrainingPort):
                bind_to_device(self.port.socket, self.spec.interface)
        except (CannotListenError, OSError) as e:
            if self.port is not None:
                self.port.stopListening()
                self.port = None
            self.cannotListen(self.spec.address, _reason(e))
            return
        self.log.info("listening on {host}:{port}", host=host, port=self.port.getHost().port)
        granted = getattr(self.port, "granted", None)
        if granted is not None and granted < self.receive_buffer:
            self.log.warn("the kernel gave {host}:{port} a receive buffer of {granted} bytes, not the {size} asked "
                          "for (--udp-receive-buffer): a burst may be dropped; raise net.core.rmem_max or run "
                          "with CAP_NET_ADMIN", host=host, port=self.port.getHost().port, granted=granted,
                          size=self.receive_buffer)
        self.listening(self.port)

    def _adopt(self):
        """
        Read from the datagram socket systemd passed (C{ListenDatagram=}).
        """
        try:
            self.port = self.reactor.adoptDatagramPort(self.descriptor, adopt(self.descriptor),
                                                        ListenProtocol(self))
            set_receive_buffer(self.port.socket, self.receive_buffer)
        except (OSError, ValueError) as e:
            self.cannotListen(self.spec.address, e)
            return
        self.log.info("listening on {address} (passed by systemd)", address=format_address(self.port.getHost()))
        self.listening(self.port)

    @property
    def _what(self):
        return "event(s)" if self.events else "request(s)"

    def badPacket(self, size, address):
        """
        Count a packet dropped for its size (empty, or over C{max_payload}).
        """
        self._last_bad = (size, address)
        self.bad[TOO_LONG if size else EMPTY] += 1
        self._bad.count()

    def tally(self, t):
        for reason, n in self.bad.items():
            t.drop(reason, n)
        t.drop(KERNEL_OVERFLOW, self._dropped.total)

    def _warnBad(self, count):
        size, address = self._last_bad
        self.log.warn("dropped {count} {what} empty or over {limit} bytes (the last: {n} bytes from {host}:{port})",
                      count=count, what=self._what, limit=self.max_payload, n=size, host=address[0],
                      port=address[1])

    def _warnDropped(self, count):
        self.log.warn("the kernel dropped {count} datagram(s) sent to {host}:{port} before they could be read "
                      "({total} in all): the receive buffer was full (--udp-receive-buffer {size})", count=count,
                      host=self.address[0], port=self.port.getHost().port if self.port else self.address[1],
                      total=self._dropped.total, size=self.receive_buffer)

    @property
    def dropped(self):
        """
        The number of datagrams the kernel has dropped so far.
        """
        return self._dropped.total

    def reply(self, address, payload):
        """
        Send a reply to the application that asked.
        """
        if self.port is None:
            return
        if self.trace:
            self.log.debug("sending {n} bytes to {host}:{port}\n{dump}", n=len(payload), host=address[0],
                           port=address[1], dump=hexdump(payload))
        self.port.write(payload, address)

    def stopService(self):
        Service.stopService(self)
        self._bad.flush()
        port = self.port
        if isinstance(port, DrainingPort):
            port.checkDrops()
        self._dropped.flush()
        self.port = None
        return succeed(None) if port is None else maybeDeferred(port.stopListening)


def _reason(error):
    """
    The kernel's reason in a C{CannotListenError}, without the address
    (which the message names already).
    """
    socket_error = getattr(error, "socketError", None)
    return getattr(socket_error, "strerror", None) or str(socket_error or error)


def udp_address(spec, listen):
    """
    Parse a UDP connector address.

    :param spec: the connector spec.
    :param listen: True for a local address (host optional, port 0 allowed).
    :return: C{(host, port)}.
    :raise ValueError: for a malformed address or a host name (UDP ends take
        IP addresses, as the Go tunnel does).
    """
    try:
        host, port = parse_host_port(spec.address, default_host="0.0.0.0" if listen else None)
    except ValueError as e:
        raise ValueError("'{}': {}".format(spec.text, e)) from None
    if not is_ip_address(host):
        raise ValueError("invalid address in '{}': UDP connectors take IP addresses".format(spec.text))
    if not listen and port == 0:
        raise ValueError("invalid address in '{}': port 0".format(spec.text))
    return host, port


@implementer(IPlugin, IConnectorMaker)
class UDPConnectorMaker:
    """
    Makes C{udp/listen} and C{udp/broadcast} ends.
    """

    prefixes = ("udp/listen:", "udp/broadcast:", "udp/event:")

    def roles(self, prefix):
        return {"udp/listen:": frozenset([IN]), "udp/broadcast:": frozenset([OUT])}.get(prefix, frozenset([IN, OUT]))

    def relaysEvents(self, prefix):
        return prefix == "udp/event:"

    def makeEnd(self, spec, role, settings, router, reactor):
        if spec.interface is not None:
            check_interface(spec.interface)
        trace = settings["debug"]
        events = settings["events"]
        if role == IN:
            descriptor = systemd_socket(spec)
            address = None if descriptor is not None else udp_address(spec, listen=True)
            return ListenEnd(spec, address, router, reactor, settings["max-payload"], trace, events,
                             settings.get("udp-receive-buffer", DEFAULT_RECEIVE_BUFFER), descriptor,
                             settings.get("freebind", False))
        return BroadcastEnd(spec, udp_address(spec, listen=False), settings["udp-timeout"], reactor,
                            settings["max-payload"], trace, events=events)

