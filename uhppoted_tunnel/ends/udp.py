# -*- test-case-name: tests.unit.test_udp -*-
"""
The UDP ends' connector: C{udp/listen} (in), C{udp/broadcast} (out, in
L{uhppoted_tunnel.ends.broadcast}) and C{udp/event} (in: events from
controllers; out: events to the application's listener), and the in end,
L{ListenEnd}.

C{udp/listen} takes requests from applications and sends each reply back
to the address the request came from; it listens with a
L{uhppoted_tunnel.ends.udpsocket.DrainingPort}.

Every warning a sender can provoke at will (empty or oversized packets)
goes through L{Throttle}: the first at once, then a count at most every
10 s.
"""

from functools import partial

from twisted.application.service import Service
from twisted.internet.defer import maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from uhppoted_tunnel.core.addresses import format_address, is_ip_address, parse_host_port
from uhppoted_tunnel.core.counts import EMPTY, KERNEL_OVERFLOW, TOO_LONG, serial_of
from uhppoted_tunnel.core.packets import hexdump
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.ends.broadcast import BroadcastEnd
from uhppoted_tunnel.ends.udpsocket import (DEFAULT_RECEIVE_BUFFER, DrainingPort, cannot_listen_reason, listen_udp,
                                             datagram_sender, set_receive_buffer)
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IControllerObserver, IInEnd, ITally
from uhppoted_tunnel.link.bind import bind_to_device, check_interface
from uhppoted_tunnel.link.lifecycle import EndLifecycle
from uhppoted_tunnel.transports.endpoints import adopt, systemd_socket


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
            self.cannotListen(self.spec.address, cannot_listen_reason(e))
            return
        self._send = datagram_sender(self.port)
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
        self._send = datagram_sender(self.port)
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
        self._send(payload, address)

    def stopService(self):
        Service.stopService(self)
        self._bad.flush()
        port = self.port
        if isinstance(port, DrainingPort):
            port.checkDrops()
        self._dropped.flush()
        self.port = None
        return succeed(None) if port is None else maybeDeferred(port.stopListening)


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
