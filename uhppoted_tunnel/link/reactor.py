# -*- test-case-name: tests.unit.test_reactor -*-
"""
The tunnel's reactor: Twisted's epoll reactor with two costs less per
event, which one request pays four times across a pair (see the "One
client" section of docs/performance.rst).

Twisted's C{EPollReactor} wraps every read or write event in
C{twisted.python.log.callWithLogger}, which asks the selectable for its
C{logPrefix} and sets up a legacy log context around the call; and a
writer that gathers what one turn writes (L{TurnWriter
<uhppoted_tunnel.link.writes.TurnWriter>}) needs a timed call per turn,
C{callLater(0)}, to send it. L{TurnEndReactor} dispatches each event
directly, with an error from it logged all the same (the event loop goes
on with the next event), and offers L{IReactorTurnEnd}: calls run once the
events of one poll are handled, before the reactor polls again, with no
timed call. What a handler logs through Twisted's legacy C{log} module has
no C{system} (its selectable's C{logPrefix}) any more; the tunnel's own
log never shows it.

L{install} makes it the reactor (C{uhppoted-tunnel} does, for every
half); C{twistd -r uhppoted} chooses it too
(C{twisted/plugins/uhtunnel.py}).
"""

import errno
from select import EPOLLIN

from twisted.internet.epollreactor import EPollReactor
from twisted.internet.main import installReactor
from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel.interfaces import IReactorTurnEnd


@implementer(IReactorTurnEnd)
class TurnEndReactor(EPollReactor):
    """
    An epoll reactor that dispatches events without a log context per
    event and runs L{callAtTurnEnd} calls once a poll's events are handled.
    """

    log = Logger()

    def __init__(self, poller=None):
        """
        :param poller: what to poll instead of a new C{select.epoll}, an
            object with its C{poll}, C{register}, C{modify} and
            C{unregister} (a fake, in tests).
        """
        EPollReactor.__init__(self)
        if poller is not None:
            # what the base class registered (its waker) goes to the new one
            self._poller.close()
            self._poller = poller
            for fd in self._reads:
                poller.register(fd, EPOLLIN)
        self._turn_end = []

    def callAtTurnEnd(self, f):
        self._turn_end.append(f)

    def _runTurnEnd(self):
        calls, self._turn_end = self._turn_end, []
        for f in calls:
            try:
                f()
            except Exception:
                self.log.failure("An end-of-turn call failed; the reactor goes on.")

    def doPoll(self, timeout):
        """
        Poll for events, handle each, then run the end-of-turn calls.

        :param timeout: seconds to wait at most, C{None} for no limit.
        """
        if self._turn_end:
            # asked for between turns (from a timed call): run them now,
            # and do not wait, as one of them may have scheduled more
            self._runTurnEnd()
            timeout = 0
        elif timeout is None:
            timeout = -1
        try:
            events = self._poller.poll(timeout, len(self._selectables))
        except OSError as e:
            if e.errno == errno.EINTR:
                return
            raise
        selectables = self._selectables
        handle = self._doReadOrWrite
        for fd, event in events:
            selectable = selectables.get(fd)
            if selectable is None:
                continue
            # _doReadOrWrite logs an error of doRead or doWrite itself and
            # drops the connection; this is for one of connectionLost
            try:
                handle(selectable, fd, event)
            except Exception:
                self.log.failure("Handling a socket's event failed; the reactor goes on.")
        if self._turn_end:
            self._runTurnEnd()

    doIteration = doPoll


def install():
    """
    Install a L{TurnEndReactor} as C{twisted.internet.reactor}.
    """
    reactor = TurnEndReactor()
    installReactor(reactor)
    return reactor
