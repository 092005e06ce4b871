# -*- test-case-name: tests.unit.test_accepts -*-
"""
Accepts that fail for want of descriptors: Twisted's TCP port, when
C{accept(2)} fails with C{EMFILE} or C{ENFILE}, logs it (and, using a
reserved descriptor, accepts and closes at once the connections waiting)
only at info under its own namespace, which the tunnel's log hides, so a
real site was closed without a word. L{AcceptFailures} hears those events
and turns them into a throttled warning that says what to do; as a
service (L{AcceptFailuresService}) it listens while the tunnel runs.
"""

import resource

from twisted.application.service import Service
from twisted.logger import Logger, globalLogPublisher
from twisted.logger import ILogObserver
from zope.interface import implementer

from uhppoted_tunnel.core.throttle import Throttle

#: The namespace of Twisted's TCP port's log events.
PORT_NAMESPACE = "twisted.internet.tcp.Port"

#: What it logs for an accept that failed for want of descriptors, and for
#: each connection it accepted and closed at once to get past it.
FAILED = "Could not accept new connection ({acceptError})"
CLOSED = "EMFILE recovery: Closed socket from {address}"

#: The accept errors that mean the process or the system is out of descriptors.
OUT_OF_DESCRIPTORS = ("EMFILE", "ENFILE")


def open_file_limit():
    """
    :return: the process's soft open-file limit.
    """
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@implementer(ILogObserver)
class AcceptFailures:
    """
    Counts the accepts that failed for want of descriptors, and the
    connections closed unserved because of them, and warns of them,
    throttled.
    """

    log = Logger()
    log_tag = "TUNNEL"

    def __init__(self, clock, limit=open_file_limit):
        """
        :param clock: an C{IReactorTime}.
        :param limit: a callable giving the open-file limit, for the warning.
        """
        self.limit = limit
        self._failed = Throttle(clock, self._warn)
        self._last = None
        self._error = "EMFILE"

    def __call__(self, event):
        if event.get("log_namespace") != PORT_NAMESPACE:
            return
        form = event.get("log_format")
        if form == FAILED and event.get("acceptError") in OUT_OF_DESCRIPTORS:
            self._error = event["acceptError"]
            self._failed.count()
        elif form == CLOSED:
            address = event.get("address")
            self._last = "{}:{}".format(*address[:2]) if isinstance(address, tuple) else str(address)
            self._failed.count()

    @property
    def total(self):
        """
        Accepts failed and connections closed unserved so far.
        """
        return self._failed.total

    def _warn(self, count):
        what = "the system's open-file table is full" if self._error == "ENFILE" else \
            "the process's open-file limit ({}) is reached".format(self.limit())
        last = "" if self._last is None else ", the last from " + self._last
        self.log.warn("could not accept {count} connection(s){last}: {what}, so they were closed unserved. Raise "
                      "the limit (ulimit -n, LimitNOFILE= in the unit) or lower --max-connections and "
                      "--max-connections-per-source so that a flood meets the caps first",
                      count=count, last=last, what=what)

    def flush(self):
        """
        Report what is not yet reported, and cancel the timer.
        """
        self._failed.flush()


class AcceptFailuresService(Service):
    """
    Hears Twisted's accept failures while the tunnel runs.
    """

    def __init__(self, clock, publisher=globalLogPublisher, limit=open_file_limit):
        """
        :param clock: an C{IReactorTime}.
        :param publisher: the log publisher to hear.
        :param limit: a callable giving the open-file limit.
        """
        self.observer = AcceptFailures(clock, limit)
        self.publisher = publisher

    def startService(self):
        Service.startService(self)
        self.publisher.addObserver(self.observer)

    def stopService(self):
        Service.stopService(self)
        self.publisher.removeObserver(self.observer)
        self.observer.flush()
