# -*- test-case-name: tests.unit.test_nats_stepper -*-
"""
Tests for the NATS ends' asyncio loop stepped by the reactor
(L{uhppoted_tunnel.transports.nats.stepper}), with a memory reactor whose
clock the test moves: a step runs the loop until it is idle, at most
L{TURNS} iterations, and asks the reactor for the next one when the loop
has more to do or a timer. No thread, no sleep.
"""

import asyncio

from twisted.internet.interfaces import IReadDescriptor
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.transports.nats.bridge import ISameThread, Mailbox
from uhppoted_tunnel.transports.nats.maker import NATSConnectorMaker
from uhppoted_tunnel.transports.nats.stepper import TURNS, ReactorStepper


class StepperTests(SynchronousTestCase):
    """
    A loop stepped by a reactor.
    """

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.stepper = ReactorStepper(self.reactor)

    def tearDown(self):
        # end what a test left: its jobs cancelled, then the loop closed
        loop = self.stepper.loop
        if loop is not None and not loop.is_closed():
            for task in asyncio.all_tasks(loop):
                task.cancel()
            self.stepper.step()
            self.reactor.advance(0)
            if not loop.is_closed():
                loop.close()

    def test_interfaces(self):
        """
        The stepper is a descriptor of the reactor's once it has a loop:
        the loop's selector, whose reading steps the loop.
        """
        verifyObject(IReadDescriptor, self.stepper)
        loop = self.stepper.acquire()
        self.assertIn(self.stepper, self.reactor.readers)
        self.assertGreaterEqual(self.stepper.fileno(), 0)
        self.assertIs(self.stepper.acquire(), loop)

    def test_job(self):
        """
        A job runs from the reactor's next turn, as far as it can without
        waiting; once the last job has ended, the loop is closed and the
        reactor no longer watches it.
        """
        done = []

        async def job(n):
            for _ in range(3):
                await asyncio.sleep(0)
            done.append(n)

        loop = self.stepper.acquire()
        self.stepper.run(loop, job, 1)
        self.assertEqual(done, [])
        self.reactor.advance(0)
        self.assertEqual(done, [1])
        self.reactor.advance(0)
        self.assertTrue(loop.is_closed())
        self.assertNotIn(self.stepper, self.reactor.readers)
        self.assertFalse(self.stepper.running)

    def test_timer(self):
        """
        A loop that waits for a timer stops, and the reactor steps it again
        when the timer is due.
        """
        loop = self.stepper.acquire()
        self.stepper.run(loop, asyncio.sleep, 5)
        self.reactor.advance(0)
        [call] = self.reactor.getDelayedCalls()
        self.assertTrue(4 < call.getTime() - self.reactor.seconds() <= 5)

    def test_turns(self):
        """
        A loop that always has more to do runs at most L{TURNS} iterations
        a step, and the reactor has its turn between steps.
        """
        counted = []

        async def busy():
            while True:
                counted.append(1)
                await asyncio.sleep(0)

        loop = self.stepper.acquire()
        self.stepper.run(loop, busy)
        # what the reactor does on its turns (a memory clock would run a
        # call made for now in the same advance, for ever)
        self.stepper.step()
        first = len(counted)
        self.assertTrue(0 < first <= TURNS)
        self.assertEqual([call.getTime() for call in self.reactor.getDelayedCalls()], [self.reactor.seconds()])
        self.stepper.step()
        self.assertTrue(first < len(counted) <= 2 * TURNS)

    def test_readable(self):
        """
        What the reactor's thread puts on the loop (C{call_soon_threadsafe},
        as the mailboxes do) makes the selector readable; reading it runs
        the callback.
        """
        called = []
        loop = self.stepper.acquire()
        loop.call_soon_threadsafe(called.append, 1)
        self.stepper.doRead()
        self.assertEqual(called, [1])

    def test_wakers(self):
        """
        A link's mailboxes wake the other side with no pipe: the loop's on
        the reactor's next turn, by the event its task waits for; the
        reactor's on the reactor's next turn.
        """
        verifyObject(ISameThread, self.stepper)
        loop = self.stepper.acquire()
        event = asyncio.Event()
        to_reactor, to_loop = self.stepper.wakers(loop, event)
        taken, drained = [], []
        outbox = Mailbox(to_loop, None)
        inbox = Mailbox(to_reactor, drained.append)

        async def job():
            await event.wait()
            taken.extend(outbox.take())
            inbox.put("reported")

        self.stepper.run(loop, job)
        outbox.put("command")
        self.assertEqual(taken, [])
        # (a memory clock runs what is called for now in the same advance)
        self.reactor.advance(0)
        self.assertEqual(taken, ["command"])
        self.assertEqual(drained, ["reported"])

    def test_failedStep(self):
        """
        A step that fails is logged, and the reactor goes on watching the
        loop.
        """
        loop = self.stepper.acquire()
        loop.close()
        self.assertIsNone(self.stepper.doRead())
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn(self.stepper, self.reactor.readers)

    def test_maker(self):
        """
        Under a reactor that watches descriptors, and with no loops given,
        the NATS ends of a maker share one stepper of that reactor.
        """
        maker = NATSConnectorMaker("nats", None, None)
        stepper = maker.loopsFor(self.reactor)
        self.assertIsInstance(stepper, ReactorStepper)
        self.assertIs(maker.loopsFor(self.reactor), stepper)
        self.assertIsNot(maker.loopsFor(MemoryReactorClock()), stepper)
