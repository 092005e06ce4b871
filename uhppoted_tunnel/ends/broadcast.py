# -*- test-case-name: tests.unit.test_udp,tests.unit.test_replytimes -*-
"""
C{udp/broadcast} (out), and C{udp/event} as an out end: requests sent to
the controllers' address and their replies matched back.

C{udp/broadcast} sends requests to the controllers' address (a broadcast
address or one controller) and delivers every reply that arrives within
C{--udp-timeout}. Unlike the Go tunnel, which opens a socket per request
and holds it for the whole timeout, it keeps a pool of long-lived sockets
and matches replies to requests by what a UHPPOTE reply repeats of its
request: the function code and the controller serial. A socket never holds
two requests a reply could be mistaken between, and a key that timed out
stays reserved on its socket for another timeout, so a late reply is
dropped rather than delivered to a later requester.

Every warning a sender can provoke at will (empty or oversized packets,
stray replies) goes through L{Throttle}: the first at once, then a count
at most every 10 s.
"""

from bisect import bisect_left

from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel.core.accounting import UnansweredWarnings
from uhppoted_tunnel.core.counts import EMPTY, QUEUE_FULL, TOO_LONG, UNMATCHED
from uhppoted_tunnel.core.deadlines import DeadlineQueue
from uhppoted_tunnel.core.packets import hexdump, request_key
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.ends.udpsocket import cannot_listen_reason, datagram_sender
from uhppoted_tunnel.interfaces import OUT, IControllerObserver, IOutEnd, IReplyTimer, ITally
from uhppoted_tunnel.link.bind import reactor_for
from uhppoted_tunnel.link.lifecycle import EndLifecycle


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

    __slots__ = ("key", "reply", "deadline", "socket", "answered", "start")

    def __init__(self, key, reply, deadline, socket):
        self.key = key
        self.reply = reply
        self.deadline = deadline
        self.socket = socket
        # start: when it was sent (what its replies are timed from), set
        # by the end as it adds it to its deadline queue
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

    def startProtocol(self):
        #: sends a datagram from this socket (see ends.udpsocket)
        self.send = datagram_sender(self.transport)

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
                times = end.reply_times
                if times is not None:
                    # times.replied_from written out, a frame fewer: timed,
                    # and a known controller at its known address noted in
                    # one look-up
                    now = times.seconds()
                    elapsed = now - entry.start
                    times.counts[bisect_left(times.bounds, elapsed)] += 1
                    times.latency.sum += elapsed
                    known = times.seen.get(key[1])
                    if known is not None and known[0] == address:
                        known[1] = known[3] = now
                    elif key[1]:
                        times.controllers.address(key[1], address)
                        known = times.seen[key[1]]
                        known[1] = known[3] = now
                    reply(data)
                    return
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
        times = end.reply_times
        if times is not None:
            times.replied_from(entry.start, None if key is None else key[1], address)
            entry.reply(data)
            return
        seen = end.seen_controllers
        if seen is not None and key is not None:
            known = seen.seen.get(key[1])
            if known is None or known[0] != address:
                seen.address(key[1], address)
        entry.reply(data)


@implementer(IOutEnd, ITally, IControllerObserver, IReplyTimer)
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
    #: the tunnel's L{uhppoted_tunnel.core.replytimes.ReplyTimes} while
    #: something reads them: each reply is timed from its request's
    #: C{start}, and its controller noted, as it is matched (instead of
    #: seen_controllers)
    reply_times = None

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
        # an instance attribute, read on every reply's path: the cheapest
        # kind to read
        self.reply_times = None
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
        self._unanswered = UnansweredWarnings(reactor, self.log_tag, spec.text, timeout)
        self._bind = "::" if ":" in destination[0] else "0.0.0.0"

    def startService(self):
        Service.startService(self)
        try:
            self._open()
        except CannotListenError as e:
            self.failed("cannot open a UDP socket for {address}: {reason}", address=self.spec.address,
                        reason=cannot_listen_reason(e))
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
            self.sockets[0].send(payload, self.destination)
            return
        key = request_key(payload)
        sock = self._socket_for(key)
        if sock is None:
            self._full.count()
            return
        entry = _Request(key, reply, 0, sock)
        sock.hold(entry)
        entry.start = self._expiry.add(entry)
        sock.send(payload, self.destination)

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
                    self._unanswered.unanswered(entry.key)
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
        self._unanswered.flush()
        self._expiry.clear()
        self.free.clear()
        sockets, self.sockets = self.sockets, []
        return gatherResults([maybeDeferred(sock.transport.stopListening) for sock in sockets])
