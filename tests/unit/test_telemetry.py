# -*- test-case-name: tests.unit.test_telemetry -*-
"""
Tests for L{uhppoted_tunnel.observe.telemetry}, L{uhppoted_tunnel.core.counts} and the link state of
L{uhppoted_tunnel.link.lifecycle}: plain logic, time from a C{Clock}.
"""

import json

from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from uhppoted_tunnel.core.counts import Controllers, Latency, Tally, decode_event
from uhppoted_tunnel.link.lifecycle import CLIENT, SERVER, SOCKET, LinkState
from uhppoted_tunnel.core.router import Router
from uhppoted_tunnel.interfaces import ITally
from uhppoted_tunnel.core.spec import ConnectorSpec
from uhppoted_tunnel.observe.telemetry import RATE_WINDOW, Telemetry, TelemetryService, WarningLog

SERIAL = 405419896


def packet(serial, function=0x94, index=0, body=b""):
    data = bytearray(64)
    data[0], data[1] = 0x17, function
    data[4:8] = serial.to_bytes(4, "little")
    data[8:12] = index.to_bytes(4, "little")
    data[12:12 + len(body)] = body
    return bytes(data)


class LinkStateTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)

    def test_socket(self):
        """
        A socket end is down until it listens, then up, since then.
        """
        link = LinkState(SOCKET, self.clock)
        self.assertEqual((link.state, link.since), ("down", 1000))
        self.clock.advance(2)
        link.start()
        self.assertEqual((link.state, link.since, link.ups), ("up", 1002, 1))

    def test_server(self):
        """
        A server end is up only while it listens and has a peer; each
        loss of its last peer counts as a down.
        """
        link = LinkState(SERVER, self.clock)
        link.start()
        self.assertEqual(link.state, "down")
        self.clock.advance(1)
        link.connected("a", "127.0.0.1:1")
        link.connected("b", "127.0.0.1:2")
        self.assertEqual((link.state, link.since), ("up", 1001))
        self.assertEqual(list(link.peers.values()), [("127.0.0.1:1", 1001), ("127.0.0.1:2", 1001)])
        link.disconnected("a")
        self.assertEqual(link.state, "up")
        self.clock.advance(1)
        link.disconnected("b")
        link.disconnected("b")
        self.assertEqual((link.state, link.since, link.ups, link.downs), ("down", 1002, 1, 1))

    def test_client(self):
        """
        A client end is connecting from its start until connected, again
        after a loss, and failed once it gives up.
        """
        link = LinkState(CLIENT, self.clock)
        self.assertEqual(link.state, "down")
        link.start()
        self.assertEqual(link.state, "connecting")
        link.connected("a", "127.0.0.1:1")
        self.assertEqual(link.state, "up")
        link.disconnected("a")
        self.assertEqual(link.state, "connecting")
        link.fail("could not connect")
        self.assertEqual((link.state, link.downs), ("failed", 1))

    def test_noClock(self):
        """
        Without a clock the states still change; the times are unknown.
        """
        link = LinkState(SOCKET)
        link.start()
        self.assertEqual((link.state, link.since), ("up", None))


class LatencyTests(SynchronousTestCase):
    def test_buckets(self):
        """
        Each reply time falls in the first bucket whose bound is not below
        it (Prometheus' C{le}); the buckets come out cumulative, ending
        with +Inf, and the sum adds every time.
        """
        latency = Latency((0.001, 0.01))
        for seconds in (0.0005, 0.001, 0.002, 0.5):
            latency.observe(seconds)
        self.assertEqual(latency.buckets(), [("0.001", 2), ("0.01", 3), ("+Inf", 4)])
        self.assertAlmostEqual(latency.sum, 0.5035)


class ControllersTests(SynchronousTestCase):
    def test_bounded(self):
        """
        Past its limit the least recently seen controller is forgotten;
        the snapshot lists the most recently seen first.
        """
        clock = Clock()
        clock.advance(13)
        controllers = Controllers(clock, limit=2)
        controllers.reply(1, now=10)
        controllers.event(2, now=11)
        controllers.reply(1, now=12)
        controllers.address(3, ("127.0.0.1", 60000))
        self.assertEqual(controllers.snapshot(), [
            {"serial": 3, "address": "127.0.0.1:60000", "last_reply": None, "last_event": None},
            {"serial": 1, "address": None, "last_reply": 12, "last_event": None},
        ])

    def test_noSerialZero(self):
        """
        Serial 0 (a broadcast) is no controller.
        """
        controllers = Controllers(Clock())
        controllers.address(0, ("127.0.0.1", 1))
        self.assertEqual(controllers.snapshot(), [])


class DecodeEventTests(SynchronousTestCase):
    def test_swipe(self):
        """
        An event packet gives its serial, index, type, door, granted and
        card.
        """
        body = bytes([1, 1, 3, 1]) + (10058400).to_bytes(4, "little")
        event = decode_event(5.0, packet(SERIAL, 0x20, 17, body))
        self.assertEqual(event, {"time": 5.0, "serial": SERIAL, "index": 17, "type": "swipe", "door": 3,
                                 "granted": True, "card": 10058400})

    def test_short(self):
        """
        A packet too short for the fields gives nulls, not an error.
        """
        event = decode_event(1.0, b"\x17\x20\0\0\x01\0\0\0")
        self.assertEqual((event["serial"], event["index"], event["type"]), (1, None, None))


class WarningLogTests(SynchronousTestCase):
    def test_recent(self):
        """
        Warnings and errors are kept, newest first, one line each; lower
        levels are not; at most 20.
        """
        warnings = WarningLog()
        log = Logger(observer=LogPublisher(warnings))
        log.info("not kept")
        for n in range(25):
            log.warn("warning {n}\nsecond line", n=n)
        log.error("the end")
        recent = warnings.snapshot()
        self.assertEqual(len(recent), 20)
        self.assertEqual((recent[0]["level"], recent[0]["text"]), ("error", "the end"))
        self.assertEqual((recent[1]["level"], recent[1]["text"]), ("warn", "warning 24 second line"))

    def test_unformattable(self):
        """
        A warning whose format cannot be filled is kept all the same.
        """
        warnings = WarningLog()
        Logger(observer=LogPublisher(warnings)).warn("{missing}")
        self.assertEqual(len(warnings.snapshot()), 1)


@implementer(ITally)
class FakeEnd:
    """
    An end as the telemetry sees it: a role, a spec, a link, a tally.
    """

    def __init__(self, role, text, kind=SOCKET, clock=None, counts=None):
        self.role = role
        self.spec = ConnectorSpec(text, text.split(":")[0] + ":", None, text.split(":", 1)[1])
        self.link = LinkState(kind, clock)
        self.counts = counts or {}

    def tally(self, t):
        for reason, n in self.counts.items():
            if reason == "timeouts":
                t.timeouts += n
            else:
                t.drop(reason, n)


class Out:
    def __init__(self):
        self.sent = []

    def send(self, payload, reply):
        self.sent.append((payload, reply))


class TelemetryTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.out = Out()
        self.router = Router(self.clock, rate=None, out=self.out)
        self.in_ = FakeEnd("in", "udp/listen:127.0.0.1:60000", clock=self.clock)
        self.out_end = FakeEnd("out", "tcp/server:127.0.0.1:4000", SERVER, self.clock)
        self.telemetry = Telemetry(self.clock)
        self.telemetry.watch(self.router, (self.in_, self.out_end))

    def test_offByDefault(self):
        """
        Unless something reads the telemetry, the router passes reply
        callbacks on untouched.
        """
        self.telemetry.hook()
        reply = object()
        self.router.request(b"x", reply)
        self.assertIs(self.out.sent[0][1], reply)

    def test_repliesTimed(self):
        """
        Once enabled, each reply is counted, timed from its request's
        arrival, noted against its controller and passed on.
        """
        self.telemetry.enable()
        self.telemetry.hook()
        got = []
        self.router.request(packet(SERIAL), got.append)
        self.clock.advance(0.003)
        reply = packet(SERIAL)
        self.out.sent[0][1](reply)
        self.assertEqual(got, [reply])
        self.assertEqual(self.telemetry.replies, 1)
        self.assertEqual(dict(self.telemetry.latency.buckets())["0.005"], 1)
        self.assertEqual(dict(self.telemetry.latency.buckets())["0.002"], 0)
        self.assertEqual(self.telemetry.controllers.snapshot()[0]["last_reply"], 1000.003)

    def test_readiness(self):
        """
        Ready once every end is up; otherwise the reason names each end
        that is not, with its state.
        """
        self.in_.link.start()
        self.out_end.link.start()
        ready, document = self.telemetry.readiness()
        self.assertFalse(ready)
        self.assertEqual(document["reason"], "out end tcp/server:127.0.0.1:4000 is down")
        self.out_end.link.connected("c", "127.0.0.1:5")
        ready, document = self.telemetry.readiness()
        self.assertTrue(ready)
        self.assertNotIn("reason", document)
        self.assertEqual([end["state"] for end in document["ends"]], ["up", "up"])

    def test_snapshot(self):
        """
        The snapshot has the schema the status page reads, with the totals
        from the router's and the ends' counts, and is JSON.
        """
        self.telemetry.enable()
        self.telemetry.hook()
        self.in_.link.start()
        self.in_.counts = {"empty": 2, "timeouts": 0}
        self.out_end.counts = {"timeouts": 3}
        for _ in range(4):
            self.router.request(packet(SERIAL), lambda reply: None)
        self.out.sent[0][1](packet(SERIAL))
        snapshot = self.telemetry.snapshot()
        self.assertEqual(sorted(snapshot), ["controllers", "ends", "events", "rates", "sites", "totals", "tunnel",
                                            "warnings"])
        self.assertEqual(snapshot["tunnel"]["ready"], False)
        self.assertEqual(snapshot["ends"][0], {"role": "in", "connector": "udp/listen:127.0.0.1:60000",
                                               "state": "up", "since": 1000, "peers": []})
        self.assertEqual(snapshot["totals"], {"requests": 4, "replies": 1, "timeouts": 3, "dropped": 2,
                                              "events": 0, "unrouted": 0})
        self.assertEqual(len(snapshot["rates"]["requests"]), RATE_WINDOW)
        json.dumps(snapshot)

    def test_snapshotCached(self):
        """
        The snapshot is built at most once a second, however many ask.
        """
        first = self.telemetry.snapshot()
        self.router.request(packet(SERIAL), None)
        self.assertIs(self.telemetry.snapshot(), first)
        self.clock.advance(1)
        self.assertEqual(self.telemetry.snapshot()["totals"]["requests"], 1)

    def test_rates(self):
        """
        Every second the requests received in it join the rates; in an
        event tunnel, the events.
        """
        service = TelemetryService(self.telemetry, self.clock, LogPublisher())
        self.telemetry.enable()
        service.startService()
        for _ in range(3):
            self.router.request(packet(SERIAL), None)
        self.clock.advance(1)
        self.router.request(packet(SERIAL), None)
        self.clock.advance(1)
        self.assertEqual(list(self.telemetry.rates["requests"])[-2:], [3, 1])
        self.assertEqual(sum(self.telemetry.rates["events"]), 0)
        service.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_events(self):
        """
        In an event tunnel the events relayed are kept, newest first, and
        their controllers noted.
        """
        telemetry = Telemetry(self.clock, events_tunnel=True)
        telemetry.watch(self.router, (self.in_, self.out_end))
        telemetry.enable()
        telemetry.hook()
        for index in (1, 2):
            self.clock.advance(1)
            self.router.request(packet(SERIAL, 0x20, index), None)
        snapshot = telemetry.snapshot()
        self.assertEqual([event["index"] for event in snapshot["events"]], [2, 1])
        self.assertEqual(snapshot["controllers"][0]["last_event"], 1002)
        self.assertEqual(snapshot["totals"]["events"], 2)

    def test_tally(self):
        """
        A tally adds what several parts count under the same reason.
        """
        t = Tally()
        t.drop("empty", 1)
        t.drop("empty", 2)
        t.drop("too_long", 0)
        t.handshakes({"timeout": 1})
        t.handshakes({"timeout": 2, "closed": 1})
        self.assertEqual(t.dropped, {"empty": 3})
        self.assertEqual(t.handshake_failures, {"timeout": 3, "closed": 1})
