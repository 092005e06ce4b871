"""
Fakes for testing tunnels without real sockets or real time.

C{twisted.internet.testing.MemoryReactorClock} has no UDP, so
L{FakeReactor} adds a C{listenUDP} whose ports record what is written.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from zope.interface import alsoProvides, implementer

from uhppoted_tunnel.interfaces import IFrameConnection, IPeerIdentity, IReactorTurnEnd


class FakeUDPPort:
    """
    A listening UDP port that records datagrams written to it.

    :ivar written: a list of C{(datagram, address)}.
    """

    def __init__(self, reactor, port, protocol, interface):
        self.reactor = reactor
        self.port = port or reactor.next_port()
        self.protocol = protocol
        self.interface = interface
        self.written = []
        self.broadcast = False
        self.listening = True

    def write(self, datagram, address):
        self.written.append((datagram, address))
        self.reactor.udpWritten.append((self, datagram, address))
        target = self.reactor.udpNetwork.get(tuple(address[:2]))
        if target is not None:
            self.reactor.callLater(0, target.receive, datagram, self.address)

    @property
    def address(self):
        """
        Where datagrams from this port appear to come from.
        """
        return (self.interface if self.interface not in ("", "0.0.0.0", "::") else "127.0.0.1", self.port)

    def setBroadcastAllowed(self, enabled):
        self.broadcast = enabled

    def getHost(self):
        return IPv4Address("UDP", self.interface or "0.0.0.0", self.port)

    def stopListening(self):
        self.listening = False
        self.reactor.udpNetwork.pop(self.address, None)
        self.protocol.doStop()
        return succeed(None)

    def receive(self, datagram, address):
        """
        Deliver a datagram to the protocol, as if it arrived from
        C{address}.
        """
        self.protocol.datagramReceived(datagram, address)


class FakeReactor(MemoryReactorClock):
    """
    A C{MemoryReactorClock} with UDP.

    :ivar udpPorts: every L{FakeUDPPort} opened, in order.
    :ivar udpWritten: C{(port, datagram, address)} for every datagram
        written, in order.
    :ivar udpNetwork: listening ports by address; a datagram written to one
        of these addresses is delivered to it on the next C{advance(0)},
        from the writer's address, so fake applications, tunnel ends and
        emulated controllers can talk.
    """

    def __init__(self):
        MemoryReactorClock.__init__(self)
        self.udpPorts = []
        self.udpWritten = []
        self.udpNetwork = {}
        self._next_port = 40000

    def next_port(self):
        self._next_port += 1
        return self._next_port

    def listenUDP(self, port, protocol, interface="", maxPacketSize=8192):
        listening = FakeUDPPort(self, port, protocol, interface)
        protocol.makeConnection(listening)
        self.udpPorts.append(listening)
        self.udpNetwork[listening.address] = listening
        return listening


@implementer(IReactorTurnEnd)
class TurnEndClock(MemoryReactorClock):
    """
    A reactor with end-of-turn calls (as the tunnel's own reactor has),
    run by C{endTurn}.
    """

    def __init__(self):
        MemoryReactorClock.__init__(self)
        self.turn_end = []

    def callAtTurnEnd(self, f):
        self.turn_end.append(f)

    def endTurn(self):
        calls, self.turn_end = self.turn_end, []
        for f in calls:
            f()


class RecordingRouter:
    """
    A router that records each request and its reply callback, and
    forwards nothing.

    :ivar requests: a list of C{(payload, reply)}.
    :ivar sources: the sender of each request, where the end says.
    """

    def __init__(self):
        self.requests = []
        self.sources = []

    def request(self, payload, reply, source=None):
        self.requests.append((payload, reply))
        self.sources.append(source)
        return True


def packet(function, serial, body=b""):
    """
    A 64-byte UHPPOTE packet.

    :param function: the function code.
    :param serial: the controller serial.
    :param body: bytes from offset 8.
    """
    data = bytes([0x17, function, 0, 0]) + serial.to_bytes(4, "little") + body
    return data + bytes(64 - len(data))


class WaitTimeout(AssertionError):
    """
    What a test waited for did not happen before its deadline.
    """


#: What a L{Conditions} test returns while its condition does not hold.
NOT_YET = object()


class Conditions:
    """
    The one way the tests wait: Deferreds that fire as soon as a condition
    holds, or fail with L{WaitTimeout} when a deadline passes. Whoever
    records what the conditions look at (lines of output, log events,
    datagrams, frames) calls L{check} after each change.
    """

    def __init__(self, clock, later=False):
        """
        :param clock: an C{IReactorTime} for the deadlines.
        :param later: fire on the next turn of the reactor rather than from
            within L{check}, so that a waiter never runs inside the code
            being watched (a log call, say).
        """
        self.clock = clock
        self.later = later
        self._waiting = []

    def wait(self, test, timeout, describe):
        """
        :param test: called now and at every L{check}; returns L{NOT_YET}
            while the condition does not hold, else the value to fire with.
        :param timeout: seconds before the Deferred fails.
        :param describe: called at the deadline for the failure's message.
        :return: a Deferred.
        """
        value = test()
        if value is not NOT_YET:
            return succeed(value)
        d = Deferred()
        waiter = [test, d, describe, None]
        waiter[3] = self.clock.callLater(timeout, self._expired, waiter)
        self._waiting.append(waiter)
        return d

    def _expired(self, waiter):
        self._waiting.remove(waiter)
        waiter[1].errback(WaitTimeout(waiter[2]()))

    def check(self):
        """
        Fire every waiter whose condition now holds.
        """
        for waiter in list(self._waiting):
            if waiter not in self._waiting:
                continue
            value = waiter[0]()
            if value is not NOT_YET:
                self._waiting.remove(waiter)
                waiter[3].cancel()
                if self.later:
                    self.clock.callLater(0, waiter[1].callback, value)
                else:
                    waiter[1].callback(value)

    def fail(self, why):
        """
        Fail every waiter now (what they wait for can no longer happen).

        :param why: called with each waiter's own description, for the
            failure's message.
        """
        waiting, self._waiting = self._waiting, []
        for test, d, describe, call in waiting:
            call.cancel()
            d.errback(WaitTimeout(why(describe())))

    def clear(self):
        """
        Forget every waiter, cancelling its deadline.
        """
        waiting, self._waiting = self._waiting, []
        for test, d, describe, call in waiting:
            call.cancel()


class LogWatcher:
    """
    Records log events and fires Deferreds when an event matching a
    condition has been seen: tests wait on what the code says, not on
    time.
    """

    def __init__(self, publisher=None):
        from twisted.logger import globalLogPublisher

        self.publisher = publisher or globalLogPublisher
        self.events = []
        self._conditions = {}
        self.publisher.addObserver(self)

    def stop(self):
        self.publisher.removeObserver(self)
        for conditions in self._conditions.values():
            conditions.clear()

    def __call__(self, event):
        self.events.append(event)
        for conditions in list(self._conditions.values()):
            conditions.check()

    def messages(self):
        """
        Every event's formatted text.
        """
        from twisted.logger import formatEvent

        return [formatEvent(event) for event in self.events]

    def waitFor(self, text, clock, timeout=30.0):
        """
        :param text: a substring of the formatted message awaited.
        :param clock: the reactor, for the deadline.
        :return: a Deferred firing with the first event (already seen or
            future) whose message contains C{text}; it fails with the log so
            far if none arrives within C{timeout} seconds.
        """
        from twisted.logger import formatEvent

        conditions = self._conditions.get(clock)
        if conditions is None:
            # never run the waiter inside the code that is logging
            conditions = self._conditions[clock] = Conditions(clock, later=True)
        seen = [0]

        def test():
            for event in self.events[seen[0]:]:
                seen[0] += 1
                if text in formatEvent(event):
                    return event
            return NOT_YET

        event = test()
        if event is not NOT_YET:
            return succeed(event)
        return conditions.wait(test, timeout, lambda: "no log message containing {!r} within {}s; log:\n{}".format(
            text, timeout, "\n".join(self.messages())))


@implementer(IFrameConnection)
class FakeFrameConnection:
    """
    An L{IFrameConnection} that records the frames sent to it; given an
    C{identity}, it also provides L{IPeerIdentity} (a peer that proved a
    certificate).
    """

    def __init__(self, peer="192.0.2.1:40000", identity=None):
        self.peer = peer
        self.sent = []
        self.closed = False
        if identity is not None:
            self.identity = identity
            alsoProvides(self, IPeerIdentity)

    def sendFrame(self, frame_id, payload):
        self.sent.append((frame_id, payload))
        return True

    def close(self):
        self.closed = True

    def whenClosed(self):
        return succeed(None) if self.closed else Deferred()
