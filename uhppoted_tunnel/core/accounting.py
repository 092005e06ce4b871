# -*- test-case-name: tests.unit.test_accounting -*-
"""
Every request accounted for: the warnings of an out end that holds or
drops requests for want of a peer (L{NoPeerWarnings}), and of one whose
requests no controller answers (L{UnansweredWarnings}). Each is a
L{Throttle}: the first at once, then a count at most every 10 s, so a
flood is a few lines and a single request is never silent.
"""

from twisted.logger import Logger

from uhppoted_tunnel.core.functions import describe, describe_key
from uhppoted_tunnel.core.throttle import Throttle


class NoPeerWarnings:
    """
    What a request out end (C{tcp/client}, C{tcp/server}, ...) does with a
    request while no peer is connected: holds it (the newest C{limit}),
    drops the oldest held one when full, and drops those older than
    C{--udp-timeout} when a peer connects.
    """

    log = Logger()

    def __init__(self, clock, log_tag, limit, timeout):
        """
        :param clock: an C{IReactorTime}.
        :param log_tag: the end's log tag.
        :param limit: the requests held at most.
        :param timeout: C{--udp-timeout}, in seconds.
        """
        self.log_tag = log_tag
        self.limit = limit
        self.timeout = timeout
        self._last = None
        self._held = Throttle(clock, self._warnHeld)
        self._dropped = Throttle(clock, self._warnDropped)

    def held(self, payload):
        """
        A request is held until a peer connects.
        """
        self._last = payload
        self._held.count()

    def dropped(self):
        """
        The oldest held request was dropped to hold a newer one.
        """
        self._dropped.count()

    def stale(self, count):
        """
        C{count} held requests were dropped, older than C{--udp-timeout}
        when a peer connected.
        """
        self.log.warn("a peer connected: dropped {n} held request(s) older than --udp-timeout ({timeout:g}s); "
                      "their senders have given up on them", n=count, timeout=self.timeout)

    @property
    def total_dropped(self):
        return self._dropped.total

    def flush(self):
        """
        Report what is not yet reported (the end is stopping).
        """
        self._held.flush()
        self._dropped.flush()

    def _warnHeld(self, count):
        if count == 1:
            self.log.warn("no peer connected: holding {request} until one connects (up to {limit} requests, "
                          "each for --udp-timeout {timeout:g}s)", request=describe(self._last), limit=self.limit,
                          timeout=self.timeout)
        else:
            self.log.warn("no peer connected: held {count} more request(s), the last {request} (up to {limit} "
                          "are kept, each for --udp-timeout {timeout:g}s)", count=count,
                          request=describe(self._last), limit=self.limit, timeout=self.timeout)

    def _warnDropped(self, count):
        self.log.warn("no peer connected: dropped the {n} oldest held request(s) ({limit} are held); is the other "
                      "half running and able to reach this one?", n=count, limit=self.limit)


class UnansweredWarnings:
    """
    Requests no controller answered within C{--udp-timeout}, naming the
    function, the controller and the end.
    """

    log = Logger()

    def __init__(self, clock, log_tag, end, timeout):
        """
        :param clock: an C{IReactorTime}.
        :param log_tag: the end's log tag.
        :param end: the end's connector string, as the user wrote it.
        :param timeout: C{--udp-timeout}, in seconds.
        """
        self.log_tag = log_tag
        self.end = end
        self.timeout = timeout
        self._last = None
        self._throttle = Throttle(clock, self._warn)

    def unanswered(self, key):
        """
        A request went unanswered.

        :param key: its C{(function, serial)} (L{request_key}), or C{None}.
        """
        self._last = key
        self._throttle.count()

    def flush(self):
        self._throttle.flush()

    def _warn(self, count):
        request = describe_key(self._last)
        if self._last is not None and self._last[1] == 0:
            hint = "is a controller on that network, and does the broadcast address reach it?"
        else:
            hint = "is the controller on, and at that address?"
        if count == 1:
            self.log.warn("no reply to {request} within --udp-timeout ({timeout:g}s) on {end}: {hint}",
                          request=request, timeout=self.timeout, end=self.end, hint=hint)
        else:
            self.log.warn("no reply to {count} requests within --udp-timeout ({timeout:g}s) on {end}, the last "
                          "{request}: {hint}", count=count, request=request, timeout=self.timeout, end=self.end,
                          hint=hint)
