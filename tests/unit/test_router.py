"""
Tests for L{uhppoted_tunnel.core.router}: rate limiting and reply handlers.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.core.router import Router

from uhppoted_tunnel.core.replies import ReplyTable

from uhppoted_tunnel.core.throttle import TokenBucket


class RecordingOut:
    def __init__(self):
        self.sent = []

    def send(self, payload, reply):
        self.sent.append((payload, reply))


class TokenBucketTests(SynchronousTestCase):
    def test_burstThenRate(self):
        """
        A full bucket allows C{burst} takes at once, then one per 1/rate
        seconds.
        """
        clock = Clock()
        bucket = TokenBucket(2.0, 3, clock.seconds)
        self.assertEqual([bucket.take() for _ in range(4)], [True, True, True, False])
        clock.advance(0.5)
        self.assertEqual([bucket.take(), bucket.take()], [True, False])

    def test_capped(self):
        """
        A long idle time refills the bucket only up to C{burst}.
        """
        clock = Clock()
        bucket = TokenBucket(1.0, 2, clock.seconds)
        bucket.take()
        clock.advance(1000)
        self.assertEqual([bucket.take() for _ in range(3)], [True, True, False])

    def test_cost(self):
        """
        A bucket pacing bytes takes a cost at a time, and says how long
        until a cost it cannot pay now is there, taking nothing meanwhile.
        """
        clock = Clock()
        bucket = TokenBucket(1000.0, 4096, clock.seconds)
        self.assertTrue(bucket.take(cost=4000))
        self.assertEqual(bucket.wait(96), 0.0)
        self.assertAlmostEqual(bucket.wait(296), 0.2)
        self.assertFalse(bucket.take(cost=296))
        clock.advance(0.2)
        self.assertEqual(bucket.wait(296), 0.0)
        self.assertTrue(bucket.take(cost=296))
        self.assertFalse(bucket.take(cost=1))

    def test_invalid(self):
        """
        A rate of 0 or a burst under 1 is refused.
        """
        self.assertRaises(ValueError, TokenBucket, 0, 1, Clock().seconds)
        self.assertRaises(ValueError, TokenBucket, 1, 0, Clock().seconds)


class RouterTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.out = RecordingOut()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def router(self, rate=1.0, burst=120):
        return Router(self.clock, rate, burst, out=self.out)

    def test_forward(self):
        """
        A request goes to the out end with its reply callback.
        """
        router = self.router()
        reply = object()
        self.assertTrue(router.request(b"packet", reply))
        self.assertEqual(self.out.sent, [(b"packet", reply)])

    def test_goDefaults(self):
        """
        By default 120 requests pass at once, then 1 a second.
        """
        router = self.router()
        results = [router.request(b"x", None) for _ in range(121)]
        self.assertEqual(results.count(True), 120)
        self.assertFalse(results[-1])
        self.clock.advance(1)
        self.assertTrue(router.request(b"x", None))

    def test_repliesAreFree(self):
        """
        Replies do not pass through the router, so a broadcast answered by
        many controllers costs one token, not one per reply.
        """
        router = self.router(rate=1.0, burst=1)
        replies = []
        router.request(b"broadcast", replies.append)
        payload, reply = self.out.sent[0]
        for serial in range(10):
            reply(b"reply %d" % serial)
        self.assertEqual(len(replies), 10)
        self.assertEqual(router.dropped, 0)

    def test_dropWarningRateLimited(self):
        """
        The first dropped request is warned about at once; the rest at most
        one warning every 10 seconds, with the number dropped since the last
        one, when the interval is up, even if no more are dropped; stopping
        reports what is left and leaves no timer.
        """
        router = self.router(rate=1.0, burst=1)
        for _ in range(50):
            router.request(b"x", None)
        self.assertEqual([e["count"] for e in self.logged], [1])
        self.clock.advance(10)
        self.assertEqual([e["count"] for e in self.logged], [1, 48])
        for _ in range(15):
            router.request(b"x", None)
        self.assertEqual([e["count"] for e in self.logged], [1, 48])
        router.stop()
        self.assertEqual([e["count"] for e in self.logged], [1, 48, 14])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(router.dropped, 63)

    def test_unlimited(self):
        """
        A rate of C{None} forwards everything.
        """
        router = self.router(rate=None)
        self.assertTrue(all(router.request(b"x", None) for _ in range(1000)))


class ReplyTableTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.table = ReplyTable(self.clock.seconds)

    def test_keyedByConnection(self):
        """
        Two connections that use the same id never get each other's
        replies.
        """
        a, b = object(), object()
        got_a, got_b = [], []
        self.table.add(a, 1, got_a.append)
        self.table.add(b, 1, got_b.append)
        self.assertTrue(self.table.dispatch(b, 1, b"for b"))
        self.assertTrue(self.table.dispatch(a, 1, b"for a"))
        self.assertEqual((got_a, got_b), ([b"for a"], [b"for b"]))

    def test_severalReplies(self):
        """
        A handler takes every reply to a broadcast.
        """
        got = []
        self.table.add("c", 9, got.append)
        for n in range(3):
            self.table.dispatch("c", 9, bytes([n]))
        self.assertEqual(got, [b"\x00", b"\x01", b"\x02"])

    def test_unknown(self):
        """
        A reply nobody waits for is refused.
        """
        self.assertFalse(self.table.dispatch("c", 1, b"late"))

    def test_sweepIdle(self):
        """
        A handler is swept 15 s after its last reply, not before.
        """
        got = []
        self.table.add("c", 1, got.append)
        self.clock.advance(10)
        self.table.dispatch("c", 1, b"one")
        self.clock.advance(10)
        self.assertEqual(self.table.sweep(), 0)
        self.clock.advance(6)
        self.assertEqual(self.table.sweep(), 1)
        self.assertFalse(self.table.dispatch("c", 1, b"late"))
        self.assertEqual(len(self.table), 0)

    def test_discard(self):
        """
        Closing a connection forgets its handlers only.
        """
        self.table.add("a", 1, lambda p: None)
        self.table.add("b", 1, lambda p: None)
        self.table.discard("a")
        self.assertFalse(self.table.dispatch("a", 1, b""))
        self.assertTrue(self.table.dispatch("b", 1, b""))


class ReplyTableOnceTests(SynchronousTestCase):
    def test_once(self):
        """
        A handler added for a request answered once is forgotten with its
        reply, leaving nothing to sweep.
        """
        table = ReplyTable(Clock().seconds)
        got = []
        table.add("c", 1, got.append, once=True)
        self.assertTrue(table.dispatch("c", 1, b"reply"))
        self.assertFalse(table.dispatch("c", 1, b"again"))
        self.assertEqual((got, len(table)), ([b"reply"], 0))

    def test_isUnicast(self):
        """
        A request is unicast when it names a controller; broadcasts and
        unrecognised packets may have several replies.
        """
        from uhppoted_tunnel.core.packets import is_unicast
        from uhppoted_tunnel.testing import packet

        self.assertTrue(is_unicast(packet(0x94, 405419896)))
        self.assertFalse(is_unicast(packet(0x94, 0)))
        self.assertFalse(is_unicast(b"short"))


class SourceLimitTests(SynchronousTestCase):
    """
    The limit per sender, beside the end's.
    """

    def setUp(self):
        self.clock = Clock()
        self.router = Router(self.clock, 100, 100, source_rate=1, source_burst=5, max_sources=3, out=RecordingOut())

    def tearDown(self):
        self.router.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_flooderDoesNotStarveOthers(self):
        """
        A sender past its own burst is refused while another sender is
        still served, and the end's bucket is not charged for the refused.
        """
        flooded = [self.router.request(b"x", None, "10.0.0.1") for _ in range(50)]
        self.assertEqual(flooded.count(True), 5)
        self.assertTrue(self.router.request(b"y", None, "10.0.0.2"))
        self.assertEqual(self.router.source_dropped, 45)
        self.assertEqual(self.router.dropped, 0)

    def test_refills(self):
        """
        A sender's bucket refills at its own rate.
        """
        for _ in range(5):
            self.router.request(b"x", None, "10.0.0.1")
        self.assertFalse(self.router.request(b"x", None, "10.0.0.1"))
        self.clock.advance(1)
        self.assertTrue(self.router.request(b"x", None, "10.0.0.1"))

    def test_boundedMemory(self):
        """
        At most max_sources senders are remembered.
        """
        for n in range(10):
            self.router.request(b"x", None, "10.0.0.{}".format(n))
        self.assertEqual(len(self.router.sources), 3)

    def test_noSource(self):
        """
        A request without a sender (a stream in end, an event) is charged to
        the end alone.
        """
        self.assertTrue(all(self.router.request(b"x", None) for _ in range(50)))


class FairnessTests(SynchronousTestCase):
    """
    With the defaults (1/s for the end, burst 120; 0.5/s and 60 per
    sender), flooding senders do not take a polite application's share of
    the end's budget: they share what it leaves.
    """

    def flood(self, flooders, seconds):
        """
        A polite sender sends one request a second while C{flooders} senders
        each send one in every hundredth of a second; time is counted in
        whole ticks so that no rounding helps or hurts.

        :return: the polite sender's requests forwarded, and the flooders'.
        """
        clock = Clock()
        router = Router(clock, 1.0, 120, source_rate=0.5, source_burst=60, out=RecordingOut())
        polite = flooded = 0
        for tick in range(seconds * 100):
            clock.advance(tick / 100 - clock.seconds())
            for n in range(flooders):
                flooded += router.request(b"x", None, "10.0.1.{}".format(n))
            if tick % 100 == 37:
                polite += router.request(b"p", None, "10.0.0.1")
        router.stop()
        return polite, flooded

    def test_twoFlooders(self):
        """
        Two flooders leave a 1 request/s application (nearly) all of its 30
        requests.
        """
        polite, flooded = self.flood(2, 30)
        self.assertGreaterEqual(polite, 29)
        self.assertGreater(flooded, 0)

    def test_fiftyFlooders(self):
        """
        Fifty flooders leave it (nearly) all of its 10 requests.
        """
        polite, flooded = self.flood(50, 10)
        self.assertGreaterEqual(polite, 9)

    def test_floodersShareWhatIsLeft(self):
        """
        With no polite sender, the flooders still get the end's rate
        between them, once their bursts are spent and the end's reserve has
        refilled (a minute at the defaults).
        """
        clock = Clock()
        router = Router(clock, 1.0, 120, source_rate=0.5, source_burst=60, out=RecordingOut())
        for n in range(4):
            for _ in range(60):
                router.request(b"x", None, "10.0.1.{}".format(n))
        forwarded = None
        for tick in range(1, 1201):
            clock.advance(tick / 10 - clock.seconds())
            if tick == 600:
                forwarded = router.forwarded
            for n in range(4):
                router.request(b"x", None, "10.0.1.{}".format(n))
        self.assertApproximates(router.forwarded - forwarded, 60, 3)
        router.stop()

    def test_heldWarned(self):
        """
        Requests held back from a heavy sender to keep the reserve are
        warned about, throttled, naming the last sender.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        clock = Clock()
        router = Router(clock, 1.0, 10, source_rate=0.5, source_burst=8, out=RecordingOut())
        for _ in range(20):
            router.request(b"x", None, "10.0.1.1")
        router.request(b"x", None, "10.0.1.2")
        held = [e for e in logged if "keep the rest" in e["log_format"]]
        self.assertEqual([(e["count"], e["source"]) for e in held], [(1, "10.0.1.1")])
        router.stop()

    def test_burstOfOne(self):
        """
        With a burst of 1 there is nothing to reserve: a sender's first
        request is forwarded.
        """
        router = Router(Clock(), 0.01, 1, source_rate=0.005, source_burst=1, out=RecordingOut())
        self.assertTrue(router.request(b"x", None, "10.0.0.1"))
        self.assertFalse(router.request(b"x", None, "10.0.0.1"))
        router.stop()
