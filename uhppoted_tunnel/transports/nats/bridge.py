# -*- test-case-name: tests.unit.test_nats -*-
"""
Where the reactor and nats-py's asyncio meet, written without nats-py so
that it is tested with fakes.

nats-py is asyncio. Under the tunnel's default reactor every NATS end of
a process shares one asyncio event loop that the reactor steps on its
own thread (L{uhppoted_tunnel.transports.nats.stepper.ReactorStepper});
under a reactor that cannot watch the loop's selector, the loop runs on
a thread of its own (L{LoopThread}), started by the first connection and
stopped once the last one ends. Either way the reactor stays the
tunnel's choice, so no other transport changes. The reactor's side and
the loop's meet in two L{Mailbox}es per connection, one each way (on a
thread, safely between the two): a C{deque}, whose
C{append} and C{popleft} are safe between threads, and a wake-up of the
other side only when it is not already draining, so a burst of frames
costs one C{loop.call_soon_threadsafe} (reactor to loop) or one
C{reactor.callFromThread} (loop to reactor), not one a frame. Everything
a relay, a log line or a throttle does stays in the reactor thread.

Under Twisted's asyncio reactor (chosen with C{twistd -r asyncio}, never
by the tunnel itself) the links run on the reactor's loop instead
(L{ReactorLoop}): no thread, the same mailboxes.
"""

import asyncio
import threading
from collections import deque

from zope.interface import Interface


class ISameThread(Interface):
    """
    Loops (as L{LoopThread}'s) that run on the reactor's own thread, whose
    mailboxes need no wake-up that is safe between threads.
    """

    def wakers(loop, event):
        """
        :return: C{(to_reactor, to_loop)}: the C{wake} of a link's
            mailbox to the reactor and of its mailbox to C{loop} (whose
            task waits for C{event}).
        """


class Mailbox:
    """
    Items put on one thread and handled, in order, on another.

    The putting side appends and wakes the other only if no drain is
    pending; the draining side clears the flag before it drains, so an
    item is never left behind (at worst a drain finds nothing).
    """

    def __init__(self, wake, handle, limit=None):
        """
        :param wake: C{wake(function)}: call C{function} on the draining
            side's thread (C{reactor.callFromThread},
            C{loop.call_soon_threadsafe}).
        :param handle: called with each item, on the draining side.
        :param limit: the most items held; L{put} refuses more.
        """
        self._wake = wake
        self.handle = handle
        self.limit = limit
        self._items = deque()
        self._pending = False

    def __len__(self):
        return len(self._items)

    def put(self, item, force=False):
        """
        :param force: put the item even past the limit (what says the
            link is lost must never be refused).
        :return: False if the mailbox is full and the item was refused.
        """
        if not force and self.limit is not None and len(self._items) >= self.limit:
            return False
        self._items.append(item)
        if not self._pending:
            self._pending = True
            self._wake(self.drain)
        return True

    def drain(self):
        """
        Handle every item there is (on the draining side).
        """
        self._pending = False
        items = self._items
        handle = self.handle
        while items:
            handle(items.popleft())

    def take(self):
        """
        Every item there is, without handling them (the loop's writer
        awaits between items).
        """
        self._pending = False
        items = self._items
        taken = []
        while items:
            taken.append(items.popleft())
        return taken


class LoopThread:
    """
    One asyncio event loop on a daemon thread, running while it has jobs:
    the first job starts it, and it stops once the last one ends.
    """

    def __init__(self, name="nats"):
        self.name = name
        self._lock = threading.Lock()
        self._loop = None
        self._jobs = 0

    def acquire(self):
        """
        The loop, started if need be, for one more job: hand it the job
        with L{run}.
        """
        with self._lock:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._run, args=(loop,), name=self.name, daemon=True).start()
            self._jobs += 1
        return loop

    def run(self, loop, job, *args):
        """
        Run the coroutine function C{job(*args)} on C{loop}, from
        L{acquire}; the loop stops once its last job has returned.

        :return: a C{concurrent.futures.Future} of the job's result.
        """
        return asyncio.run_coroutine_threadsafe(self._job(loop, job, args), loop)

    async def _job(self, loop, job, args):
        try:
            return await job(*args)
        finally:
            with self._lock:
                self._jobs -= 1
                if not self._jobs and self._loop is loop:
                    self._loop = None
                    loop.stop()

    @property
    def running(self):
        with self._lock:
            return self._loop is not None

    @staticmethod
    def _run(loop):
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


class ReactorLoop:
    """
    Under Twisted's asyncio reactor (C{twistd -r asyncio}): the links run
    on the reactor's own asyncio loop, with no thread; the mailboxes then
    only defer to the loop's next turn.
    """

    def __init__(self, loop):
        self.loop = loop

    def acquire(self):
        return self.loop

    def run(self, loop, job, *args):
        asyncio.ensure_future(job(*args), loop=loop)


def waker(loop, event):
    """
    :return: C{wake(drain)} for a L{Mailbox} that a task on C{loop} empties
        with L{Mailbox.take} once C{event} (an C{asyncio.Event}) is set; a
        call after the loop has closed does nothing (its link has ended).
    """

    def wake(drain):
        try:
            loop.call_soon_threadsafe(event.set)
        except RuntimeError:
            pass

    return wake
