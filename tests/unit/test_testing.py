# -*- test-case-name: tests.unit.test_testing -*-
"""
Tests for the test helpers in L{uhppoted_tunnel.testing} that every
waiting test relies on.
"""

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.testing import NOT_YET, Conditions, WaitTimeout


class ConditionsTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.seen = []
        self.conditions = Conditions(self.clock)

    def enough(self):
        return list(self.seen) if len(self.seen) >= 2 else NOT_YET

    def test_alreadyHolds(self):
        """
        A condition that holds already fires at once.
        """
        self.seen.extend([1, 2])
        self.assertEqual(self.successResultOf(self.conditions.wait(self.enough, 5, lambda: "x")), [1, 2])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_firesOnCheck(self):
        """
        A waiter fires at the first check at which its condition holds, and
        its deadline goes.
        """
        d = self.conditions.wait(self.enough, 5, lambda: "x")
        self.seen.append(1)
        self.conditions.check()
        self.assertNoResult(d)
        self.seen.append(2)
        self.conditions.check()
        self.assertEqual(self.successResultOf(d), [1, 2])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_deadline(self):
        """
        A waiter whose condition never holds fails at its deadline with its
        description, and not before.
        """
        d = self.conditions.wait(self.enough, 5, lambda: "only {} seen".format(len(self.seen)))
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(str(self.failureResultOf(d, WaitTimeout).value), "only 0 seen")

    def test_later(self):
        """
        With C{later}, a waiter fires on the next turn, not inside check.
        """
        conditions = Conditions(self.clock, later=True)
        d = conditions.wait(self.enough, 5, lambda: "x")
        self.seen.extend([1, 2])
        conditions.check()
        self.assertNoResult(d)
        self.clock.advance(0)
        self.assertEqual(self.successResultOf(d), [1, 2])

    def test_fail(self):
        """
        fail() fails every waiter at once, saying why.
        """
        d = self.conditions.wait(self.enough, 5, lambda: "no two")
        self.conditions.fail(lambda what: "ended with " + what)
        self.assertEqual(str(self.failureResultOf(d, WaitTimeout).value), "ended with no two")
        self.assertEqual(self.clock.getDelayedCalls(), [])
