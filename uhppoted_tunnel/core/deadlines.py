# -*- test-case-name: tests.unit.test_deadlines -*-
"""
One timer for many deadlines.

Requests in flight on a UDP end, or on a TCP connection to a controller,
each expire a fixed time after they start, so they expire in the order
they were added: a queue and one timer (armed only while something waits)
serve them all, instead of a C{callLater} per request.
"""

from collections import deque


class DeadlineQueue:
    """
    Items that expire C{delay} seconds after they are added, oldest first.

    Each item gets a C{deadline} attribute (seconds, on the clock) when it
    is added.
    """

    __slots__ = ("clock", "delay", "expired", "_items", "_timer")

    def __init__(self, clock, delay, expired):
        """
        :param clock: an C{IReactorTime}.
        :param delay: seconds from an item's addition to its deadline.
        :param expired: called with C{(items, now)}, the items whose
            deadline has passed, oldest first (one call for all those due
            at once); it returns those to keep for another C{delay}
            seconds.
        """
        self.clock = clock
        self.delay = delay
        self.expired = expired
        self._items = deque()
        self._timer = None

    def __len__(self):
        return len(self._items)

    def add(self, item):
        """
        Start an item's time.

        :return: the time it started (its owner may keep it, to time a
            reply without reading the clock again).
        """
        now = self.clock.seconds()
        item.deadline = now + self.delay
        self._items.append(item)
        if self._timer is None:
            self._timer = self.clock.callLater(self.delay, self._fire)
        return now

    def _fire(self):
        self._timer = None
        now = self.clock.seconds()
        items = self._items
        due = []
        while items and items[0].deadline <= now:
            due.append(items.popleft())
        if due:
            again = now + self.delay
            for item in self.expired(due, now):
                item.deadline = again
                items.append(item)
        if items:
            self._timer = self.clock.callLater(max(0.0, items[0].deadline - now), self._fire)

    def clear(self):
        """
        Forget every item and cancel the timer.
        """
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._items.clear()
