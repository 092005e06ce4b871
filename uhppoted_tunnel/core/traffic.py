# -*- test-case-name: tests.unit.test_accounting -*-
"""
Traffic at info, readable at one request a minute and at 30,000 a second:
each request, and each reply to it, is a line of its own while there are
at most L{LINES} in L{INTERVAL} seconds; past that, the rest of the
interval is one summary line, logged with the first request after it (or
when the tunnel stops). A quiet tunnel therefore shows every request, as
the Go tunnel does; a busy one shows the first few of each 10 s and a
line saying how many it relayed in them.

The hot path pays one clock read, a comparison and an increment per
request, and no timer (a timer per interval would be one more delayed
call for the reactor to keep in order); a line is formatted only when it
is logged.
"""

import time
from functools import partial

from twisted.logger import Logger

from uhppoted_tunnel.core.functions import describe

#: Requests logged one by one in each interval.
LINES = 10

#: Seconds of traffic a summary line covers.
INTERVAL = 10.0


class TrafficLog:
    """
    The router hands it every request it forwards (L{request}).

    :ivar count: the requests in the interval so far.
    :ivar end: when the interval ends.
    """

    log = Logger()
    log_tag = "RELAY"

    def __init__(self, clock, destination, lines=LINES, interval=INTERVAL):
        """
        :param clock: an C{IReactorTime}.
        :param destination: the out end's connector string.
        :param lines: requests logged one by one in each interval.
        :param interval: seconds an interval lasts.
        """
        self.clock = clock
        self._seconds = clock.seconds
        self.destination = destination
        self.lines = lines
        self.interval = interval
        self._start = self.end = 0.0
        self.count = 0

    def request(self, payload, source, reply, now=None):
        """
        A request forwarded. (The router counts one itself, without this
        call, while L{count} is past L{lines} before L{end}.)

        :param source: who sent it, or C{None}.
        :param reply: its reply callback, or C{None}.
        :param now: the time, if the caller has it already.
        :return: the reply callback to use instead.
        """
        if now is None:
            now = self._seconds()
        if now >= self.end:
            if self.count > self.lines:
                self._summary()
            self._start = now
            self.end = now + self.interval
            self.count = 0
        count = self.count = self.count + 1
        if count <= self.lines:
            request = describe(payload)
            self.log.info("{request} from {source} -> {destination}", request=request,
                          source=source or "the in end", destination=self.destination)
            if reply is not None:
                return partial(self._replied, request, reply)
        return reply

    def _replied(self, request, reply, payload):
        self.log.info("reply to {request} ({n} bytes)", request=request, n=len(payload))
        reply(payload)

    def _summary(self):
        self.log.info("{total} requests in the {interval:g}s from {start}, {skipped} of them not logged one by one "
                      "(at most {lines} are per {interval:g}s)", total=self.count, interval=self.interval,
                      start=time.strftime("%H:%M:%S", time.localtime(self._start)),
                      skipped=self.count - self.lines, lines=self.lines)

    def stop(self):
        """
        Report what is left (the tunnel is stopping).
        """
        if self.count > self.lines:
            self._summary()
        self.count = 0
