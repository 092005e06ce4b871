# -*- test-case-name: tests.unit.test_router -*-
"""
Rate limits and throttled warnings: L{TokenBucket} (a request budget) and
L{Throttle} (the first occurrence of something worth a warning at once,
then a count at most every C{WARN_INTERVAL} seconds).

Time comes in as an C{IReactorTime} (or its C{seconds}), so every
behaviour is tested with C{Clock}.
"""


#: Dropped-request warnings are summarised at most this often.
WARN_INTERVAL = 10.0


class TokenBucket:
    """
    A token bucket refilled continuously at C{rate} tokens a second up to
    C{burst}.
    """

    __slots__ = ("rate", "burst", "_tokens", "_stamp", "_seconds")

    def __init__(self, rate, burst, seconds):
        """
        :param rate: tokens added per second.
        :param burst: the most tokens held.
        :param seconds: a callable giving the time, e.g. C{clock.seconds}.
        """
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._seconds = seconds
        self._stamp = seconds()

    def take(self, now=None, cost=1.0, keep=0.0):
        """
        Take C{cost} tokens (one request; or bytes, when the bucket paces
        a byte stream) if there are as many.

        :param now: the time, if the caller has it already.
        :param cost: the tokens to take, at most C{burst}.
        :param keep: tokens that must be left after taking (a reserve kept
            for others).
        :return: True if they were taken.
        """
        if now is None:
            now = self._seconds()
        tokens = self._tokens + (now - self._stamp) * self.rate
        self._stamp = now
        if tokens > self.burst:
            tokens = self.burst
        # a nanosecond's worth of slack, so that float rounding never leaves
        # a request made exactly on time a hair short
        if tokens - cost >= keep - 1e-9:
            self._tokens = max(tokens - cost, 0.0)
            return True
        self._tokens = tokens
        return False

    def wait(self, cost=1.0):
        """
        How long until C{cost} tokens are there (taking none).

        :param cost: the tokens wanted, at most C{burst}.
        :return: seconds, 0 if they are there now.
        """
        now = self._seconds()
        tokens = min(self._tokens + (now - self._stamp) * self.rate, self.burst)
        # a nanosecond more, so that float rounding never leaves a hair short
        return 0.0 if tokens >= cost else (cost - tokens) / self.rate + 1e-9


class Throttle:
    """
    Reports occurrences of something worth a warning without flooding the
    log: the first one at once, later ones at most once every C{interval}
    seconds with the number since the last report. What is left unreported
    is reported when the interval is up (one timer, only while something
    is pending), or by L{flush} when the owner stops: no drop goes
    untold.
    """

    def __init__(self, clock, report, interval=WARN_INTERVAL):
        """
        :param clock: an C{IReactorTime}.
        :param report: called with the number to report.
        :param interval: the least time between reports.
        """
        self.clock = clock
        self.report = report
        self.interval = interval
        self.total = 0
        self._reported = 0
        self._last = None
        self._timer = None

    def count(self, n=1):
        """
        Count C{n} more occurrences.
        """
        self.total += n
        now = self.clock.seconds()
        if self._last is None or now - self._last >= self.interval:
            self._emit(now)
        elif self._timer is None:
            self._timer = self.clock.callLater(self._last + self.interval - now, self._due)

    def _due(self):
        self._timer = None
        self._emit(self.clock.seconds())

    def _emit(self, now):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending = self.total - self._reported
        if pending:
            self._reported = self.total
            self._last = now
            self.report(pending)

    def flush(self):
        """
        Report whatever is pending now, and cancel the timer.
        """
        self._emit(self.clock.seconds())
