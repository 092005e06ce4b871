# -*- test-case-name: tests.unit.test_router,tests.unit.test_replytimes -*-
"""
The reply table of a stream out end: which reply handler a reply frame
belongs to, by connection and frame id. Time comes in as a C{seconds}
callable.
"""

from bisect import bisect_left

from uhppoted_tunnel.core.counts import unpack_serial


#: A reply handler is forgotten after this long without a reply.
REPLY_IDLE = 15.0

#: Reply handlers kept at most by one out end (C{--max-pending-replies}):
#: an unanswered request's handler lives L{REPLY_IDLE} seconds, so a flood
#: of requests nobody answers would otherwise grow without bound.
MAX_PENDING_REPLIES = 65536


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

    :ivar handlers: C{(connection, frame id) -> [reply, last use, once,
        start]}; its owner reads its length against C{limit} before it
        sends.
    :ivar times: a L{uhppoted_tunnel.core.replytimes.ReplyTimes} while
        something reads the telemetry: each reply is timed from its
        request's C{start} as it is dispatched, else C{None}.
    """

    __slots__ = ("handlers", "_seconds", "idle", "limit", "times")

    def __init__(self, seconds, idle=REPLY_IDLE, limit=MAX_PENDING_REPLIES):
        """
        :param seconds: a callable giving the time.
        :param idle: seconds a handler lives after its last use.
        :param limit: handlers kept at most (the owner drops a request
            wanting a reply while C{len(handlers)} is at it).
        """
        self.handlers = {}
        self._seconds = seconds
        self.idle = idle
        self.limit = limit
        self.times = None

    def __len__(self):
        return len(self.handlers)

    def add(self, connection, frame_id, reply, once=False, start=None):
        """
        Register C{reply} for replies to C{frame_id} arriving on
        C{connection}. (L{uhppoted_tunnel.core.relays.RequestSender.send}
        writes this out.)

        :param once: forget the handler after its first reply.
        :param start: when the request was sent, if not now: what its
            replies are timed from.
        """
        now = self._seconds()
        self.handlers[(connection, frame_id)] = [reply, now, once, now if start is None else start]

    def dispatch(self, connection, frame_id, payload):
        """
        Deliver a reply to its handler.

        :return: True if a handler took it.
        """
        key = (connection, frame_id)
        entry = self.handlers.get(key)
        if entry is None:
            return False
        if entry[2]:
            del self.handlers[key]
        else:
            entry[1] = self._seconds()
        times = self.times
        if times is not None:
            # times.replied written out, a frame fewer: every reply's path
            now = times.seconds()
            elapsed = now - entry[3]
            times.counts[bisect_left(times.bounds, elapsed)] += 1
            times.latency.sum += elapsed
            if len(payload) >= 8:
                serial = unpack_serial(payload, 4)[0]
                known = times.seen.get(serial)
                if known is not None:
                    known[1] = known[3] = now
                elif serial:
                    times.controllers.reply(serial, now)
        entry[0](payload)
        return True

    def discard(self, connection):
        """
        Forget every handler of a closed connection.
        """
        for key in [key for key in self.handlers if key[0] is connection]:
            del self.handlers[key]

    def sweep(self):
        """
        Forget handlers idle for longer than C{idle}.

        :return: the number forgotten.
        """
        cutoff = self._seconds() - self.idle
        stale = [key for key, entry in self.handlers.items() if entry[1] < cutoff]
        for key in stale:
            del self.handlers[key]
        return len(stale)
