# -*- test-case-name: tests.unit.test_nats_stepper -*-
"""
The NATS ends' asyncio loop run on the reactor's own thread, under the
tunnel's default reactor (any reactor that watches file descriptors,
C{IReactorFDSet}): L{ReactorStepper}.

nats-py is asyncio and the default reactor is not. Rather than give the
loop a thread of its own (L{uhppoted_tunnel.transports.nats.bridge.LoopThread}),
whose every frame crosses between two threads twice in each half (a
wake-up through a pipe, and the two threads taking turns with the GIL),
the reactor steps the loop: it watches the loop's selector (an epoll
descriptor is itself readable when any descriptor it watches is) and,
when that is readable, when a timer of the loop is due, or when the
reactor's side has put something on the loop, runs the loop until it has
nothing ready, at most L{TURNS} iterations at a time so that the
reactor's own descriptors are never starved.

The loop learns nothing of this but its selector
(L{SteppedSelector}), which never blocks: each of the loop's iterations
polls, and the first that finds nothing to do (no callback ready, no
descriptor ready) stops the loop and tells the reactor when the loop's
next timer is due. Everything else of asyncio is used as documented.
"""

import asyncio
import selectors

from twisted.internet.interfaces import IReadDescriptor
from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel.transports.nats.bridge import ISameThread

#: the most iterations of the loop one step runs before the reactor has
#: its turn
TURNS = 16


class SteppedSelector(selectors.BaseSelector):
    """
    A selector that polls, and tells its L{ReactorStepper} of each poll
    (so that it stops the loop once the loop is idle).
    """

    def __init__(self, selector, stepper):
        self._selector = selector
        self._stepper = stepper

    def register(self, fileobj, events, data=None):
        return self._selector.register(fileobj, events, data)

    def unregister(self, fileobj):
        return self._selector.unregister(fileobj)

    def modify(self, fileobj, events, data=None):
        return self._selector.modify(fileobj, events, data)

    def get_map(self):
        return self._selector.get_map()

    def fileno(self):
        return self._selector.fileno()

    def close(self):
        self._selector.close()

    def select(self, timeout=None):
        """
        :param timeout: what the loop would wait: 0 if it has callbacks
            ready, else until its next timer (C{None}: it has none).
        """
        if self._stepper.closing:
            return self._selector.select(timeout)
        events = self._selector.select(0)
        self._stepper.polled(timeout, bool(events))
        return events


@implementer(IReadDescriptor, ISameThread)
class ReactorStepper:
    """
    One asyncio loop stepped by the reactor, on the reactor's thread, for
    the NATS ends of a process: the first job makes it, and it is closed
    once the last one has ended. As L{uhppoted_tunnel.transports.nats.bridge.LoopThread}:
    L{acquire} the loop, then L{run} a job on it.

    :ivar closing: whether the loop is being closed (it then runs as any
        loop does, until its last tasks have ended).
    """

    log = Logger()
    log_tag = "NATS"

    def __init__(self, reactor):
        """
        :param reactor: an C{IReactorFDSet} and C{IReactorTime}.
        """
        self.reactor = reactor
        self.loop = None
        self.closing = False
        self._selector = None
        self._jobs = 0
        self._next = None
        self._turns = 0

    def acquire(self):
        """
        The loop, made if need be, for one more job.
        """
        if self.loop is None:
            self._selector = SteppedSelector(selectors.DefaultSelector(), self)
            self.loop = asyncio.SelectorEventLoop(self._selector)
            self.reactor.addReader(self)
        self._jobs += 1
        return self.loop

    def run(self, loop, job, *args):
        """
        Run the coroutine function C{job(*args)} on C{loop}, from
        L{acquire}, from the reactor's next turn on.
        """
        task = loop.create_task(job(*args))
        task.add_done_callback(self._ended)
        self._stepIn(0)

    @property
    def running(self):
        return self.loop is not None

    def wakers(self, loop, event):
        """
        A link's mailboxes need no pipe: the reactor drains its mailbox on
        its next turn, and the loop's is drained in the step that setting
        C{event} asks for.
        """
        later = self.reactor.callLater

        def to_reactor(drain):
            later(0, drain)

        def to_loop(drain):
            # after the loop has closed, its link has ended
            if not loop.is_closed():
                loop.call_soon(event.set)
                self._stepIn(0)

        return to_reactor, to_loop

    # the reactor's side

    def fileno(self):
        selector = self._selector
        return -1 if selector is None else selector.fileno()

    def doRead(self):
        # what a step raises must not reach the reactor, which would stop
        # watching the loop for good
        try:
            self.step()
        except Exception:
            self.log.failure("the NATS loop failed a step")

    def connectionLost(self, reason):
        pass

    def logPrefix(self):
        return "nats-loop"

    def step(self):
        """
        Run the loop until it has nothing ready (or for L{TURNS}
        iterations).
        """
        loop = self.loop
        if loop is None or loop.is_running() or self.closing:
            return
        self._turns = 0
        loop.run_forever()

    def _stepIn(self, delay):
        pending = self._next
        if pending is not None and pending.active():
            if pending.getTime() <= self.reactor.seconds() + delay:
                return
            pending.cancel()
        self._next = self.reactor.callLater(delay, self.step)

    # the loop's side

    def polled(self, timeout, ready):
        """
        The loop polled its descriptors (L{SteppedSelector}).

        :param timeout: what it would have waited.
        :param ready: whether a descriptor was ready.
        """
        self._turns += 1
        busy = ready or timeout == 0
        if busy and self._turns < TURNS:
            return
        # this iteration is the step's last: it still handles what the
        # poll found
        self.loop.stop()
        if busy:
            self._stepIn(0)
        elif timeout is not None:
            self._stepIn(timeout)

    def _ended(self, task):
        self._jobs -= 1
        if not self._jobs:
            self.reactor.callLater(0, self._close)

    def _close(self):
        loop = self.loop
        if self._jobs or loop is None or loop.is_running():
            return
        self.reactor.removeReader(self)
        if self._next is not None and self._next.active():
            self._next.cancel()
        self.closing = True
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
            self.loop = self._selector = None
            self.closing = False
