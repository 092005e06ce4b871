"""
Tests for L{uhppoted_tunnel.core.replytimes}: replies timed by the out end
that matches them (a stream end's reply table, C{udp/broadcast}'s sockets)
from the time its request went out, and the telemetry's choice between
that and the router's wrapper. Time from a C{Clock}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from uhppoted_tunnel.core.counts import Controllers, Latency
from uhppoted_tunnel.core.frames import encode
from uhppoted_tunnel.core.replytimes import ReplyTimes
from uhppoted_tunnel.core.router import Router
from uhppoted_tunnel.ends.broadcast import BroadcastEnd
from uhppoted_tunnel.interfaces import OUT, IReplyTimer
from uhppoted_tunnel.observe.telemetry import Telemetry
from uhppoted_tunnel.testing import FakeReactor, packet
from tests.unit.test_stream import frames, make, peer
from tests.unit.test_udp import CONTROLLERS, GET_CONTROLLER, spec

SERIAL = 405419896


def times_on(clock):
    """
    A L{ReplyTimes} over a new histogram and controllers table.
    """
    return ReplyTimes(Latency(), Controllers(clock), clock.seconds)


def counted(latency):
    """
    The latency histogram as C{{bound: cumulative count}}.
    """
    return dict(latency.buckets())


class ReplyTimesTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.times = times_on(self.clock)

    def test_replied(self):
        """
        A reply is counted in the bucket of the time since its request's
        start, added to the sum, and its controller's last reply noted.
        """
        start = self.clock.seconds()
        self.clock.advance(0.003)
        self.times.replied(start, packet(GET_CONTROLLER, SERIAL))
        latency = self.times.latency
        self.assertEqual((counted(latency)["0.002"], counted(latency)["0.005"], counted(latency)["+Inf"]), (0, 1, 1))
        self.assertAlmostEqual(latency.sum, 0.003)
        [controller] = self.times.controllers.snapshot()
        self.assertEqual((controller["serial"], controller["last_reply"], controller["address"]),
                         (SERIAL, 1000.003, None))

    def test_repliedShort(self):
        """
        A reply too short to carry a serial, or carrying serial 0, is timed
        and notes no controller.
        """
        start = self.clock.seconds()
        self.times.replied(start, b"\x17")
        self.times.replied(start, packet(GET_CONTROLLER, 0))
        self.assertEqual(counted(self.times.latency)["+Inf"], 2)
        self.assertEqual(self.times.controllers.snapshot(), [])

    def test_repliedFrom(self):
        """
        A reply from a controller's address is timed, and the controller's
        address and last reply noted; a later reply from another address
        moves it.
        """
        start = self.clock.seconds()
        self.clock.advance(0.0004)
        self.times.replied_from(start, SERIAL, ("10.0.0.5", 60000))
        self.clock.advance(0.05)
        self.times.replied_from(start, SERIAL, ("10.0.0.6", 60000))
        self.times.replied_from(start, 0, ("10.0.0.7", 60000))
        latency = self.times.latency
        self.assertEqual((counted(latency)["0.0005"], counted(latency)["0.05"], counted(latency)["0.1"]), (1, 1, 3))
        [controller] = self.times.controllers.snapshot()
        self.assertEqual((controller["address"], controller["last_reply"]), ("10.0.0.6:60000", 1000.0504))


class StreamOutEndTests(SynchronousTestCase):
    """
    A stream out end times each reply from when its request went out (or,
    held while no peer was connected, arrived).
    """

    def setUp(self):
        self.end, self.reactor = make("tcp/server:127.0.0.1:12345", OUT)
        self.reactor.advance(1000)
        self.times = self.end.reply_times = times_on(self.reactor)
        self.end.startService()

    def tearDown(self):
        self.end.stopService()

    def test_interface(self):
        """
        A stream out end provides L{IReplyTimer}.
        """
        verifyObject(IReplyTimer, self.end)
        self.assertIs(self.end.reply_times, self.times)

    def test_unicast(self):
        """
        A reply is timed from its request's sending and passed on.
        """
        protocol, transport = peer(self.end)
        replies = []
        self.end.send(packet(GET_CONTROLLER, SERIAL), replies.append)
        [(frame_id, _)] = frames(transport)
        self.reactor.advance(0.015)
        reply = packet(GET_CONTROLLER, SERIAL, b"\x01")
        protocol.dataReceived(encode(frame_id, reply))
        self.assertEqual(replies, [reply])
        self.assertEqual((counted(self.times.latency)["0.01"], counted(self.times.latency)["0.02"]), (0, 1))
        self.assertAlmostEqual(self.times.latency.sum, 0.015)
        self.assertEqual(self.times.controllers.snapshot()[0]["last_reply"], 1000.015)

    def test_broadcastEachReplyFromTheRequest(self):
        """
        Each reply to a broadcast is timed from the request, not from the
        reply before it.
        """
        protocol, transport = peer(self.end)
        self.end.send(packet(GET_CONTROLLER, 0), lambda reply: None)
        [(frame_id, _)] = frames(transport)
        self.reactor.advance(0.0015)
        protocol.dataReceived(encode(frame_id, packet(GET_CONTROLLER, 1)))
        self.reactor.advance(0.04)
        protocol.dataReceived(encode(frame_id, packet(GET_CONTROLLER, 2)))
        latency = self.times.latency
        self.assertEqual((counted(latency)["0.002"], counted(latency)["0.02"], counted(latency)["0.05"]), (1, 1, 2))
        self.assertAlmostEqual(latency.sum, 0.0015 + 0.0415)

    def test_heldTimedFromArrival(self):
        """
        A request held while no peer was connected is timed from its
        arrival, its wait included.
        """
        self.end.send(packet(GET_CONTROLLER, SERIAL), lambda reply: None)
        self.reactor.advance(0.03)
        protocol, transport = peer(self.end)
        [(frame_id, _)] = frames(transport)
        self.reactor.advance(0.01)
        protocol.dataReceived(encode(frame_id, packet(GET_CONTROLLER, SERIAL)))
        self.assertEqual((counted(self.times.latency)["0.02"], counted(self.times.latency)["0.05"]), (0, 1))
        self.assertAlmostEqual(self.times.latency.sum, 0.04)

    def test_notTimedWhenOff(self):
        """
        Without L{ReplyTimes} nothing is timed.
        """
        self.end.reply_times = None
        protocol, transport = peer(self.end)
        replies = []
        self.end.send(packet(GET_CONTROLLER, SERIAL), replies.append)
        [(frame_id, _)] = frames(transport)
        protocol.dataReceived(encode(frame_id, packet(GET_CONTROLLER, SERIAL)))
        self.assertEqual((len(replies), counted(self.times.latency)["+Inf"]), (1, 0))


class BroadcastEndTests(SynchronousTestCase):
    """
    C{udp/broadcast} times each reply from when its request went out, and
    notes its controller's address and reply.
    """

    def setUp(self):
        self.reactor = FakeReactor()
        self.reactor.advance(1000)
        self.end = BroadcastEnd(spec("udp/broadcast:127.0.0.1:60000"), CONTROLLERS, 5.0, self.reactor, 1024)
        self.times = self.end.reply_times = times_on(self.reactor)
        self.end.startService()

    def tearDown(self):
        self.successResultOf(self.end.stopService())

    def test_interface(self):
        """
        The end provides L{IReplyTimer}.
        """
        verifyObject(IReplyTimer, self.end)

    def test_unicast(self):
        """
        A controller's reply is timed from its request's sending, and the
        controller's address and last reply noted.
        """
        replies = []
        self.end.send(packet(GET_CONTROLLER, SERIAL), replies.append)
        port = self.reactor.udpWritten[-1][0]
        self.reactor.advance(0.0007)
        reply = packet(GET_CONTROLLER, SERIAL, b"\x01")
        port.receive(reply, ("10.0.0.5", 60000))
        self.assertEqual(replies, [reply])
        latency = self.times.latency
        self.assertEqual((counted(latency)["0.0005"], counted(latency)["0.001"]), (0, 1))
        self.assertAlmostEqual(latency.sum, 0.0007)
        [controller] = self.times.controllers.snapshot()
        self.assertEqual((controller["serial"], controller["address"], controller["last_reply"]),
                         (SERIAL, "10.0.0.5:60000", 1000.0007))

    def test_broadcast(self):
        """
        Each reply to a broadcast is timed from the request.
        """
        replies = []
        self.end.send(packet(GET_CONTROLLER, 0), replies.append)
        port = self.reactor.udpWritten[-1][0]
        self.reactor.advance(0.003)
        port.receive(packet(GET_CONTROLLER, 1), ("10.0.0.1", 60000))
        self.reactor.advance(0.06)
        port.receive(packet(GET_CONTROLLER, 2), ("10.0.0.2", 60000))
        latency = self.times.latency
        self.assertEqual((len(replies), counted(latency)["0.005"], counted(latency)["0.1"]), (2, 1, 2))
        self.assertAlmostEqual(latency.sum, 0.003 + 0.063)
        self.assertEqual(sorted(c["address"] for c in self.times.controllers.snapshot()),
                         ["10.0.0.1:60000", "10.0.0.2:60000"])
        self.reactor.advance(10)


class Out:
    def __init__(self):
        self.sent = []

    def send(self, payload, reply):
        self.sent.append((payload, reply))


@implementer(IReplyTimer)
class TimingOut(Out):
    reply_times = None


class HookTests(SynchronousTestCase):
    """
    The telemetry has an out end that times its replies do so, and wraps
    reply callbacks in the router only for the others.
    """

    def hooked(self, out, events=False):
        clock = Clock()
        router = Router(clock, rate=None, out=out)
        telemetry = Telemetry(clock, events_tunnel=events)
        telemetry.watch(router, (Out(), out))
        telemetry.enable()
        telemetry.hook()
        return router, telemetry

    def test_outEndTimes(self):
        """
        An L{IReplyTimer} out end is given the telemetry's L{ReplyTimes},
        over its histogram and controllers; the router passes reply
        callbacks on untouched.
        """
        out = TimingOut()
        router, telemetry = self.hooked(out)
        self.assertIs(out.reply_times, telemetry.times)
        self.assertIs(telemetry.times.latency, telemetry.latency)
        self.assertIs(telemetry.times.controllers, telemetry.controllers)
        reply = object()
        router.request(packet(GET_CONTROLLER, SERIAL), reply)
        self.assertIs(out.sent[0][1], reply)

    def test_otherOutEndWrapped(self):
        """
        Any other out end's replies are timed by the router's wrapper.
        """
        out = Out()
        router, telemetry = self.hooked(out)
        got = []
        router.request(packet(GET_CONTROLLER, SERIAL), got.append)
        out.sent[0][1](packet(GET_CONTROLLER, SERIAL))
        self.assertEqual((len(got), telemetry.replies), (1, 1))

    def test_eventTunnel(self):
        """
        In an event tunnel the router still tells the telemetry of each
        event, whatever the out end.
        """
        out = TimingOut()
        router, telemetry = self.hooked(out, events=True)
        self.assertIsNone(out.reply_times)
        router.request(packet(0x20, SERIAL), None)
        self.assertEqual(len(telemetry.recent_events), 1)
