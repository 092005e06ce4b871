# -*- test-case-name: tests.unit.test_nats -*-
"""
What a NATS message of a request tunnel carries: one or more frames back
to back in the stream wire format (L{uhppoted_tunnel.core.frames})::

    [length: u16 big-endian][id: u32 big-endian][payload: length bytes] ...

Frames published in one turn of the NATS loop on the same subject with
the same reply subject travel as one message (L{Batches}), so that a
burst costs the client, the server and the far end one message, not one
a frame. L{decode} takes a message apart, refusing the whole message if
any part of it is not a frame of this tunnel. Pure: no nats-py, no
reactor.
"""

from uhppoted_tunnel.core.counts import EMPTY, TOO_LONG
from uhppoted_tunnel.core.frames import HEADER, HEADER_SIZE
from uhppoted_tunnel.transports.nats.subjects import BAD_FRAME

#: bytes past which a batch is published and a new one begun (well under
#: nats-server's default max_payload of 1 MiB)
MAX_BATCH = 64 * 1024


class BadBatch(Exception):
    """
    A message that is not frames of this tunnel.

    :ivar reason: the metrics' reason: L{TOO_LONG}, L{EMPTY} or
        L{BAD_FRAME}.
    """

    def __init__(self, reason, why):
        Exception.__init__(self, why)
        self.reason = reason


def decode(data, max_payload):
    """
    :return: the C{[(frame_id, payload)]} of a message, in order.
    :raise BadBatch: if the message is empty, ends inside a frame, holds
        an empty frame, a frame of id 0 or one over C{max_payload}.
    """
    if not data:
        raise BadBatch(EMPTY, "an empty message")
    frames = []
    offset = 0
    end = len(data)
    unpack = HEADER.unpack_from
    while offset < end:
        if end - offset < HEADER_SIZE:
            raise BadBatch(BAD_FRAME, "{} byte(s) that are not a frame".format(end - offset))
        length, frame_id = unpack(data, offset)
        if length > max_payload:
            raise BadBatch(TOO_LONG, "a frame of {} bytes (--max-payload {})".format(length, max_payload))
        if not length:
            raise BadBatch(EMPTY, "an empty frame")
        if not frame_id:
            raise BadBatch(BAD_FRAME, "a frame of id 0")
        stop = offset + HEADER_SIZE + length
        if stop > end:
            raise BadBatch(BAD_FRAME, "a frame of {} bytes cut short".format(length))
        frames.append((frame_id, data[offset + HEADER_SIZE : stop]))
        offset = stop
    return frames


class Batches:
    """
    The frames of one turn, joined by subject and reply subject: L{add}
    each, then L{take} the messages to publish, in the order each
    subject's first frame came (a subject's frames keep their order).
    """

    def __init__(self, limit=MAX_BATCH):
        self.limit = limit
        self._groups = {}

    def __bool__(self):
        return bool(self._groups)

    def add(self, subject, reply, frame):
        """
        :param frame: one encoded frame.
        :return: C{(subject, reply, data, frames)} to publish now if this
            filled a batch, else C{None}.
        """
        key = (subject, reply)
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = [len(frame), frame]
            return None
        group[0] += len(frame)
        group.append(frame)
        if group[0] < self.limit:
            return None
        del self._groups[key]
        return subject, reply, b"".join(group[1:]), len(group) - 1

    def take(self):
        """
        :return: C{[(subject, reply, data, frames)]}, every batch begun;
            none are left.
        """
        groups, self._groups = self._groups, {}
        return [(subject, reply, group[1] if len(group) == 2 else b"".join(group[1:]), len(group) - 1)
                for (subject, reply), group in groups.items()]
