# -*- test-case-name: tests.unit.test_ip -*-
"""
Tests for L{uhppoted_tunnel.ends.ip}: the C{ip/out} end, which routes
requests to controllers by UDP or TCP as the controllers table says and
sends everything else to its broadcast address.
"""


from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.app import config
from uhppoted_tunnel.ends.ip import IPConnectorMaker
from uhppoted_tunnel.ends.broadcast import BroadcastEnd
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IControllerObserver, IOutEnd, ITally
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.core.throttle import WARN_INTERVAL
from uhppoted_tunnel.app.spec import connector_makers
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor, packet

GET_STATUS = 0x20
GET_CARD = 0x5A
GET_CONTROLLER = 0x94
SET_IP = 0x96

BROADCAST = ("192.168.1.255", 60000)
A, B, C, D = 405419896, 303986753, 201020304, 423187757
UDP_A = ("192.168.1.100", 60000)
TCP_B = ("192.168.1.101", 60000)
UDP_C = ("192.168.1.102", 60000)
UNKNOWN = 999

CONTROLLERS = {
    A: ("udp",) + UDP_A,
    B: ("tcp",) + TCP_B,
    C: ("udp",) + UDP_C,
    D: ("udp",) + UDP_A,  # shares A's address
}


class FakeSettings(dict):
    """
    The settings an end reads: the Options keys, and C{controllers} as an
    attribute, as L{Options} has it.
    """

    def __init__(self, controllers=None, **values):
        dict.__init__(self, {"udp-timeout": 5.0, "max-payload": 1024, "debug": False, "events": False})
        self.update(values)
        if controllers is not None:
            self.controllers = controllers


def ip_spec(address="192.168.1.255:60000"):
    return parse("ip/out:" + address, {"ip/out:": IPConnectorMaker()})[1]


def make(reactor, address="192.168.1.255:60000", controllers=CONTROLLERS, **values):
    return IPConnectorMaker().makeEnd(ip_spec(address), OUT, FakeSettings(controllers, **values), None, reactor)


class Recorder(StringTransport):
    """
    A transport that says whether it was aborted.
    """

    aborted = False

    def abortConnection(self):
        self.aborted = True
        StringTransport.abortConnection(self)


class EndTestsMixin:
    """
    An ip/out end on a L{FakeReactor}, started in C{setUp} and stopped in
    C{tearDown}, which checks nothing is left open or scheduled.
    """

    def setUp(self):
        self.reactor = FakeReactor()
        self.end = make(self.reactor)
        self.end.startService()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def tearDown(self):
        self.successResultOf(self.end.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertFalse(any(port.listening for port in self.reactor.udpPorts))
        self.assertEqual(self.end.tcp.open, set())

    def send(self, request):
        replies = []
        self.end.send(request, replies.append)
        return replies

    def last_written(self):
        """
        :return: C{(port, datagram, address)} of the last datagram sent.
        """
        return self.reactor.udpWritten[-1]

    def messages(self, level=None):
        return [formatEvent(event) for event in self.logged if level is None or event["log_level"] == level]


class RoutingTests(EndTestsMixin, SynchronousTestCase):
    def test_interface(self):
        """
        The end provides L{IOutEnd}: an out end that relays replies, logging
        as IP.
        """
        verifyObject(IOutEnd, self.end)
        verifyObject(ITally, self.end)
        verifyObject(IControllerObserver, self.end)
        self.assertEqual((self.end.role, self.end.events, self.end.log_tag), (OUT, False, "IP"))
        self.assertEqual(self.end.spec.text, "ip/out:192.168.1.255:60000")

    def test_udpController(self):
        """
        A request for a controller in the table with a UDP address is sent
        to that address, not the broadcast one, and its one reply delivered.
        """
        request = packet(GET_CONTROLLER, A)
        replies = self.send(request)
        port, datagram, address = self.last_written()
        self.assertEqual((datagram, address), (request, UDP_A))
        self.assertIs(port.protocol.end, self.end.unicast[UDP_A])
        answer = packet(GET_CONTROLLER, A, b"\xc0\xa8\x01\x64")
        port.receive(answer, UDP_A)
        port.receive(answer, UDP_A)
        self.assertEqual(replies, [answer])

    def test_bareAddressIsUDP(self):
        """
        Each UDP controller goes to its own address; controllers sharing an
        address share its sockets.
        """
        self.send(packet(GET_CARD, C))
        self.assertEqual(self.last_written()[2], UDP_C)
        self.send(packet(GET_CARD, D))
        self.assertEqual(self.last_written()[2], UDP_A)
        self.assertEqual(sorted(self.end.unicast), sorted([UDP_A, UDP_C]))

    def test_unknownSerialBroadcast(self):
        """
        A request for a controller not in the table goes to the broadcast
        address.
        """
        request = packet(GET_CONTROLLER, UNKNOWN)
        replies = self.send(request)
        port, datagram, address = self.last_written()
        self.assertEqual((datagram, address), (request, BROADCAST))
        self.assertIs(port.protocol.end, self.end.broadcast)
        answer = packet(GET_CONTROLLER, UNKNOWN)
        port.receive(answer, ("192.168.1.200", 60000))
        self.assertEqual(replies, [answer])

    def test_serialZeroBroadcast(self):
        """
        A serial-0 request goes to the broadcast address and every reply
        within the timeout is delivered, those of routed controllers too.
        """
        replies = self.send(packet(GET_CONTROLLER, 0))
        port, _, address = self.last_written()
        self.assertEqual(address, BROADCAST)
        answers = [packet(GET_CONTROLLER, serial) for serial in (A, B, UNKNOWN)]
        for answer in answers:
            port.receive(answer, ("192.168.1.7", 60000))
        self.reactor.advance(5)
        port.receive(packet(GET_CONTROLLER, C), ("192.168.1.102", 60000))
        self.assertEqual(replies, answers)

    def test_notUHPPOTEBroadcast(self):
        """
        Packets that are not UHPPOTE requests (wrong length, wrong start
        byte) go to the broadcast address untouched, even when bytes 4..7
        name a routed controller.
        """
        short = packet(GET_CONTROLLER, A)[:32]
        long = packet(GET_CONTROLLER, A) + b"\x00"
        event = b"\x19" + packet(GET_STATUS, A)[1:]
        for request in (short, long, event, b"\x01"):
            self.send(request)
            self.assertEqual(self.last_written()[1:], (request, BROADCAST))
        self.assertEqual(self.reactor.tcpClients, [])

    def test_noReplyWanted(self):
        """
        With C{reply=None} requests go out on each path and nothing waits.
        """
        for request, address in ((packet(SET_IP, A), UDP_A), (packet(SET_IP, 0), BROADCAST)):
            self.end.send(request, None)
            self.assertEqual(self.last_written()[1:], (request, address))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_lateUnicastReplyDropped(self):
        """
        A reply from a UDP controller after the timeout is dropped, as
        udp/broadcast drops it.
        """
        replies = self.send(packet(GET_CONTROLLER, A))
        port = self.last_written()[0]
        self.reactor.advance(5)
        port.receive(packet(GET_CONTROLLER, A), UDP_A)
        self.assertEqual(replies, [])
        self.assertEqual(self.end.unicast[UDP_A].unmatched, 1)

    def test_notRunning(self):
        """
        Nothing is sent once the end has stopped.
        """
        self.successResultOf(self.end.stopService())
        written = len(self.reactor.udpWritten)
        self.send(packet(GET_CONTROLLER, A))
        self.send(packet(GET_CONTROLLER, B))
        self.assertEqual((len(self.reactor.udpWritten), self.reactor.tcpClients), (written, []))

    def test_logsRoutes(self):
        """
        Starting logs where each controller's requests go, and where the
        rest go.
        """
        end = make(self.reactor)
        end.startService()
        self.addCleanup(end.stopService)
        info = self.messages(LogLevel.info)
        self.assertIn("controller {} via udp 192.168.1.100:60000".format(A), info)
        self.assertIn("controller {} via tcp 192.168.1.101:60000".format(B), info)
        self.assertIn("other requests via udp 192.168.1.255:60000", info)


class TCPTests(EndTestsMixin, SynchronousTestCase):
    def connect(self):
        """
        Complete the last TCP connection attempt.

        :return: C{(protocol, transport)}.
        """
        host, port, factory, timeout, _ = self.reactor.tcpClients[-1]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = Recorder()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_connects(self):
        """
        A request for a TCP controller opens a connection to its address,
        with C{--udp-timeout} as the connect timeout.
        """
        self.send(packet(GET_CONTROLLER, B))
        self.assertEqual(self.reactor.tcpClients[-1][:2], TCP_B)
        self.assertEqual(self.reactor.tcpClients[-1][3], 5.0)
        self.assertEqual(len(self.reactor.udpWritten), 0)
        self.reactor.connectors[-1].stopConnecting()
        self.successResultOf(self.end.stopService())

    def test_replyThenClose(self):
        """
        The request is written once connected; the first 64 bytes received,
        in pieces or not, are the one reply, and the connection is closed.
        """
        request = packet(GET_CONTROLLER, B)
        replies = self.send(request)
        protocol, transport = self.connect()
        self.assertEqual(transport.value(), request)
        answer = packet(GET_CONTROLLER, B, b"\xc0\xa8\x01\x65")
        protocol.dataReceived(answer[:10])
        self.assertEqual((replies, transport.disconnecting), ([], False))
        protocol.dataReceived(answer[10:] + b"extra")
        self.assertEqual(replies, [answer])
        self.assertTrue(transport.disconnecting)
        self.assertFalse(transport.aborted)
        protocol.dataReceived(answer)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(replies, [answer])

    def test_shortReplyOnClose(self):
        """
        When the controller closes before 64 bytes, what arrived is the
        reply.
        """
        replies = self.send(packet(GET_CONTROLLER, B))
        protocol, transport = self.connect()
        protocol.dataReceived(b"\x17\x94short")
        self.assertEqual(replies, [])
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(replies, [b"\x17\x94short"])

    def test_closedWithoutReply(self):
        """
        A controller that closes without a word delivers nothing, and the
        drop is logged at debug level.
        """
        replies = self.send(packet(GET_CONTROLLER, B))
        protocol, transport = self.connect()
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(replies, [])
        self.assertTrue(any("closed the connection without replying" in m for m in self.messages(LogLevel.debug)))
        self.reactor.advance(5)

    def test_oversizeShortReplyDropped(self):
        """
        A reply over C{max-payload} is dropped with a warning.
        """
        self.successResultOf(self.end.stopService())
        self.end = make(self.reactor, **{"max-payload": 16})
        self.end.startService()
        replies = self.send(packet(GET_CONTROLLER, B))
        protocol, transport = self.connect()
        protocol.dataReceived(bytes(20))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(replies, [])
        self.assertTrue(any("dropped a reply of 20 bytes" in m for m in self.messages(LogLevel.warn)))

    def test_setIPClosedAfterWrite(self):
        """
        set-ip is never answered: the connection is closed once the request
        is written, and nothing is delivered.
        """
        request = packet(SET_IP, B, b"\xc0\xa8\x01\x65")
        replies = self.send(request)
        protocol, transport = self.connect()
        self.assertEqual(transport.value(), request)
        self.assertTrue(transport.disconnecting)
        protocol.dataReceived(packet(SET_IP, B))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(replies, [])

    def test_noReplyWanted(self):
        """
        With C{reply=None} the connection is closed once the request is
        written.
        """
        request = packet(GET_STATUS, B)
        self.end.send(request, None)
        protocol, transport = self.connect()
        self.assertEqual(transport.value(), request)
        self.assertTrue(transport.disconnecting)
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_timeoutClosesAndDrops(self):
        """
        With no reply within C{--udp-timeout} of sending, the connection is
        aborted, the request dropped with a debug message, and a late reply
        is not delivered.
        """
        replies = self.send(packet(GET_CONTROLLER, B))
        self.reactor.advance(1)
        protocol, transport = self.connect()
        self.reactor.advance(3.9)
        self.assertFalse(transport.disconnecting)
        self.reactor.advance(0.1)
        self.assertTrue(transport.aborted)
        protocol.dataReceived(packet(GET_CONTROLLER, B))
        protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(replies, [])
        debug = self.messages(LogLevel.debug)
        self.assertIn("no reply from controller {} at 192.168.1.101:60000 within 5.0s: dropped".format(B), debug)
        self.assertEqual(self.messages(LogLevel.warn), [])

    def test_connectTimeout(self):
        """
        A connection not made within C{--udp-timeout} is given up with a
        warning naming the controller.
        """
        replies = self.send(packet(GET_CONTROLLER, B))
        self.reactor.advance(5)
        self.assertTrue(self.reactor.connectors[-1].stoppedConnecting)
        self.assertEqual(replies, [])
        warnings = self.messages(LogLevel.warn)
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("controller {} at 192.168.1.101:60000".format(B), warnings[0])

    def test_refusedWarnsThrottled(self):
        """
        A refused connection is a warning naming the controller and its
        address; more failures within the warning interval are counted and
        reported when the interval is up.
        """
        for _ in range(3):
            replies = self.send(packet(GET_CONTROLLER, B))
            _, _, factory, _, _ = self.reactor.tcpClients[-1]
            factory.clientConnectionFailed(self.reactor.connectors[-1], Failure(ConnectionRefusedError()))
            self.assertEqual(replies, [])
        self.assertEqual(len(self.messages(LogLevel.warn)), 1)
        self.reactor.advance(WARN_INTERVAL)
        warnings = self.messages(LogLevel.warn)
        self.assertEqual(len(warnings), 2, warnings)
        self.assertIn("could not connect to controller {} at 192.168.1.101:60000".format(B), warnings[0])
        self.assertIn("refused", warnings[0])
        self.assertIn("dropped 1 request(s)", warnings[0])
        self.assertIn("dropped 2 request(s)", warnings[1])
        self.assertEqual(self.end.tcp.open, set())

    def test_stopAbortsPending(self):
        """
        Stopping aborts connections being made and connections open; the
        stop completes once every open connection is closed, and leaves no
        timers.
        """
        self.send(packet(GET_CONTROLLER, B))
        protocol, transport = self.connect()
        self.send(packet(GET_CARD, B))
        stopped = self.end.stopService()
        self.assertTrue(self.reactor.connectors[-1].stoppedConnecting)
        self.assertTrue(transport.aborted)
        self.assertNoResult(stopped)
        protocol.connectionLost(Failure(ConnectionDone()))
        self.successResultOf(stopped)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.messages(LogLevel.warn), [])


class MakerTests(SynchronousTestCase):
    def test_interface(self):
        """
        The maker provides L{IConnectorMaker}: ip/out is an out connector
        that carries no events.
        """
        maker = IPConnectorMaker()
        verifyObject(IConnectorMaker, maker)
        self.assertEqual(maker.prefixes, ("ip/out:",))
        self.assertEqual(maker.roles("ip/out:"), frozenset([OUT]))
        self.assertFalse(maker.relaysEvents("ip/out:"))

    def test_plugin(self):
        """
        The maker is found among the connector plugins.
        """
        self.assertIsInstance(connector_makers()["ip/out:"], IPConnectorMaker)

    def test_badAddress(self):
        """
        A bad address is a one-line ValueError naming the connector.
        """
        for address in ("nowhere", "controllers.example.com:60000", "192.168.1.255:0", "192.168.1.255:70000"):
            with self.assertRaises(ValueError) as caught:
                make(FakeReactor(), address)
            message = str(caught.exception)
            self.assertIn("ip/out:" + address, message)
            self.assertNotIn("\n", message)

    def test_notIn(self):
        """
        Asked for an in end, the maker refuses.
        """
        with self.assertRaises(ValueError):
            IPConnectorMaker().makeEnd(ip_spec(), IN, FakeSettings(), None, FakeReactor())

    def test_noControllers(self):
        """
        Settings without a controllers table make an end that sends
        everything to its address.
        """
        reactor = FakeReactor()
        end = IPConnectorMaker().makeEnd(ip_spec(), OUT, FakeSettings(), None, reactor)
        self.assertEqual((end.routes, end.unicast), ({}, {}))
        end.startService()
        end.send(packet(GET_CONTROLLER, A), None)
        self.assertEqual(reactor.udpWritten[-1][2], BROADCAST)
        self.successResultOf(end.stopService())

    def test_interfaceBinding(self):
        """
        An C{::IFACE:} binding applies to the broadcast sockets; controllers
        in the table are reached by their routes.
        """
        spec = parse("ip/out::eth1:192.168.1.255:60000", {"ip/out:": IPConnectorMaker()})[1]
        end = IPConnectorMaker().makeEnd(spec, OUT, FakeSettings(CONTROLLERS), None, FakeReactor())
        self.assertIsInstance(end.broadcast, BroadcastEnd)
        self.assertEqual(end.broadcast.spec.interface, "eth1")
        self.assertEqual(end.broadcast.destination, BROADCAST)
        self.assertEqual([e.spec.interface for e in end.unicast.values()], [None, None])

    def test_fromOptions(self):
        """
        The end takes its controllers from the TOML table that L{Options}
        parsed.
        """
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[site]\nin = "tcp/client:127.0.0.1:12345"\nout = "ip/out:192.168.1.255:60000"\n'
                    '[site.controllers]\n{} = "udp::192.168.1.100:60000"\n{} = "tcp::192.168.1.101:60000"\n'
                    '{} = "192.168.1.102:60000"\n'.format(A, B, C))
        options = Options()
        options.parseOptions(["--config", path + "#site"])
        maker, spec = options.ends[OUT]
        end = maker.makeEnd(spec, OUT, options, None, FakeReactor())
        self.assertEqual(end.controllers, {A: ("udp",) + UDP_A, B: ("tcp",) + TCP_B, C: ("udp",) + UDP_C})
        self.assertEqual(sorted(end.unicast), sorted([UDP_A, UDP_C]))
