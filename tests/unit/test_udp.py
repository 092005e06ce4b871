"""
Tests for L{uhppoted_tunnel.ends.udp}, L{uhppoted_tunnel.ends.broadcast}: the udp/listen and
udp/broadcast ends.
"""

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.ends.broadcast import BroadcastEnd
from uhppoted_tunnel.ends.udp import ListenEnd, UDPConnectorMaker
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IControllerObserver, IInEnd, IOutEnd, ITally
from uhppoted_tunnel.core.packets import request_key
from uhppoted_tunnel.core.spec import ConnectorSpec
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter, packet

GET_CONTROLLER = 0x94
GET_CARD = 0x5A
CONTROLLERS = ("127.0.0.1", 60000)


def spec(text):
    prefix, _, address = text.partition(":")
    return ConnectorSpec(text, prefix + ":", None, address)


class BroadcastEndTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.end = BroadcastEnd(spec("udp/broadcast:127.0.0.1:60000"), CONTROLLERS, 5.0, self.reactor, 1024)
        self.end.startService()

    def tearDown(self):
        self.successResultOf(self.end.stopService())
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertFalse(any(port.listening for port in self.reactor.udpPorts))

    def send(self, request):
        replies = []
        self.end.send(request, replies.append)
        return replies

    def sent_on(self):
        """
        The port the last request was written to.
        """
        return self.reactor.udpWritten[-1][0]

    def test_interface(self):
        """
        The end provides L{IOutEnd}.
        """
        verifyObject(IOutEnd, self.end)
        verifyObject(ITally, self.end)
        verifyObject(IControllerObserver, self.end)

    def test_unicast(self):
        """
        A request to one controller is sent to the destination and its one
        reply delivered; a duplicate reply is not.
        """
        request = packet(GET_CONTROLLER, 405419896)
        replies = self.send(request)
        port = self.reactor.udpPorts[0]
        self.assertEqual(port.written, [(request, CONTROLLERS)])
        self.assertTrue(port.broadcast)
        answer = packet(GET_CONTROLLER, 405419896, b"\xc0\xa8\x01\x64")
        port.receive(answer, CONTROLLERS)
        port.receive(answer, CONTROLLERS)
        self.assertEqual(replies, [answer])

    def test_broadcastCollectsEveryReply(self):
        """
        A serial-0 request is answered by every controller within the
        timeout; a reply after the timeout is dropped.
        """
        replies = self.send(packet(GET_CONTROLLER, 0))
        port = self.sent_on()
        first, second = packet(GET_CONTROLLER, 1), packet(GET_CONTROLLER, 2)
        port.receive(first, ("127.0.0.1", 60000))
        self.reactor.advance(4.9)
        port.receive(second, ("127.0.0.2", 60000))
        self.reactor.advance(0.1)
        port.receive(packet(GET_CONTROLLER, 3), ("127.0.0.3", 60000))
        self.assertEqual(replies, [first, second])

    def test_identicalRequestsNeverSwap(self):
        """
        Two requests a reply could be mistaken between (same function and
        serial, different cards) go out on different sockets, and each gets
        the reply to its own.
        """
        card_a = self.send(packet(GET_CARD, 7, (1001).to_bytes(4, "little")))
        port_a = self.sent_on()
        card_b = self.send(packet(GET_CARD, 7, (1002).to_bytes(4, "little")))
        port_b = self.sent_on()
        self.assertIsNot(port_a, port_b)
        reply_b = packet(GET_CARD, 7, (1002).to_bytes(4, "little"))
        reply_a = packet(GET_CARD, 7, (1001).to_bytes(4, "little"))
        port_b.receive(reply_b, CONTROLLERS)
        port_a.receive(reply_a, CONTROLLERS)
        self.assertEqual((card_a, card_b), ([reply_a], [reply_b]))

    def test_socketsReused(self):
        """
        Sockets are long-lived: sequential requests share one socket.
        """
        for serial in (1, 2, 1, 3, 1):
            replies = self.send(packet(GET_CONTROLLER, serial))
            self.sent_on().receive(packet(GET_CONTROLLER, serial), CONTROLLERS)
            self.assertEqual(len(replies), 1)
        self.assertEqual(len(self.reactor.udpPorts), 1)

    def test_broadcastExcludesUnicastOfSameFunction(self):
        """
        A broadcast and a unicast of the same function never share a
        socket; other functions may.
        """
        self.send(packet(GET_CONTROLLER, 0))
        first = self.sent_on()
        self.send(packet(GET_CONTROLLER, 5))
        self.assertIsNot(self.sent_on(), first)
        self.send(packet(GET_CARD, 5))
        self.assertIs(self.sent_on(), first)

    def test_lateReplyNeverReachesLaterRequester(self):
        """
        After a request times out its key stays reserved on its socket for
        another timeout: a late reply is dropped, and a new identical
        request goes out on another socket.
        """
        old = self.send(packet(GET_CONTROLLER, 9))
        old_port = self.sent_on()
        self.reactor.advance(5)
        new = self.send(packet(GET_CONTROLLER, 9))
        new_port = self.sent_on()
        self.assertIsNot(old_port, new_port)
        old_port.receive(packet(GET_CONTROLLER, 9), CONTROLLERS)
        self.assertEqual((old, new), ([], []))
        self.assertEqual(self.end.unmatched, 1)

    def test_reservationEnds(self):
        """
        A reserved key is freed one timeout after its request timed out.
        """
        self.send(packet(GET_CONTROLLER, 9))
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.udpPorts[0].protocol.keys), 1)
        self.reactor.advance(5)
        self.assertEqual(self.reactor.udpPorts[0].protocol.keys, {})
        self.send(packet(GET_CONTROLLER, 9))
        self.assertEqual(len(self.reactor.udpPorts), 1)

    def test_oneTimer(self):
        """
        Many requests in flight share one timer.
        """
        for serial in range(1, 100):
            self.send(packet(GET_CONTROLLER, serial))
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.assertEqual(self.end.in_flight, 99)

    def test_answeredRequestLetsGo(self):
        """
        Once a unicast request is answered, the end holds no reference to
        its reply callback (memory stays flat under load).
        """
        import gc
        import weakref

        class Callback:
            def __call__(self, reply):
                pass

        callback = Callback()
        watch = weakref.ref(callback)
        self.end.send(packet(GET_CONTROLLER, 1), callback)
        self.sent_on().receive(packet(GET_CONTROLLER, 1), CONTROLLERS)
        del callback
        gc.collect()
        self.assertIsNone(watch())

    def test_freedSocketsReused(self):
        """
        Concurrent requests alike need a socket each; once answered, the
        next ones go out on the sockets they freed, not on new ones.
        """
        for _ in range(3):
            for n in range(10):
                self.send(packet(GET_CONTROLLER, 1))
            ports = {port for port, _, _ in self.reactor.udpWritten[-10:]}
            self.assertEqual(len(ports), 10)
            for port in ports:
                port.receive(packet(GET_CONTROLLER, 1), CONTROLLERS)
        self.assertEqual(len(self.reactor.udpPorts), 10)

    def test_socketLimit(self):
        """
        With every socket busy with a request alike, a further one is
        dropped with a warning.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.end.max_sockets = 2
        replies = [self.send(packet(GET_CONTROLLER, 1)) for _ in range(3)]
        self.assertEqual(len(self.reactor.udpPorts), 2)
        self.assertEqual(len(self.reactor.udpWritten), 2)
        self.assertEqual([e["n"] for e in logged if "sockets busy" in e["log_format"]], [1])
        del replies

    def test_opaquePackets(self):
        """
        A packet too short to carry a function and serial is relayed, gets
        a socket to itself and receives whatever arrives there.
        """
        replies = self.send(b"hello")
        port = self.sent_on()
        self.send(packet(GET_CONTROLLER, 1))
        self.assertIsNot(self.sent_on(), port)
        port.receive(b"world", CONTROLLERS)
        self.assertEqual(replies, [b"world"])

    def test_noReplyWanted(self):
        """
        A request sent with no reply callback holds nothing.
        """
        self.end.send(packet(GET_CONTROLLER, 1), None)
        self.assertEqual(self.end.in_flight, 0)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_oversizeReplyDropped(self):
        """
        A reply over the size limit is dropped.
        """
        replies = self.send(packet(GET_CONTROLLER, 0))
        self.sent_on().receive(packet(GET_CONTROLLER, 1) + bytes(2000), CONTROLLERS)
        self.assertEqual(replies, [])

    def test_requestKey(self):
        """
        The key is the function code and the little-endian serial.
        """
        self.assertEqual(request_key(packet(0x94, 405419896)), (0x94, 405419896))
        self.assertIsNone(request_key(b"\x17\x94"))


class ListenEndTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = FakeReactor()
        self.router = RecordingRouter()
        self.end = ListenEnd(spec("udp/listen:127.0.0.1:60000"), ("127.0.0.1", 60000), self.router, self.reactor, 1024)
        self.end.startService()
        self.port = self.reactor.udpPorts[0]

    def test_interface(self):
        """
        The end provides L{IInEnd} and listens where it was told.
        """
        verifyObject(IInEnd, self.end)
        verifyObject(ITally, self.end)
        verifyObject(IControllerObserver, self.end)
        self.assertEqual((self.port.interface, self.port.port), ("127.0.0.1", 60000))

    def test_replyGoesToSender(self):
        """
        A request goes to the router; each reply goes back to the address
        that sent the request.
        """
        request = packet(GET_CONTROLLER, 0)
        self.port.receive(request, ("127.0.0.1", 50001))
        [(payload, reply)] = self.router.requests
        self.assertEqual(payload, request)
        reply(b"one")
        reply(b"two")
        self.assertEqual(self.port.written, [(b"one", ("127.0.0.1", 50001)), (b"two", ("127.0.0.1", 50001))])

    def test_sourceIsSendersAddress(self):
        """
        The router is told who sent each request (its IP address), for the
        limit per sender.
        """
        self.port.receive(packet(GET_CONTROLLER, 0), ("127.0.0.2", 50001))
        self.assertEqual(self.router.sources, ["127.0.0.2"])

    def test_emptyAndOversizeDropped(self):
        """
        Empty and oversized datagrams are dropped, not relayed.
        """
        self.port.receive(b"", ("127.0.0.1", 50001))
        self.port.receive(bytes(1025), ("127.0.0.1", 50001))
        self.assertEqual(self.router.requests, [])

    def test_replyAfterStopIgnored(self):
        """
        A reply that arrives after the end stopped is dropped quietly.
        """
        self.port.receive(packet(GET_CONTROLLER, 0), ("127.0.0.1", 50001))
        self.successResultOf(self.end.stopService())
        self.router.requests[0][1](b"late")
        self.assertEqual(self.port.written, [])


class MakerTests(SynchronousTestCase):
    def test_interface(self):
        """
        The maker provides L{IConnectorMaker}: listen is in only, broadcast
        out only.
        """
        maker = UDPConnectorMaker()
        verifyObject(IConnectorMaker, maker)
        self.assertEqual(maker.roles("udp/listen:"), {IN})
        self.assertEqual(maker.roles("udp/broadcast:"), {OUT})

    def test_badAddresses(self):
        """
        Host names, missing ports and port 0 as a destination are refused
        with the connector named.
        """
        maker = UDPConnectorMaker()
        settings = {"debug": False, "max-payload": 1024, "udp-timeout": 1.0, "events": False}
        for text in ("udp/broadcast:controllers.example:60000", "udp/broadcast:127.0.0.1", "udp/broadcast:127.0.0.1:0"):
            e = self.assertRaises(ValueError, maker.makeEnd, spec(text), OUT, settings, None, FakeReactor())
            self.assertIn(text, str(e))

    def test_unknownInterface(self):
        """
        Binding a UDP end to an interface that does not exist is refused
        before anything listens.
        """
        from uhppoted_tunnel.core.spec import ConnectorSpec as Spec

        settings = {"debug": False, "max-payload": 1024, "udp-timeout": 1.0, "events": False}
        bound = Spec("udp/listen::nosuch0:127.0.0.1:0", "udp/listen:", "nosuch0", "127.0.0.1:0")
        e = self.assertRaises(ValueError, UDPConnectorMaker().makeEnd, bound, IN, settings, None, FakeReactor())
        self.assertEqual(str(e), "no such network interface 'nosuch0'")


class FakeSocket:
    """
    A socket with datagrams queued, a receive buffer and a kernel drop
    counter, as L{DrainingPort} sees them.
    """

    def __init__(self, datagrams=(), drops=0, force=True, rmem_max=212992):
        self.queue = list(datagrams)
        self.drops = drops
        self.force = force
        self.rmem_max = rmem_max
        self.rcvbuf = 212992
        self.reads = 0
        self.options = []

    def recvfrom(self, size):
        import errno

        if not self.queue:
            raise BlockingIOError(errno.EAGAIN, "empty")
        self.reads += 1
        return self.queue.pop(0), ("127.0.0.1", 50001)

    def setsockopt(self, level, option, value):
        import socket

        from uhppoted_tunnel.ends.udpsocket import SO_RCVBUFFORCE

        self.options.append(option)
        if option == SO_RCVBUFFORCE:
            if not self.force:
                raise PermissionError(1, "Operation not permitted")
            self.rcvbuf = 2 * value
        elif option == socket.SO_RCVBUF:
            self.rcvbuf = 2 * min(value, self.rmem_max)

    def getsockopt(self, level, option, size=None):
        import socket

        from uhppoted_tunnel.ends.udpsocket import _MEMINFO, SO_MEMINFO

        if option == socket.SO_RCVBUF:
            return self.rcvbuf
        if option == SO_MEMINFO:
            if self.drops is None:
                raise OSError(92, "Protocol not available")
            return _MEMINFO.pack(0, self.rcvbuf, 0, 0, 0, 0, 0, 0, self.drops)
        raise OSError(92, "Protocol not available")


class ReceiveBufferTests(SynchronousTestCase):
    """
    The receive buffer and the kernel's drop counter of the ends that
    receive bursts.
    """

    def test_forcedPastRmemMax(self):
        """
        With the privilege, the buffer is set with C{SO_RCVBUFFORCE} and
        the size asked for is granted whatever C{rmem_max} says.
        """
        from uhppoted_tunnel.ends.udpsocket import SO_RCVBUFFORCE, set_receive_buffer

        sock = FakeSocket(force=True)
        self.assertEqual(set_receive_buffer(sock, 4 << 20), 4 << 20)
        self.assertEqual(sock.options, [SO_RCVBUFFORCE])

    def test_unprivilegedCapped(self):
        """
        Without the privilege, C{SO_RCVBUF} is used and the size granted
        (capped at C{rmem_max}) is what is returned.
        """
        import socket

        from uhppoted_tunnel.ends.udpsocket import SO_RCVBUFFORCE, set_receive_buffer

        sock = FakeSocket(force=False, rmem_max=212992)
        self.assertEqual(set_receive_buffer(sock, 4 << 20), 212992)
        self.assertEqual(sock.options, [SO_RCVBUFFORCE, socket.SO_RCVBUF])

    def test_kernelDrops(self):
        """
        The drop count is read from C{SO_MEMINFO}; C{None} where the kernel
        does not give it.
        """
        from uhppoted_tunnel.ends.udpsocket import kernel_drops

        self.assertEqual(kernel_drops(FakeSocket(drops=17)), 17)
        self.assertIsNone(kernel_drops(FakeSocket(drops=None)))


class DrainingPortTests(SynchronousTestCase):
    """
    L{DrainingPort} reads a whole burst per wake-up and counts what the
    kernel dropped, exactly.
    """

    def port(self, sock, receive_buffer=4 << 20):
        from twisted.internet.protocol import DatagramProtocol

        from uhppoted_tunnel.ends.udpsocket import DrainingPort

        received = []
        protocol = DatagramProtocol()
        protocol.datagramReceived = lambda data, address: received.append(data)
        dropped = []
        port = DrainingPort(0, protocol, "127.0.0.1", FakeReactor(), receive_buffer, dropped.append)
        self.patch(type(port).__mro__[1], "createInternetSocket", lambda self: sock)
        port.socket = port.createInternetSocket()
        return port, received, dropped

    def test_wholeBurstInOneWakeUp(self):
        """
        10,000 datagrams of 64 bytes (640,000 bytes, more than Twisted's
        256 KiB per wake-up) are all read in one wake-up.
        """
        sock = FakeSocket([bytes(64)] * 10000)
        port, received, dropped = self.port(sock)
        port.doRead()
        self.assertEqual((len(received), sock.queue, dropped), (10000, [], []))

    def test_dropsReportedExactly(self):
        """
        On wake-ups at most every 50 ms, the datagrams the kernel dropped
        since the last check are reported, exactly, across the counter's
        wrap at 2**32; nothing is reported when nothing was dropped.
        """
        sock = FakeSocket([bytes(64)] * 3, drops=0xFFFFFFF0)
        port, received, dropped = self.port(sock)
        port.doRead()
        self.assertEqual(dropped, [])
        sock.queue.append(bytes(64))
        sock.drops = 0xFFFFFFFA
        port.reactor.advance(1)
        port.doRead()
        sock.queue.append(bytes(64))
        sock.drops = 5
        port.doRead()
        self.assertEqual(dropped, [10])
        port.reactor.advance(1)
        port.doRead()
        self.assertEqual((dropped, len(received)), ([10, 11], 5))

    def test_noCounter(self):
        """
        Where the kernel keeps no drop counter, reading goes on and nothing
        is reported.
        """
        sock = FakeSocket([bytes(64)] * 3, drops=None)
        port, received, dropped = self.port(sock)
        port.doRead()
        self.assertEqual((len(received), dropped), (3, []))


class FloodTests(SynchronousTestCase):
    """
    A flood of bad datagrams makes a few log lines, not one per datagram:
    the first at once, then a count every 10 s, and the rest when the end
    stops.
    """

    def setUp(self):
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.reactor = FakeReactor()

    def warnings(self):
        from twisted.logger import LogLevel, formatEvent

        return [formatEvent(event) for event in self.logged if event["log_level"] == LogLevel.warn]

    def flood(self, port, count=10000):
        for n in range(count):
            port.receive(b"" if n % 2 else bytes(1500), ("127.0.0.1", 50000 + n % 7))
            if n == count // 2:
                self.reactor.advance(10)

    def test_listen(self):
        """
        10,000 empty or 1,500-byte datagrams at a udp/listen end make three
        warnings, which count all 10,000.
        """
        router = RecordingRouter()
        end = ListenEnd(spec("udp/listen:127.0.0.1:60000"), ("127.0.0.1", 60000), router, self.reactor, 1024)
        end.startService()
        self.flood(self.reactor.udpPorts[0])
        self.successResultOf(end.stopService())
        warnings = self.warnings()
        self.assertEqual(len(warnings), 3, warnings)
        self.assertEqual(warnings[0], "dropped 1 request(s) empty or over 1024 bytes (the last: 1500 bytes from "
                                      "127.0.0.1:50000)")
        import re

        counts = [int(re.match(r"dropped (\d+) ", w).group(1)) for w in warnings]
        self.assertEqual(sum(counts), 10000)
        self.assertEqual((router.requests, self.reactor.getDelayedCalls()), ([], []))

    def test_broadcast(self):
        """
        10,000 empty or 1,500-byte replies at a udp/broadcast end make three
        warnings, which count all 10,000.
        """
        end = BroadcastEnd(spec("udp/broadcast:127.0.0.1:60000"), CONTROLLERS, 5.0, self.reactor, 1024)
        end.startService()
        end.send(packet(GET_CONTROLLER, 0), [].append)
        self.flood(self.reactor.udpPorts[0])
        self.successResultOf(end.stopService())
        # the request itself went unanswered: its own warning
        warnings = [w for w in self.warnings() if not w.startswith("no reply to")]
        self.assertEqual(len(warnings), 3, warnings)
        self.assertEqual(warnings[0], "dropped a reply of 1500 bytes from 127.0.0.1 (limit 1024)")
        import re

        counts = [int(re.match(r"dropped (\d+|a) ", w).group(1).replace("a", "1")) for w in warnings]
        self.assertEqual(sum(counts), 10000)

    def test_eventOut(self):
        """
        The same flood sent back to a udp/event out end makes three
        warnings.
        """
        end = BroadcastEnd(spec("udp/event:127.0.0.1:60001"), ("127.0.0.1", 60001), 5.0, self.reactor, 1024,
                           events=True)
        end.startService()
        end.send(packet(0x20, 1), None)
        self.flood(self.reactor.udpPorts[0])
        self.successResultOf(end.stopService())
        self.assertEqual(len(self.warnings()), 3, self.warnings())

    def test_kernelDropsThrottled(self):
        """
        Datagrams the kernel dropped are reported with their exact number,
        the first batch at once and the rest at most every 10 s, and what
        is left when the end stops.
        """
        router = RecordingRouter()
        end = ListenEnd(spec("udp/event:127.0.0.1:60001"), ("127.0.0.1", 60001), router, self.reactor, 1024,
                        events=True)
        end.startService()
        for n in (5, 7, 11):
            end._dropped.count(n)
        self.assertEqual(end.dropped, 23)
        self.successResultOf(end.stopService())
        self.assertEqual(self.warnings(), [
            "the kernel dropped 5 datagram(s) sent to 127.0.0.1:60001 before they could be read (5 in all): the "
            "receive buffer was full (--udp-receive-buffer 4194304)",
            "the kernel dropped 18 datagram(s) sent to 127.0.0.1:60001 before they could be read (23 in all): the "
            "receive buffer was full (--udp-receive-buffer 4194304)",
        ])


class SmallBufferTests(SynchronousTestCase):
    def test_warnedOnce(self):
        """
        An end whose kernel gave it less receive buffer than asked for
        (no privilege, a low C{rmem_max}) says so once, at start, with both
        sizes.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import LogLevel, formatEvent, globalLogPublisher

        from uhppoted_tunnel.ends import udp

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        reactor = FakeReactor()

        def listen(reactor, port, protocol, interface, size, dropped, freebind=False):
            listening = reactor.listenUDP(port, protocol, interface)
            listening.granted = 212992
            return listening

        self.patch(udp, "listen_udp", listen)
        end = ListenEnd(spec("udp/event:127.0.0.1:60001"), ("127.0.0.1", 60001), RecordingRouter(), reactor, 1024,
                        events=True)
        end.startService()
        self.successResultOf(end.stopService())
        warnings = [formatEvent(e) for e in logged if e["log_level"] == LogLevel.warn]
        self.assertEqual(warnings, [
            "the kernel gave 127.0.0.1:60001 a receive buffer of 212992 bytes, not the 4194304 asked for "
            "(--udp-receive-buffer): a burst may be dropped; raise net.core.rmem_max or run with CAP_NET_ADMIN"])


class SendingSocket:
    """
    A UDP socket that records what it sends, or fails with C{error}.
    """

    def __init__(self, error=None):
        self.sent = []
        self.error = error

    def sendto(self, data, address):
        if self.error is not None:
            raise OSError(self.error, "fake")
        self.sent.append((data, address))
        return len(data)


class SendDatagramTests(SynchronousTestCase):
    """
    L{send_datagram} sends straight to a port's socket, and leaves errors
    and fakes to the port's own C{write}.
    """

    def port(self, sock):
        from twisted.internet.protocol import DatagramProtocol
        from twisted.internet.udp import Port

        class Recording(Port):
            def createInternetSocket(self):
                return sock

            def write(self, datagram, addr=None):
                written.append((datagram, addr))
                return Port.write(self, datagram, addr)

        written = []
        port = Recording(0, DatagramProtocol(), "127.0.0.1", reactor=FakeReactor())
        port.socket = port.createInternetSocket()
        return port, written

    def test_straightToTheSocket(self):
        """
        A datagram goes to the socket without C{Port.write} (and its checks
        of the address).
        """
        from uhppoted_tunnel.ends.udpsocket import send_datagram

        sock = SendingSocket()
        port, written = self.port(sock)
        send_datagram(port, b"reply", CONTROLLERS)
        self.assertEqual((sock.sent, written), ([(b"reply", CONTROLLERS)], []))

    def test_errorToPortWrite(self):
        """
        A send that fails is made again with C{Port.write}, which raises the
        error as it always does (a datagram too long for the network).
        """
        import errno

        from twisted.internet.error import MessageLengthError

        from uhppoted_tunnel.ends.udpsocket import send_datagram

        port, written = self.port(SendingSocket(errno.EMSGSIZE))
        self.assertRaises(MessageLengthError, send_datagram, port, b"reply", CONTROLLERS)
        self.assertEqual(written, [(b"reply", CONTROLLERS)])

    def test_fakePort(self):
        """
        A port with no socket (a fake) is written to with its C{write}.
        """
        from uhppoted_tunnel.ends.udpsocket import send_datagram

        reactor = FakeReactor()
        from twisted.internet.protocol import DatagramProtocol

        port = reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        send_datagram(port, b"reply", CONTROLLERS)
        self.assertEqual(port.written, [(b"reply", CONTROLLERS)])

    def test_sender(self):
        """
        L{datagram_sender} sends with L{send_datagram} from a real port and
        with C{write} from any other, at no extra call.
        """
        from twisted.internet.protocol import DatagramProtocol

        from uhppoted_tunnel.ends.udpsocket import datagram_sender, send_datagram

        sock = SendingSocket()
        port, written = self.port(sock)
        sender = datagram_sender(port)
        self.assertEqual((sender.func, sender.args), (send_datagram, (port,)))
        fake = FakeReactor().listenUDP(0, DatagramProtocol(), interface="127.0.0.1")
        self.assertEqual(datagram_sender(fake), fake.write)
