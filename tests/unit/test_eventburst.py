"""
A burst that overflows the sending half's buffer (issue 25, item 10): an
event dropped from the buffer after it was sent and acknowledged later is
delivered, not lost, and the warning says which is which.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.core.eventrelays import EventSender
from uhppoted_tunnel.core.events import SESSION_ID, EventBuffer
from uhppoted_tunnel.testing import RecordingRouter


class Connection:
    """
    A connected peer that takes every frame (or none, C{open=False}).
    """

    peer = "127.0.0.1:50000"

    def __init__(self, open=True):
        self.open = open
        self.frames = []

    def sendFrame(self, frame_id, payload):
        if self.open:
            self.frames.append(frame_id)
        return self.open


class BufferTests(SynchronousTestCase):
    def test_droppedAfterSendingThenAcknowledged(self):
        """
        An event dropped after it was sent is not lost: acknowledged later,
        it counts as delivered (C{late}).
        """
        buffer = EventBuffer(Clock().seconds, limit=2)
        for n in range(1, 5):
            buffer.add(n, b"e", sent=n - 1)
        self.assertEqual((buffer.lost, list(buffer.unconfirmed)), (0, [1, 2]))
        self.assertTrue(buffer.acknowledge(1))
        self.assertTrue(buffer.acknowledge(3))
        self.assertEqual((buffer.lost, buffer.late, list(buffer.unconfirmed)), (0, 1, [2]))
        self.assertEqual(buffer.forgetUnconfirmed(), 1)
        self.assertEqual(buffer.lost, 1)

    def test_neverSentIsLost(self):
        """
        An event dropped before it was ever sent is lost, as before.
        """
        buffer = EventBuffer(Clock().seconds, limit=2)
        for n in range(1, 5):
            buffer.add(n, b"e")
        self.assertEqual((buffer.lost, len(buffer.unconfirmed)), (2, 0))
        self.assertFalse(buffer.acknowledge(1))


class SenderBurstTests(SynchronousTestCase):
    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.clock = Clock()
        self.connections = []
        self.sender = EventSender({"event-spool": self.mktemp(), "event-buffer": 100, "event-buffer-age": 3600.0},
                                  RecordingRouter(), self.clock, self.connections)

    def warnings(self):
        return [formatEvent(e) for e in self.logged if "event buffer full" in e["log_format"]]

    def test_burstDeliveredNotLost(self):
        """
        A burst of 200 events through a buffer of 100, every one sent at
        once and acknowledged after the burst (as a receiving half behind a
        slow disk or a busy host does): none is counted lost, every one is
        counted acknowledged, and the warning says they were sent and
        delivered, not lost.
        """
        connection = Connection()
        self.connections.append(connection)
        self.sender.connected(connection)
        for n in range(1, 201):
            self.sender.send(b"event %d" % n, None)
        self.assertEqual([f for f in connection.frames if f != SESSION_ID], list(range(1, 201)))
        for frame_id in range(1, 201):
            self.sender.frameReceived(connection, frame_id, b"")
        self.assertEqual(self.sender.buffer.lost, 0)
        self.assertEqual(self.sender.acknowledged, 200)
        self.assertEqual(self.sender.buffer.late, 100)
        self.clock.advance(60)
        warnings = self.warnings()
        self.assertTrue(warnings)
        self.assertIn("100 of those dropped were delivered", warnings[-1])
        self.assertIn("0 are lost", warnings[-1])

    def test_unsentBurstIsLost(self):
        """
        A burst a peer cannot take (its send buffer full) is lost past the
        buffer, and said so.
        """
        connection = Connection(open=False)
        self.connections.append(connection)
        self.sender.connected(connection)
        for n in range(1, 201):
            self.sender.send(b"event %d" % n, None)
        self.assertEqual(self.sender.buffer.lost, 100)
        self.clock.advance(60)
        self.assertIn("100 are lost", self.warnings()[-1])

    def test_linkDropsBeforeAcknowledging(self):
        """
        Events dropped after they were sent, on a link that drops before
        acknowledging them, are counted lost when no peer is left, with a
        warning that they may be.
        """
        connection = Connection()
        self.connections.append(connection)
        self.sender.connected(connection)
        for n in range(1, 151):
            self.sender.send(b"event %d" % n, None)
        self.connections.remove(connection)
        self.sender.disconnected(connection)
        self.assertEqual(self.sender.buffer.lost, 50)
        self.assertIn("50 event(s) dropped from the full buffer after they were sent were never acknowledged",
                      [formatEvent(e) for e in self.logged][-1])
