"""
Tests for L{uhppoted_tunnel.transports.grpc.refusals}: a grpcs/ server
warns of the connections grpc refused (issue 25, item 11), on a fake
clock.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.transports.grpc.refusals import HandshakeWatch


class HandshakeWatchTests(SynchronousTestCase):
    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.clock = Clock()
        self.watch = HandshakeWatch(self.clock, 10.0)

    def warnings(self):
        return [formatEvent(e) for e in self.logged if "started no call" in e["log_format"]]

    def test_refusedWarned(self):
        """
        A connection that starts no call within the handshake timeout (a
        certificate grpc refused) is warned of, naming the causes and the
        flag; more within a minute are one more warning with their count.
        """
        for _ in range(3):
            self.watch.begun()
        self.clock.advance(10)
        self.assertEqual(self.watch.refused, 3)
        warnings = self.warnings()
        self.assertEqual(len(warnings), 1)
        self.assertIn("no client certificate, one not signed by --ca-cert, or an expired one", warnings[0])
        self.clock.advance(60)
        self.assertEqual(len(self.warnings()), 2)
        self.assertIn("2 client connection(s)", self.warnings()[-1])

    def test_callsAreNotRefusals(self):
        """
        Connections that start their call are not warned of.
        """
        self.watch.begun()
        self.watch.begun()
        self.watch.called()
        self.watch.called()
        self.clock.advance(10)
        self.assertEqual((self.watch.refused, self.warnings()), (0, []))

    def test_mixed(self):
        """
        One good client and one refused: one refusal.
        """
        self.watch.begun()
        self.watch.begun()
        self.watch.called()
        self.clock.advance(10)
        self.assertEqual(self.watch.refused, 1)

    def test_stop(self):
        """
        Stopping reports what is not yet reported and leaves no timer.
        """
        self.watch.begun()
        self.clock.advance(10)
        self.watch.begun()
        self.clock.advance(10)
        self.watch.begun()
        self.watch.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.warnings()), 2)
