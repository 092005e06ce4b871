# -*- test-case-name: tests.unit.test_router -*-
"""
Request routing: the rate limiter in front of the out end.

Nothing here sees a transport or the global reactor: time comes in as an
C{IReactorTime}, so every behaviour is tested with C{Clock}.
"""

from functools import partial

from twisted.logger import Logger

from uhppoted_tunnel.core.throttle import Throttle, TokenBucket

#: Go defaults: 1 request per second with a burst of 120.
DEFAULT_RATE = 1.0
DEFAULT_BURST = 120


#: Senders whose rate the router remembers at most.
MAX_SOURCES = 4096


class Router:
    """
    Passes requests from the in end to the out end, within the rate limits:
    one for the whole end and, for ends that know who sent a request
    (C{udp/listen}, C{http/}), one for each sender, so that one flooding
    application cannot take the whole end's rate from the others.

    The per-sender buckets sit inside the end's budget fairly: a sender that
    has spent more than half its own burst (one sending above its rate) is
    I{heavy}, and takes from the end's bucket only what is above a reserve
    of half the end's burst (in whole requests); the reserve is for the senders within their
    share. So a polite application keeps its requests however many
    addresses flood, and the flooders share what it leaves. One dictionary
    look-up and two buckets per request; memory bounded by C{max_sources}.

    Only requests are charged: replies never pass through here (they go
    straight back through the callback the in end supplied), so the Go
    tunnel's habit of charging replies too, which halves its documented
    rate, does not arise.
    """

    log = Logger()
    log_tag = "ROUTER"

    def __init__(self, clock, rate=DEFAULT_RATE, burst=DEFAULT_BURST, source_rate=None, source_burst=None,
                 max_sources=MAX_SOURCES, out=None):
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
        :param out: the out end (an L{uhppoted_tunnel.interfaces.IOutEnd}),
            which it hands each request forwarded.
        """
        self.clock = clock
        self.out = out
        self.limiter = None if rate is None else TokenBucket(rate, burst, clock.seconds)
        #: the end's tokens that heavy senders leave for the others: half
        #: its burst, in whole requests (none for a burst of 1)
        self.reserve = 0.0 if rate is None else float(burst // 2)
        self.source_rate = source_rate
        self.source_burst = source_burst
        self.max_sources = max_sources
        self.sources = {}
        self.forwarded = 0
        #: the tunnel's L{uhppoted_tunnel.observe.telemetry.Telemetry} while something
        #: reads it: replies are then timed, and events noted
        self.telemetry = None
        #: a L{uhppoted_tunnel.core.traffic.TrafficLog} when requests are
        #: logged at info
        self.traffic = None
        self._dropped = Throttle(clock, self._warnDropped)
        self._source_dropped = Throttle(clock, self._warnSourceDropped)
        self._held = Throttle(clock, self._warnHeld)
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
        keep = 0.0
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
            if state[0] < self.source_burst / 2:
                keep = self.reserve
        if self.limiter is not None and not self.limiter.take(now, 1.0, keep):
            if keep:
                self._last_source = source
                self._held.count()
            else:
                self._dropped.count()
            return False
        self.forwarded += 1
        traffic = self.traffic
        if traffic is not None:
            if now is None:
                now = self.clock.seconds()
            if traffic.count >= traffic.lines and now < traffic.end:
                # busy: counted for the summary, not logged (no call)
                traffic.count += 1
            else:
                reply = traffic.request(payload, source, reply, now)
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

    def _warnHeld(self, count):
        self.log.warn("rate limit: dropped {count} request(s) from senders above their own rate, the last from "
                      "{source}, to keep the rest of the end's budget ({rate}/s) for senders within theirs",
                      count=count, source=self._last_source, rate=self.limiter.rate)

    def stop(self):
        """
        Report any dropped requests not yet reported, and cancel the timers.
        """
        self._dropped.flush()
        self._source_dropped.flush()
        if self.traffic is not None:
            self.traffic.stop()
        self._held.flush()

    @property
    def source_dropped(self):
        """
        The number of requests dropped by the limit per sender.
        """
        return self._source_dropped.total

    @property
    def dropped(self):
        """
        The number of requests dropped by the rate limit (the end's, and
        the reserve it keeps from heavy senders).
        """
        return self._dropped.total + self._held.total


