# -*- test-case-name: tests.unit.test_router -*-
"""
Request routing: the rate limiter in front of the out end and the reply
table behind a stream out end.

Nothing here sees a transport or the global reactor: time comes in as an
C{IReactorTime}, so every behaviour is tested with C{Clock}.
"""

from functools import partial

from twisted.logger import Logger

#: Go defaults: 1 request per second with a burst of 120.
DEFAULT_RATE = 1.0
DEFAULT_BURST = 120

#: A reply handler is forgotten after this long without a reply.
REPLY_IDLE = 15.0

#: Dropped-request warnings are summarised at most this often.
WARN_INTERVAL = 10.0

#: Senders whose rate the router remembers at most.
MAX_SOURCES = 4096


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

    def take(self, now=None, cost=1.0):
        """
        Take C{cost} tokens (one request; or bytes, when the bucket paces
        a byte stream) if there are as many.

        :param now: the time, if the caller has it already.
        :param cost: the tokens to take, at most C{burst}.
        :return: True if they were taken.
        """
        if now is None:
            now = self._seconds()
        tokens = self._tokens + (now - self._stamp) * self.rate
        self._stamp = now
        if tokens > self.burst:
            tokens = self.burst
        if tokens >= cost:
            self._tokens = tokens - cost
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


class Router:
    """
    Passes requests from the in end to the out end, within the rate limits:
    one for the whole end and, for ends that know who sent a request
    (C{udp/listen}, C{http/}), one for each sender, so that one flooding
    application cannot take the whole end's rate from the others.

    Only requests are charged: replies never pass through here (they go
    straight back through the callback the in end supplied), so the Go
    tunnel's habit of charging replies too, which halves its documented
    rate, does not arise.
    """

    log = Logger()
    log_tag = "ROUTER"

    def __init__(self, clock, rate=DEFAULT_RATE, burst=DEFAULT_BURST, source_rate=None, source_burst=None,
                 max_sources=MAX_SOURCES):
        """
        :param clock: an C{IReactorTime}.
        :param rate: requests per second allowed on average, or C{None} for
            no limit.
        :param burst: requests allowed at once.
        :param source_rate: requests per second allowed to one sender, or
            C{None} for no limit per sender.
        :param source_burst: requests allowed to one sender at once.
        :param max_sources: senders remembered at most (the longest-known
            is forgotten first).
        """
        self.clock = clock
        self.out = None
        self.limiter = None if rate is None else TokenBucket(rate, burst, clock.seconds)
        self.source_rate = source_rate
        self.source_burst = source_burst
        self.max_sources = max_sources
        self.sources = {}
        self.forwarded = 0
        #: the tunnel's L{uhppoted_tunnel.observe.telemetry.Telemetry} while something
        #: reads it: replies are then timed, and events noted
        self.telemetry = None
        self._dropped = Throttle(clock, self._warnDropped)
        self._source_dropped = Throttle(clock, self._warnSourceDropped)
        self._last_source = None

    def request(self, payload, reply, source=None):
        """
        Forward one request to the out end, or drop it when over a rate
        limit.

        :param payload: the packet.
        :param reply: a callable taking each reply packet, or C{None}.
        :param source: who sent it (an IP address), for the limit per
            sender, or C{None}.
        :return: True if forwarded.
        """
        now = None
        if source is not None and self.source_rate is not None:
            # a token bucket per sender, written out: this is every
            # request's path
            now = self.clock.seconds()
            state = self.sources.get(source)
            if state is None:
                if len(self.sources) >= self.max_sources:
                    del self.sources[next(iter(self.sources))]
                state = self.sources[source] = [float(self.source_burst), now]
            tokens = state[0] + (now - state[1]) * self.source_rate
            state[1] = now
            if tokens > self.source_burst:
                tokens = self.source_burst
            if tokens < 1.0:
                state[0] = tokens
                self._last_source = source
                self._source_dropped.count()
                return False
            state[0] = tokens - 1.0
        if self.limiter is not None and not self.limiter.take(now):
            self._dropped.count()
            return False
        self.forwarded += 1
        telemetry = self.telemetry
        if telemetry is not None:
            if reply is not None:
                reply = partial(telemetry.replied, self.clock.seconds() if now is None else now, reply)
            else:
                telemetry.relayed(payload)
        self.out.send(payload, reply)
        return True

    def _warnDropped(self, count):
        self.log.warn("rate limit exceeded: dropped {count} request(s) (limit {rate}/s, burst {burst})",
                      count=count, rate=self.limiter.rate, burst=self.limiter.burst)

    def _warnSourceDropped(self, count):
        self.log.warn("rate limit per sender exceeded: dropped {count} request(s), the last from {source} "
                      "(limit {rate}/s, burst {burst} per sender)", count=count, source=self._last_source,
                      rate=self.source_rate, burst=self.source_burst)

    def stop(self):
        """
        Report any dropped requests not yet reported, and cancel the timers.
        """
        self._dropped.flush()
        self._source_dropped.flush()

    @property
    def source_dropped(self):
        """
        The number of requests dropped by the limit per sender.
        """
        return self._source_dropped.total

    @property
    def dropped(self):
        """
        The number of requests dropped by the rate limit.
        """
        return self._dropped.total


class ReplyTable:
    """
    Reply handlers for requests sent on streams, keyed by connection and id.

    A stream out end numbers its own requests; a reply frame finds its
    handler by the connection it arrived on and its id, so replies can never
    cross between connections even when two peers use the same ids (the Go
    tunnel keeps one process-wide table keyed by id alone). A handler for a
    request answered once (to one controller) goes with its reply; any
    other lives while replies keep coming (a broadcast collects several) and
    is swept after C{idle} seconds without one, as are unanswered ones.
    """

    __slots__ = ("_handlers", "_seconds", "idle")

    def __init__(self, seconds, idle=REPLY_IDLE):
        """
        :param seconds: a callable giving the time.
        :param idle: seconds a handler lives after its last use.
        """
        self._handlers = {}
        self._seconds = seconds
        self.idle = idle

    def __len__(self):
        return len(self._handlers)

    def add(self, connection, frame_id, reply, once=False):
        """
        Register C{reply} for replies to C{frame_id} arriving on
        C{connection}.

        :param once: forget the handler after its first reply.
        """
        self._handlers[(connection, frame_id)] = [reply, self._seconds(), once]

    def dispatch(self, connection, frame_id, payload):
        """
        Deliver a reply to its handler.

        :return: True if a handler took it.
        """
        key = (connection, frame_id)
        entry = self._handlers.get(key)
        if entry is None:
            return False
        if entry[2]:
            del self._handlers[key]
        else:
            entry[1] = self._seconds()
        entry[0](payload)
        return True

    def discard(self, connection):
        """
        Forget every handler of a closed connection.
        """
        for key in [key for key in self._handlers if key[0] is connection]:
            del self._handlers[key]

    def sweep(self):
        """
        Forget handlers idle for longer than C{idle}.

        :return: the number forgotten.
        """
        cutoff = self._seconds() - self.idle
        stale = [key for key, entry in self._handlers.items() if entry[1] < cutoff]
        for key in stale:
            del self._handlers[key]
        return len(stale)
