"""
Tests for L{uhppoted_tunnel.link.reactor}: the tunnel's epoll reactor
handles each event a poll reports, logs what fails in one and goes on, and
runs the calls asked for at the end of the turn once the poll's events are
handled.
"""

from select import EPOLLERR, EPOLLIN

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.interfaces import IReactorTurnEnd
from uhppoted_tunnel.link.reactor import TurnEndReactor


class FakePoller:
    """
    What the reactor polls: C{poll} returns the events queued in
    C{events} (once) and records the timeout it was given.
    """

    def __init__(self):
        self.events = []
        self.timeouts = []
        self.registered = {}

    def poll(self, timeout, maxevents):
        self.timeouts.append(timeout)
        events, self.events = self.events, []
        return events

    def register(self, fd, flags):
        self.registered[fd] = flags

    def modify(self, fd, flags):
        self.registered[fd] = flags

    def unregister(self, fd):
        self.registered.pop(fd, None)

    def close(self):
        pass


class FakeReader:
    """
    A selectable that records what the reactor calls on it into C{seen}.
    """

    def __init__(self, fd, seen, read=None, lost=None):
        self.fd = fd
        self.seen = seen
        self.read = read
        self.lost = lost

    def fileno(self):
        return self.fd

    def logPrefix(self):
        return "fake"

    def doRead(self):
        self.seen.append(("read", self.fd))
        if self.read is not None:
            return self.read()

    def connectionLost(self, reason):
        self.seen.append(("lost", self.fd))
        if self.lost is not None:
            self.lost()


class TurnEndReactorTests(SynchronousTestCase):
    def setUp(self):
        self.poller = FakePoller()
        self.reactor = TurnEndReactor(self.poller)
        self.addCleanup(self.reactor.waker.connectionLost, None)
        self.seen = []

    def reader(self, fd, **kwargs):
        # descriptors far above any the test process has open
        reader = FakeReader(fd, self.seen, **kwargs)
        self.reactor.addReader(reader)
        return reader

    def test_interface(self):
        """
        The reactor is an L{IReactorTurnEnd}, and its waker is registered
        with the poller it was given.
        """
        self.assertTrue(verifyObject(IReactorTurnEnd, self.reactor))
        self.assertIn(self.reactor.waker.fileno(), self.poller.registered)

    def test_events(self):
        """
        Each event a poll reports is handled; the end-of-turn calls asked
        for while handling them run after them all, once.
        """
        self.reader(1010, read=lambda: self.reactor.callAtTurnEnd(lambda: self.seen.append("end")))
        self.reader(1011)
        self.poller.events = [(1010, EPOLLIN), (1011, EPOLLIN)]
        self.reactor.doIteration(None)
        self.assertEqual(self.seen, [("read", 1010), ("read", 1011), "end"])
        self.reactor.doIteration(None)
        self.assertEqual(self.seen, [("read", 1010), ("read", 1011), "end"])

    def test_timeout(self):
        """
        With nothing asked for, the poll waits as long as the reactor says
        (C{None}: with no limit, C{-1} to epoll).
        """
        self.reactor.doIteration(None)
        self.reactor.doIteration(0.5)
        self.assertEqual(self.poller.timeouts, [-1, 0.5])

    def test_betweenTurns(self):
        """
        A call asked for between turns (from a timed call) runs before the
        next poll, which then does not wait.
        """
        self.reactor.callAtTurnEnd(lambda: self.seen.append("end"))
        self.reactor.doIteration(None)
        self.assertEqual((self.seen, self.poller.timeouts), (["end"], [0]))

    def test_readFails(self):
        """
        An error in a selectable's C{doRead} is logged and the selectable
        dropped; the poll's next event is handled all the same.
        """
        self.reader(1010, read=lambda: 1 / 0)
        self.reader(1011)
        self.poller.events = [(1010, EPOLLIN), (1011, EPOLLIN)]
        self.reactor.doIteration(None)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.seen, [("read", 1010), ("lost", 1010), ("read", 1011)])
        self.assertNotIn(1010, self.poller.registered)

    def test_lostFails(self):
        """
        An error in a selectable's C{connectionLost} is logged; the poll's
        next event is handled all the same.
        """
        self.reader(1010, lost=lambda: 1 / 0)
        self.reader(1011)
        self.poller.events = [(1010, EPOLLERR), (1011, EPOLLIN)]
        self.reactor.doIteration(None)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.seen, [("lost", 1010), ("read", 1011)])

    def test_turnEndFails(self):
        """
        An end-of-turn call that fails is logged; the others run.
        """
        self.reactor.callAtTurnEnd(lambda: 1 / 0)
        self.reactor.callAtTurnEnd(lambda: self.seen.append("end"))
        self.reactor.doIteration(None)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertEqual(self.seen, ["end"])

    def test_unknownDescriptor(self):
        """
        An event for a descriptor the reactor no longer watches is ignored.
        """
        self.poller.events = [(1099, EPOLLIN)]
        self.reactor.doIteration(None)
        self.assertEqual(self.seen, [])
