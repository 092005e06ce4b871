# -*- test-case-name: tests.unit.test_zmqbatch -*-
"""
The frames one reactor turn sends to one ZeroMQ peer, sent as one message
at the turn's end (L{TurnBatch}), in the wire format of
L{uhppoted_tunnel.transports.zmq.wire}.

libzmq hands every message to its I/O thread, which wakes up for it: one
message a frame cost a thread hand-off (a context switch) a frame. A
burst of frames for one peer in one turn (16 clients' requests read in
one go, their replies) costs one hand-off instead. The turn's end is the
reactor's own where it has one (L{turn_end}), else a C{callLater(0)}.

A frame is refused, and its sender told at once, when the peer's queue
is at its high-water mark: whether the socket can take a message is
decided when the turn's first frame comes (C{ZMQ_EVENTS} says
C{POLLOUT}), and nothing else is sent to the peer before the turn's end,
so the message sent then is taken. A message is bounded in bytes (the
longest frame, C{--max-payload} + 6, the receiver's C{ZMQ_MAXMSGSIZE})
and in frames (L{MAX_FRAMES}); a frame that would go past either sends
what is waiting at once (it was given its room) and begins a new
message, for which the socket is asked again.
"""

from uhppoted_tunnel.link.writes import turn_end

#: Frames in one message at most.
MAX_FRAMES = 64


class TurnBatch:
    """
    The frames waiting for the end of the turn, for one link.

    :ivar pending: the encoded frames waiting (a list), or C{None} when no
        flush is due.
    """

    __slots__ = ("link", "limit", "dropped", "pending", "size", "_at_turn_end")

    def __init__(self, link, limit, dropped):
        """
        :param link: the link's transport: C{writable()} (whether the
            socket takes a message now), C{sendMessage(message)} (C{False}
            if not queued) and C{clock} (an C{IReactorTime}).
        :param limit: the bytes of a message at most (the link's
            connection sets it, to the shorter of either end's longest
            frame, when a turn's first frame comes).
        :param dropped: called with the number of frames of a message the
            socket refused after all (the link went away, or a ROUTER's
            other peer said C{POLLOUT}).
        """
        self.link = link
        self.limit = limit
        self.dropped = dropped
        self.pending = None
        self.size = 0
        self._at_turn_end = turn_end(link.clock)

    def add(self, frame):
        """
        One encoded frame, for the end of the turn.

        :return: C{False} if the peer's queue is full: the frame is dropped.
        """
        pending = self.pending
        if pending:
            size = self.size + len(frame)
            if size <= self.limit and len(pending) < MAX_FRAMES:
                pending.append(frame)
                self.size = size
                return True
            self.send(pending)
            self.pending = pending = []
        if not self.link.writable():
            return False
        if pending is None:
            self._at_turn_end(self.flush)
        self.pending = [frame]
        self.size = len(frame)
        return True

    def flush(self):
        """
        Send what waits (the end of the turn, or before the link is
        closed).
        """
        pending = self.pending
        self.pending = None
        if pending:
            self.send(pending)

    def discard(self):
        """
        Forget what waits (the link is gone).
        """
        if self.pending:
            self.pending = []

    def send(self, frames):
        if not self.link.sendMessage(frames[0] if len(frames) == 1 else b"".join(frames)):
            self.dropped(len(frames))
