# -*- test-case-name: tests.unit.test_accounting -*-
"""
Every request accounted for: a request no controller answers, or held or
dropped for want of a peer, is a warning naming it; C{--debug} says what
happened to each frame; traffic at info stays readable at any rate
(L{uhppoted_tunnel.core.accounting}, L{uhppoted_tunnel.core.traffic},
L{uhppoted_tunnel.core.functions}).
"""

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.core.functions import describe, function_name
from uhppoted_tunnel.core.relay import TracingRelay
from uhppoted_tunnel.core.relays import QUEUE_SIZE, RequestSender
from uhppoted_tunnel.core.router import Router
from uhppoted_tunnel.core.spec import ConnectorSpec
from uhppoted_tunnel.core.traffic import TrafficLog
from uhppoted_tunnel.ends.broadcast import BroadcastEnd
from uhppoted_tunnel.testing import FakeReactor, packet

SERIAL = 405419896
GET_STATUS = 0x20


def spec(text):
    prefix, _, address = text.partition(":")
    return ConnectorSpec(text, prefix + ":", None, address)


class Logged(SynchronousTestCase):
    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def lines(self, level=LogLevel.warn):
        return [formatEvent(event) for event in self.logged if event["log_level"] == level]


class FunctionTests(SynchronousTestCase):
    def test_names(self):
        """
        A request is named by its uhppote-cli function and controller; a
        broadcast and a packet that is not UHPPOTE are said so.
        """
        self.assertEqual(describe(packet(GET_STATUS, SERIAL)), "get-status for controller 405419896")
        self.assertEqual(describe(packet(0x94, 0)), "get-devices (broadcast)")
        self.assertEqual(describe(b"hello"), "a 5-byte packet")
        self.assertEqual(function_name(0x07), "function 0x07")


class NoPeerTests(Logged):
    def sender(self, clock, connections=()):
        return RequestSender({"debug": False, "udp-timeout": 5.0}, None, clock, list(connections), "TCP")

    def test_heldAtOnce(self):
        """
        The first request held for want of a peer is a warning at once,
        naming it; more are counted, at most one line every 10 s.
        """
        clock = Clock()
        sender = self.sender(clock)
        sender.send(packet(GET_STATUS, SERIAL), [].append)
        self.assertEqual(self.lines(), ["no peer connected: holding get-status for controller 405419896 until one "
                                        "connects (up to 16 requests, each for --udp-timeout 5s)"])
        sender.send(packet(GET_STATUS, SERIAL), [].append)
        sender.send(packet(0x94, 0), [].append)
        self.assertEqual(len(self.lines()), 1)
        clock.advance(10)
        self.assertEqual(self.lines()[1], "no peer connected: held 2 more request(s), the last get-devices "
                                          "(broadcast) (up to 16 are kept, each for --udp-timeout 5s)")

    def test_droppedAtOnce(self):
        """
        The first request dropped because the queue is full is a warning
        at once, not ten seconds later.
        """
        sender = self.sender(Clock())
        for _ in range(QUEUE_SIZE + 1):
            sender.send(packet(GET_STATUS, SERIAL), [].append)
        self.assertIn("no peer connected: dropped the 1 oldest held request(s) (16 are held); is the other half "
                      "running and able to reach this one?", self.lines())

    def test_debugSaysHeld(self):
        """
        With C{--debug}, a frame sent while no peer is connected is said to
        be held, not sent.
        """
        sender = self.sender(Clock())
        TracingRelay(sender, "TCP").send(packet(GET_STATUS, SERIAL), [].append)
        debug = self.lines(LogLevel.debug)
        self.assertEqual(len(debug), 1)
        self.assertTrue(debug[0].startswith("no peer connected: holding 64 bytes until one connects"), debug)


class UnansweredTests(Logged):
    def test_unanswered(self):
        """
        A request no controller answers within C{--udp-timeout} is a
        warning naming the function, the controller and the end; more are
        counted, one line at most every 10 s, and told when the end stops.
        """
        reactor = FakeReactor()
        end = BroadcastEnd(spec("udp/broadcast:192.168.1.255:60000"), ("192.168.1.255", 60000), 5.0, reactor, 1024)
        end.startService()
        end.send(packet(GET_STATUS, SERIAL), [].append)
        reactor.advance(5.1)
        self.assertEqual(self.lines(), [
            "no reply to get-status for controller 405419896 within --udp-timeout (5s) on "
            "udp/broadcast:192.168.1.255:60000: is the controller on, and at that address?"])
        end.send(packet(0x94, 0), [].append)
        reactor.advance(5.1)
        self.assertEqual(len(self.lines()), 1)
        self.successResultOf(end.stopService())
        self.assertEqual(self.lines()[1], "no reply to get-devices (broadcast) within --udp-timeout (5s) on "
                                          "udp/broadcast:192.168.1.255:60000: is a controller on that network, "
                                          "and does the broadcast address reach it?")

    def test_answered(self):
        """
        A request answered is not warned of.
        """
        reactor = FakeReactor()
        end = BroadcastEnd(spec("udp/broadcast:127.0.0.1:60000"), ("127.0.0.1", 60000), 5.0, reactor, 1024)
        end.startService()
        replies = []
        end.send(packet(GET_STATUS, SERIAL), replies.append)
        reactor.udpPorts[0].receive(packet(GET_STATUS, SERIAL), ("127.0.0.1", 60000))
        reactor.advance(11)
        self.successResultOf(end.stopService())
        self.assertEqual((len(replies), self.lines()), (1, []))


class TrafficTests(Logged):
    def test_quiet(self):
        """
        At one request a minute, each request and its reply is a line.
        """
        clock = Clock()
        traffic = TrafficLog(clock, "tcp/server:0.0.0.0:12345")
        for _ in range(3):
            reply = traffic.request(packet(GET_STATUS, SERIAL), "192.168.1.100", [].append)
            reply(packet(GET_STATUS, SERIAL))
            clock.advance(60)
        traffic.stop()
        self.assertEqual(self.lines(LogLevel.info), [
            "get-status for controller 405419896 from 192.168.1.100 -> tcp/server:0.0.0.0:12345",
            "reply to get-status for controller 405419896 (64 bytes)"] * 3)

    def test_busy(self):
        """
        At 30,000 requests a second, the first ten of each 10 s are lines,
        and the rest one summary line; a request past the first ten is not
        even described (its reply callback is returned as it was).
        """
        clock = Clock()
        traffic = TrafficLog(clock, "tcp/server:0.0.0.0:12345")
        reply = [].append
        returned = []
        for second in range(20):
            for _ in range(30000 // 100):  # a sample: 300 a second keeps the test fast
                returned.append(traffic.request(packet(GET_STATUS, SERIAL), None, reply))
            clock.advance(1)
        traffic.stop()
        info = self.lines(LogLevel.info)
        self.assertEqual(len(info), 22, info)
        self.assertIs(returned[-1], reply)
        summaries = [line for line in info if "not logged one by one" in line]
        self.assertEqual(len(summaries), 2)
        self.assertIn("3000 requests in the 10s from ", summaries[0])
        self.assertIn("2990 of them not logged one by one (at most 10 are per 10s)", summaries[0])


class Out:
    """
    An out end that records what it is sent.
    """

    def __init__(self, sent):
        self.sent = sent

    def send(self, payload, reply):
        self.sent.append(payload)


class RouterTrafficTests(Logged):
    def test_router(self):
        """
        The router hands the traffic log the first ten requests of an
        interval and counts the rest itself; the summary counts them all.
        """
        clock = Clock()
        sent = []
        router = Router(clock, None, out=Out(sent))
        router.traffic = TrafficLog(clock, "tcp/server:0.0.0.0:12345")
        for _ in range(30):
            router.request(packet(GET_STATUS, SERIAL), None, "192.168.1.100")
        router.stop()
        info = self.lines(LogLevel.info)
        self.assertEqual(len(info), 11, info)
        self.assertIn("30 requests in the 10s from ", info[-1])
        self.assertEqual(len(sent), 30)
