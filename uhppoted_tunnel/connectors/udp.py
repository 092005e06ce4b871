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
"""

from collections import deque
from functools import partial

from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from uhppoted_tunnel.addresses import is_ip_address, parse_host_port
from uhppoted_tunnel.bind import check_interface, reactor_for
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IInEnd, IOutEnd
from uhppoted_tunnel.lifecycle import EndLifecycle
from uhppoted_tunnel.logging import hexdump
from uhppoted_tunnel.packets import request_key
from uhppoted_tunnel.router import Throttle

#: The most sockets a udp/broadcast end opens at once.
MAX_SOCKETS = 256

#: The key of a packet too short to be UHPPOTE: it takes a socket alone.
_OPAQUE = None


class _Request:
    """
    A request in flight, or (with C{reply} None) a key reserved after a
    timeout, or (with C{socket} None too) one answered, which lets go of
    everything but its place in the expiry queue.
    """

    __slots__ = ("key", "reply", "deadline", "socket")

    def __init__(self, key, reply, deadline, socket):
        self.key = key
        self.reply = reply
        self.deadline = deadline
        self.socket = socket


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
            end.log.warn("dropped a reply of {n} bytes from {peer}", n=len(data), peer=address[0])
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
                reply(data)
                return
        else:
            entry = None
        if entry is None or entry.reply is None:
            end.unmatched += 1
            if end.trace:
                self.log.debug("dropped an unmatched or late reply from {peer}", peer=address[0])
            return
        entry.reply(data)


@implementer(IOutEnd)
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
        self.sockets = []
        #: key -> sockets that last freed it, most recent last
        self.free = {}
        self._full = Throttle(reactor, self._warnFull)
        self._expiry = deque()
        self._timer = None
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
        entry = _Request(key, reply, self.reactor.seconds() + self.timeout, sock)
        sock.hold(entry)
        self._expiry.append(entry)
        if self._timer is None:
            self._timer = self.reactor.callLater(self.timeout, self._expire)
        sock.transport.write(payload, self.destination)

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

    def _expire(self):
        """
        End every request whose timeout has passed; reserve its key for one
        more timeout so that a late reply cannot reach a later request.
        """
        self._timer = None
        now = self.reactor.seconds()
        expiry = self._expiry
        while expiry and expiry[0].deadline <= now:
            entry = expiry.popleft()
            sock = entry.socket
            if sock is None or sock.keys.get(entry.key) is not entry:
                continue
            if entry.reply is None:
                sock.release(entry)
            else:
                entry.reply = None
                entry.deadline = now + self.timeout
                expiry.append(entry)
        if expiry:
            self._timer = self.reactor.callLater(max(0.0, expiry[0].deadline - now), self._expire)

    @property
    def in_flight(self):
        """
        The number of requests waiting for replies.
        """
        return sum(1 for sock in self.sockets for entry in sock.keys.values() if entry.reply is not None)

    def stopService(self):
        Service.stopService(self)
        self._full.flush()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
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
            self.log.warn("dropped a request of {n} bytes from {host}:{port} (limit {limit})", n=len(data),
                          host=address[0], port=address[1], limit=end.max_payload)
            return
        if end.events:
            end.router.request(data, None)
        else:
            end.router.request(data, partial(end.reply, address), address[0])


@implementer(IInEnd)
class ListenEnd(EndLifecycle, Service):
    """
    C{udp/listen:ADDRESS}: receives requests from UHPPOTE applications;
    C{udp/event:ADDRESS} as an in end: receives events from controllers,
    which are relayed one way.
    """

    log = Logger()
    log_tag = "UDP"
    role = IN

    def __init__(self, spec, address, router, reactor, max_payload, trace=False, events=False):
        self.events = events
        self.spec = spec
        self.address = address
        self.router = router
        self.reactor = reactor
        self.max_payload = max_payload
        self.trace = trace
        self.port = None

    def startService(self):
        Service.startService(self)
        host, port = self.address
        try:
            self.port = reactor_for(self.reactor, self.spec.interface).listenUDP(port, ListenProtocol(self),
                                                                                 interface=host)
        except CannotListenError as e:
            self.cannotListen(self.spec.address, _reason(e))
            return
        self.log.info("listening on {host}:{port}", host=host, port=self.port.getHost().port)
        self.listening(self.port)

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
        port, self.port = self.port, None
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
            return ListenEnd(spec, udp_address(spec, listen=True), router, reactor, settings["max-payload"], trace,
                             events)
        return BroadcastEnd(spec, udp_address(spec, listen=False), settings["udp-timeout"], reactor,
                            settings["max-payload"], trace, events=events)

