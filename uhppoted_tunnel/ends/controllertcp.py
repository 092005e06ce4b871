# -*- test-case-name: tests.loopback.test_ip,tests.unit.test_ip -*-
"""
Requests to a controller over TCP, for C{ip/out}: newer UHPPOTE firmware
takes the same 64-byte request on a TCP connection to port 60000 and
answers on it. One connection per request: write, relay the one reply,
close (at once for set-ip, which is never answered), all within
C{--udp-timeout}; one timer for every request in flight.
"""

from functools import partial

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.logger import Logger

from uhppoted_tunnel.core.deadlines import DeadlineQueue
from uhppoted_tunnel.core.packets import hexdump
from uhppoted_tunnel.core.packets import PACKET_SIZE, SET_IP
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.core.counts import NO_PEER, TOO_LONG


class _Attempt:
    """
    One request on its own TCP connection to a controller.

    :ivar reply: the callback still owed a reply, or C{None} once delivered,
        given up, or never wanted.
    :ivar protocol: the L{ControllerProtocol} once connected.
    :ivar connecting: the connection Deferred while connecting.
    :ivar cancelled: True once the end gave up on connecting (deadline or
        stop), so the failure that follows is not a warning.
    :ivar closed: fires when the connection is lost, if the end is waiting.
    """

    __slots__ = ("serial", "address", "payload", "reply", "deadline", "buffer", "protocol", "connecting",
                 "cancelled", "closed")

    def __init__(self, serial, address, payload, reply, deadline):
        self.serial = serial
        self.address = address
        self.payload = payload
        self.reply = reply
        self.deadline = deadline
        self.buffer = b""
        self.protocol = None
        self.connecting = None
        self.cancelled = False
        self.closed = None


class ControllerProtocol(Protocol):
    """
    A TCP connection carrying one request to a controller; the logic is
    L{ControllerTCP}'s.
    """

    def __init__(self, owner, attempt):
        self.owner = owner
        self.attempt = attempt

    def connectionMade(self):
        self.owner.connected(self.attempt, self)

    def dataReceived(self, data):
        self.owner.received(self.attempt, data)

    def connectionLost(self, reason):
        self.owner.lost(self.attempt)


class ControllerTCP(Service):
    """
    The TCP part of an C{ip/out} end: one short connection per request.

    One timer sweeps the requests past their deadline (every request gets
    the same timeout, so they expire in the order they were sent).
    """

    log = Logger()
    log_tag = "IP"

    def __init__(self, timeout, reactor, max_payload, trace=False):
        """
        :param timeout: seconds a request may take, connecting included.
        :param reactor: provides C{IReactorTCP} and C{IReactorTime}.
        :param max_payload: the longest reply relayed.
        :param trace: log every packet with a hex dump.
        """
        self.timeout = timeout
        self.reactor = reactor
        self.max_payload = max_payload
        self.trace = trace
        #: attempts whose socket is not yet closed
        self.open = set()
        self._expiry = DeadlineQueue(reactor, timeout, self._expired)
        #: serial -> Throttle for connection failure warnings
        self._failures = {}
        self._oversize = Throttle(reactor, self._warnOversize)
        self._last_oversize = None
        #: serial -> (address, reason) of its last connection failure
        self._reasons = {}
        #: requests connected to but not answered in time
        self.timeouts = 0

    def send(self, serial, address, payload, reply):
        """
        Send one request to a controller over a new connection.

        :param serial: the controller's serial, for messages.
        :param address: C{(host, port)}.
        :param payload: the request.
        :param reply: called with the one reply, or C{None}.
        """
        if not self.running:
            return
        attempt = _Attempt(serial, address, payload, reply, 0)
        self.open.add(attempt)
        self._expiry.add(attempt)
        endpoint = TCP4ClientEndpoint(self.reactor, address[0], address[1], timeout=self.timeout)
        attempt.connecting = connectProtocol(endpoint, ControllerProtocol(self, attempt))
        attempt.connecting.addCallbacks(partial(self._made, attempt), partial(self._failed, attempt))

    def connected(self, attempt, protocol):
        """
        The connection is up: write the request, and close at once if no
        reply will come.
        """
        attempt.protocol = protocol
        if self.trace:
            self.log.debug("sending {n} bytes to controller {serial} at {host}:{port}\n{dump}", n=len(attempt.payload),
                           serial=attempt.serial, host=attempt.address[0], port=attempt.address[1],
                           dump=hexdump(attempt.payload))
        protocol.transport.write(attempt.payload)
        if attempt.reply is None or attempt.payload[1] == SET_IP:
            attempt.reply = None
            protocol.transport.loseConnection()

    def _made(self, attempt, protocol):
        attempt.connecting = None

    def received(self, attempt, data):
        """
        Bytes from the controller: the first 64 are its reply.
        """
        if self.trace:
            self.log.debug("received {n} bytes from controller {serial} at {host}:{port}\n{dump}", n=len(data),
                           serial=attempt.serial, host=attempt.address[0], port=attempt.address[1],
                           dump=hexdump(data))
        if attempt.reply is None:
            return
        attempt.buffer += data
        if len(attempt.buffer) >= PACKET_SIZE:
            reply, attempt.reply = attempt.reply, None
            attempt.protocol.transport.loseConnection()
            self._deliver(attempt, reply, attempt.buffer[:PACKET_SIZE])

    def lost(self, attempt):
        """
        The connection is closed: deliver a short reply if that is all the
        controller sent.
        """
        self.open.discard(attempt)
        reply, attempt.reply = attempt.reply, None
        if reply is not None:
            if attempt.buffer:
                self._deliver(attempt, reply, attempt.buffer)
            else:
                self.log.debug("controller {serial} at {host}:{port} closed the connection without replying",
                               serial=attempt.serial, host=attempt.address[0], port=attempt.address[1])
        attempt.protocol = None
        closed, attempt.closed = attempt.closed, None
        if closed is not None:
            closed.callback(None)

    def _deliver(self, attempt, reply, data):
        if len(data) > self.max_payload:
            self._last_oversize = (len(data), attempt.serial)
            self._oversize.count()
            return
        reply(data)

    def tally(self, t):
        """
        Add the timeouts and drops to a L{uhppoted_tunnel.observe.telemetry.Tally}:
        requests whose controller could not be reached count as dropped
        for want of a peer.
        """
        t.timeouts += self.timeouts
        t.drop(TOO_LONG, self._oversize.total)
        t.drop(NO_PEER, sum(throttle.total for throttle in self._failures.values()))

    def _warnOversize(self, count):
        size, serial = self._last_oversize
        if count == 1:
            self.log.warn("dropped a reply of {n} bytes from controller {serial} (limit {limit})", n=size,
                          serial=serial, limit=self.max_payload)
        else:
            self.log.warn("dropped {count} replies over {limit} bytes (the last: {n} bytes from controller "
                          "{serial})", count=count, n=size, serial=serial, limit=self.max_payload)

    def _failed(self, attempt, failure):
        """
        The connection could not be made.
        """
        self.open.discard(attempt)
        attempt.connecting = None
        attempt.reply = None
        if not attempt.cancelled:
            self._warn(attempt, failure.getErrorMessage())

    def _warn(self, attempt, reason):
        throttle = self._failures.get(attempt.serial)
        if throttle is None:
            throttle = self._failures[attempt.serial] = Throttle(self.reactor, partial(self._report, attempt.serial))
        self._reasons[attempt.serial] = (attempt.address, reason)
        throttle.count()

    def _report(self, serial, count):
        (host, port), reason = self._reasons[serial]
        self.log.warn("could not connect to controller {serial} at {host}:{port} ({reason}): dropped {n} request(s)",
                      serial=serial, host=host, port=port, reason=reason, n=count)

    def _expired(self, attempts, now):
        """
        Give up on the requests past their deadline: stop connecting (a
        connection failure), or close the connection and drop the request.

        :return: none to keep.
        """
        for attempt in attempts:
            if attempt not in self.open:
                continue
            if attempt.protocol is None:
                if attempt.connecting is not None:
                    attempt.cancelled = True
                    attempt.reply = None
                    self._warn(attempt, "no connection within {}s".format(self.timeout))
                    attempt.connecting.cancel()
            else:
                if attempt.reply is not None:
                    attempt.reply = None
                    self.timeouts += 1
                    self.log.debug("no reply from controller {serial} at {host}:{port} within {timeout}s: "
                                   "dropped", serial=attempt.serial, host=attempt.address[0],
                                   port=attempt.address[1], timeout=self.timeout)
                attempt.protocol.transport.abortConnection()
        return ()

    def stopService(self):
        """
        Abort every connection and connection attempt.

        :return: a Deferred that fires once every connection is closed.
        """
        Service.stopService(self)
        self._oversize.flush()
        for throttle in self._failures.values():
            throttle.flush()
        self._expiry.clear()
        waiting = []
        for attempt in list(self.open):
            attempt.reply = None
            if attempt.protocol is None:
                if attempt.connecting is not None:
                    attempt.cancelled = True
                    attempt.connecting.cancel()
                self.open.discard(attempt)
            else:
                attempt.closed = Deferred()
                waiting.append(attempt.closed)
                attempt.protocol.transport.abortConnection()
        return gatherResults(waiting)
