"""
Fakes for testing tunnels without real sockets or real time.

C{twisted.internet.testing.MemoryReactorClock} has no UDP, so
L{FakeReactor} adds a C{listenUDP} whose ports record what is written.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock


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


class RecordingRouter:
    """
    A router that records each request and its reply callback, and
    forwards nothing.

    :ivar requests: a list of C{(payload, reply)}.
    """

    def __init__(self):
        self.requests = []

    def request(self, payload, reply):
        self.requests.append((payload, reply))
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
        self._waiting = []
        self.publisher.addObserver(self)

    def stop(self):
        self.publisher.removeObserver(self)
        self._waiting = []

    def __call__(self, event):
        self.events.append(event)
        for condition, d, clock in list(self._waiting):
            if condition(event):
                self._waiting.remove((condition, d, clock))
                # never run the waiter inside the code that is logging
                clock.callLater(0, d.callback, event)

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
        from twisted.internet.defer import Deferred
        from twisted.logger import formatEvent

        def condition(event):
            return text in formatEvent(event)

        for event in self.events:
            if condition(event):
                return succeed(event)
        d = Deferred()
        self._waiting.append((condition, d, clock))

        def expired():
            if (condition, d, clock) in self._waiting:
                self._waiting.remove((condition, d, clock))
                d.errback(AssertionError("no log message containing {!r} within {}s; log:\n{}".format(
                    text, timeout, "\n".join(self.messages()))))

        timer = clock.callLater(timeout, expired)
        d.addBoth(lambda result: (timer.active() and timer.cancel(), result)[1])
        return d
