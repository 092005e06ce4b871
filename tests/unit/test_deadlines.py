# -*- test-case-name: tests.unit.test_deadlines -*-
"""
Tests for L{uhppoted_tunnel.core.deadlines}.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.core.deadlines import DeadlineQueue


class Item:
    def __init__(self, name, keep=0):
        self.name = name
        self.keep = keep


class DeadlineQueueTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.expired = []
        self.queue = DeadlineQueue(self.clock, 5, self.expire)

    def expire(self, items, now):
        kept = []
        for item in items:
            self.expired.append((item.name, now))
            if item.keep:
                item.keep -= 1
                kept.append(item)
        return kept

    def test_inOrderOneTimer(self):
        """
        Items expire in the order added, each C{delay} after its addition,
        with one timer at a time, and none left once all have expired.
        """
        self.queue.add(Item("a"))
        self.clock.advance(1)
        self.queue.add(Item("b"))
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(4)
        self.assertEqual(self.expired, [("a", 5)])
        self.clock.advance(1)
        self.assertEqual(self.expired, [("a", 5), ("b", 6)])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.queue), 0)

    def test_kept(self):
        """
        An item the callback keeps expires again C{delay} later.
        """
        self.queue.add(Item("a", keep=1))
        self.clock.advance(5)
        self.clock.advance(5)
        self.assertEqual(self.expired, [("a", 5), ("a", 10)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_clear(self):
        """
        clear() forgets every item and cancels the timer.
        """
        self.queue.add(Item("a"))
        self.queue.clear()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.expired, [])
