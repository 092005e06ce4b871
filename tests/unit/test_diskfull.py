"""
A disk that fills under an event tunnel (issue 25, item 1): the receiving
half's C{.seen} file and the sending half's spool, on a fake file layer
that can run out of space.
"""

import errno
import os

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.core import eventfiles
from uhppoted_tunnel.core.eventrelays import EventReceiver, EventSender
from uhppoted_tunnel.core.events import SESSION_ID, session_frame
from uhppoted_tunnel.core.seenevents import SeenEvents
from uhppoted_tunnel.testing import RecordingRouter

SESSION = b"\x05" * 16


class FullDisk:
    """
    The C{.seen} file functions of L{eventfiles}, on files that can be
    made to fail with C{ENOSPC}; C{records} is what the file holds.
    """

    def __init__(self):
        self.full = False
        self.records = []

    def _check(self):
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")

    def read_seen(self, path, size):
        return None

    def open_seen(self, path):
        self._check()
        return self

    def append_seen(self, f, key):
        self._check()
        self.records.append(key)

    def write_seen(self, path, keys):
        self._check()
        self.records = list(keys)

    def close(self):
        pass


class Connection:
    def __init__(self):
        self.frames = []
        self.peer = "127.0.0.1:50000"

    def sendFrame(self, frame_id, payload):
        self.frames.append((frame_id, payload))
        return True


def settings(spool):
    return {"debug": False, "event-spool": spool, "event-window": 100, "event-buffer": 100,
            "event-buffer-age": 3600.0}


class SeenFullDiskTests(SynchronousTestCase):
    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.clock = Clock()
        self.disk = FullDisk()

    def errors(self):
        return [formatEvent(e) for e in self.logged if e["log_level"] >= LogLevel.error]

    def test_fullDiskKeepsGoing(self):
        """
        An append that fails with C{ENOSPC} raises nothing: the event is
        remembered in memory, one ERROR names the file and what to do, and
        once the disk has room again (tried at most once a second) the file
        is written afresh with every event, those forwarded meanwhile too.
        """
        seen = SeenEvents(10, "/state/site.seen", self.clock.seconds, self.disk)
        seen.add((SESSION, 1))
        self.disk.full = True
        for n in range(2, 6):
            seen.add((SESSION, n))
        self.assertEqual(seen.failing, "No space left on device")
        self.assertIn((SESSION, 5), seen)
        errors = self.errors()
        self.assertEqual(len(errors), 1)
        self.assertIn("/state/site.seen: No space left on device", errors[0])
        self.assertIn("Free space on the disk", errors[0])
        self.disk.full = False
        seen.add((SESSION, 6))
        self.assertEqual(seen.failing, "No space left on device", "tried again before a second had passed")
        self.clock.advance(1)
        seen.add((SESSION, 7))
        self.assertIsNone(seen.failing)
        self.assertEqual(self.disk.records, [(SESSION, n) for n in range(1, 8)])
        seen.add((SESSION, 8))
        self.assertEqual(self.disk.records[-1], (SESSION, 8))

    def test_fullAtStart(self):
        """
        A file that cannot even be opened (its header written) at start is
        the same: reported, and the events remembered in memory.
        """
        self.disk.full = True
        seen = SeenEvents(10, "/state/site.seen", self.clock.seconds, self.disk)
        seen.add((SESSION, 1))
        self.assertIn((SESSION, 1), seen)
        self.assertEqual(len(self.errors()), 1)

    def test_shortWrite(self):
        """
        A short write (the last bytes of a disk) is a failure to write, not
        a silently torn record.
        """
        path = os.path.abspath(self.mktemp())

        class Short:
            name = path

            def write(self, data):
                return len(data) - 3

        self.assertRaises(OSError, eventfiles.append_seen, Short(), (SESSION, 1))


class ReceiverFullDiskTests(SynchronousTestCase):
    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.clock = Clock()
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.failures = []

    def test_forwardsAndAcknowledgesOnFullDisk(self):
        """
        A receiving half whose C{.seen} file cannot grow forwards and
        acknowledges every event, never raising into the connection; a
        stop while it still cannot write says so (the exit is then not 0).
        """
        router = RecordingRouter()
        relay = EventReceiver(settings(os.path.join(self.folder, "host")), router, self.clock, [],
                              failed=lambda f, **fields: self.failures.append(f.format(**fields)))
        disk = FullDisk()
        # what start() makes, on a disk that fills
        relay.seen = SeenEvents(100, relay.path, self.clock.seconds, disk)
        connection = Connection()
        relay.frameReceived(connection, SESSION_ID, session_frame(SESSION))
        relay.frameReceived(connection, 1, b"event 1")
        disk.full = True
        for n in range(2, 5):
            relay.frameReceived(connection, n, b"event %d" % n)
        self.assertEqual(len(router.requests), 4)
        self.assertEqual(connection.frames, [(n, b"") for n in range(1, 5)])
        relay.stop()
        self.assertEqual(len(self.failures), 1)
        self.assertIn("could not record 3 forwarded event(s)", self.failures[0])
        self.assertIn("every event was delivered", self.failures[0])


class SenderFullDiskTests(SynchronousTestCase):
    def test_spoolFullDisk(self):
        """
        A sending half that cannot write its spool at stop fails (exit 1)
        with a sentence saying how many events it could not keep, and
        raises nothing.
        """
        failures = []
        folder = os.path.abspath(self.mktemp())
        sender = EventSender(settings(os.path.join(folder, "missing", "site")), RecordingRouter(), Clock(), [],
                             failed=lambda f, **fields: failures.append(f.format(**fields)))
        sender.start()
        sender.send(b"event", None)
        sender.stop()
        self.assertEqual(len(failures), 1)
        self.assertIn("could not keep 1 undelivered event(s)", failures[0])
