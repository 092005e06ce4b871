# -*- test-case-name: tests.unit.test_replytimes -*-
"""
Replies timed where they are matched: what an out end that provides
L{uhppoted_tunnel.interfaces.IReplyTimer} does with each reply while
something reads the telemetry.

Such an end already takes a timestamp when a request goes out (its reply
table's, its deadline queue's) and already finds the request a reply
answers; it hands L{ReplyTimes} that timestamp and the reply, and the
router leaves reply callbacks alone. The alternative, a wrapper the router
puts round every reply callback, costs a C{partial}, a frame and a clock
read per request on top of the timing itself (see C{docs/performance.rst},
"Metrics, the third pass").

The latency is then measured from when the out end sends the request (its
clock read just before the write), not from when the router received it:
the router's rate limits and the out end's look-up of a connection or
socket come in between, a few microseconds in all, which the histogram's
smallest bucket (100 microseconds) does not resolve. A request an out end
holds while it has no peer is timed from when it was held, that is from
its arrival, as before.
"""

from bisect import bisect_left

from uhppoted_tunnel.core.counts import unpack_serial


class ReplyTimes:
    """
    Times replies into a latency histogram and notes the controller of
    each, as L{uhppoted_tunnel.observe.telemetry.Telemetry.replied} does for
    the replies the router wraps. Every reply's path: each method is
    written out, with no call but the clock's, and the usual case of each
    is written out again where the out ends match a reply (a stream end's
    L{uhppoted_tunnel.core.replies.ReplyTable}, C{udp/broadcast}'s unicast
    replies), a frame fewer per reply.

    :ivar seconds: the clock's C{seconds}.
    :ivar bounds: the histogram's bucket bounds.
    :ivar counts: its counts (the L{Latency}'s own list).
    :ivar seen: the controllers by serial (the L{Controllers}' own dict).
    """

    __slots__ = ("latency", "controllers", "seconds", "bounds", "counts", "seen")

    def __init__(self, latency, controllers, seconds):
        """
        :param latency: the L{uhppoted_tunnel.core.counts.Latency} to count
            each reply's time in.
        :param controllers: the L{uhppoted_tunnel.core.counts.Controllers}
            to note each reply's controller in.
        :param seconds: a callable giving the time (an C{IReactorTime}'s
            C{seconds}).
        """
        self.latency = latency
        self.controllers = controllers
        self.seconds = seconds
        self.bounds = latency.bounds
        self.counts = latency.counts
        self.seen = controllers.seen

    def replied(self, start, payload):
        """
        A reply to a request sent at C{start} goes back: time it, and note
        its controller by the serial it carries.

        :return: the time now.
        """
        now = self.seconds()
        elapsed = now - start
        self.counts[bisect_left(self.bounds, elapsed)] += 1
        self.latency.sum += elapsed
        if len(payload) >= 8:
            serial = unpack_serial(payload, 4)[0]
            entry = self.seen.get(serial)
            if entry is not None:
                entry[1] = entry[3] = now
            elif serial:
                self.controllers.reply(serial, now)
        return now

    def replied_from(self, start, serial, address):
        """
        A reply from a controller's C{address} (C{(host, port)}) to a
        request sent at C{start} goes back: time it, and note the
        controller's address and reply in one look-up (the UDP ends parse
        the serial already, to match the reply).

        :param serial: the serial the reply carries, or C{None} or 0 for
            none.
        """
        now = self.seconds()
        elapsed = now - start
        self.counts[bisect_left(self.bounds, elapsed)] += 1
        self.latency.sum += elapsed
        if serial:
            entry = self.seen.get(serial)
            if entry is None or entry[0] != address:
                self.controllers.address(serial, address)
                entry = self.seen[serial]
            entry[1] = entry[3] = now
