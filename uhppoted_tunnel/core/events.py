# -*- test-case-name: tests.unit.test_events -*-
"""
Event tunnels that lose nothing: the sending half's buffer and the
sessions and frames both halves use (the receiving half's memory of what
it has forwarded is L{uhppoted_tunnel.core.seenevents}).

Controllers push status events (64 bytes, function 0x20, start byte 0x17,
or 0x19 from v6.62 firmware) with the controller's serial at bytes 4..7
and a rising event index at bytes 8..11, both little-endian.

On a stream, the receiving half acknowledges each event frame with an
empty frame carrying the same id (C{[00 00][id]}). The Go tunnel's event
senders read and discard whatever comes back, so the acknowledgement is
harmless to them; a Python sender whose peer never acknowledges anything
(a Go receiver) relays without acknowledgements, as the Go tunnel does.

Nothing here touches a socket or the reactor: time comes in as a callable.

The files (C{<event-spool>.events}, C{<event-spool>.seen}): where they
live, how they are written and read, are L{uhppoted_tunnel.core.eventfiles}.
"""

import os
from collections import OrderedDict

from twisted.logger import Logger

from uhppoted_tunnel.core.eventfiles import load_spool, write_spool

#: The sending half holds at most this many events while its link is down.
DEFAULT_BUFFER = 10000
#: ... and none older than this (seconds).
DEFAULT_BUFFER_AGE = 24 * 3600.0
#: The receiving half remembers this many (session, frame id) pairs.
DEFAULT_WINDOW = 10000

#: The first frame (id 0) a sending half sends on each connection names
#: its session: this, then the session's 16 random bytes.
SESSION_MAGIC = b"uhppoted-tunnel event session\n"
SESSION_SIZE = 16
SESSION_ID = 0


def new_session():
    """
    A new session id for a sending half: 16 random bytes, which nobody
    else can guess.
    """
    return os.urandom(SESSION_SIZE)


def session_frame(session):
    """
    The payload of the frame that names a sending half's session.
    """
    return SESSION_MAGIC + session


def parse_session(payload):
    """
    :return: the session a frame names, or C{None} if it names none.
    """
    if len(payload) == len(SESSION_MAGIC) + SESSION_SIZE and payload.startswith(SESSION_MAGIC):
        return payload[len(SESSION_MAGIC):]
    return None


class EventBuffer:
    """
    The sending half's events not yet acknowledged, in order (ids rise with
    each event added).

    It holds at most C{limit} events and none older than C{max_age}
    seconds; past either limit the oldest go first. One never sent to a
    peer is lost, and counted in C{lost}; one already sent (its id at or
    below what the caller says was sent) is on its way and may yet be
    acknowledged: its id is kept (at most C{limit} of them) in
    C{unconfirmed}, and an acknowledgement of it counts it delivered
    (C{late}) rather than lost. Those never acknowledged are counted lost
    by L{forgetUnconfirmed} (when no peer is left to acknowledge them) or
    when more than C{limit} wait. Every operation on the path of an event
    (add, expire, send, acknowledge) costs in proportion to the events it
    touches, never to the events held.
    """

    log = Logger()
    log_tag = "EVENTS"

    def __init__(self, seconds, limit=DEFAULT_BUFFER, max_age=DEFAULT_BUFFER_AGE):
        """
        :param seconds: a callable giving the time.
        :param limit: the most events held.
        :param max_age: the oldest event held, in seconds.
        """
        self._seconds = seconds
        self.limit = limit
        self.max_age = max_age
        #: frame id -> (time received, payload), oldest first
        self._entries = OrderedDict()
        #: ids dropped after they were sent, not yet acknowledged
        self.unconfirmed = OrderedDict()
        self.lost = 0
        #: events dropped after they were sent and acknowledged later
        self.late = 0

    def __len__(self):
        return len(self._entries)

    def _drop(self, frame_id, sent):
        if frame_id <= sent:
            unconfirmed = self.unconfirmed
            unconfirmed[frame_id] = None
            if len(unconfirmed) > self.limit:
                unconfirmed.popitem(last=False)
                self.lost += 1
        else:
            self.lost += 1

    def add(self, frame_id, payload, stamp=None, sent=0):
        """
        Hold an event.

        :param sent: the highest id sent to a peer.
        :return: how many older events were dropped to make room.
        """
        entries = self._entries
        entries[frame_id] = (self._seconds() if stamp is None else stamp, payload)
        dropped = 0
        while len(entries) > self.limit:
            self._drop(entries.popitem(last=False)[0], sent)
            dropped += 1
        return dropped + self.expire(sent)

    def expire(self, sent=0):
        """
        Drop events older than C{max_age}.

        :param sent: the highest id sent to a peer.
        :return: how many were dropped.
        """
        cutoff = self._seconds() - self.max_age
        entries = self._entries
        dropped = 0
        while entries:
            oldest = next(iter(entries))
            if entries[oldest][0] >= cutoff:
                break
            del entries[oldest]
            self._drop(oldest, sent)
            dropped += 1
        return dropped

    def forgetUnconfirmed(self):
        """
        No peer is left to acknowledge the events dropped after they were
        sent: count them lost (they may have arrived; nothing says so).

        :return: how many.
        """
        count = len(self.unconfirmed)
        self.unconfirmed.clear()
        self.lost += count
        return count

    @property
    def last(self):
        """
        The id of the newest event held, or 0.
        """
        return next(reversed(self._entries), 0)

    def after(self, frame_id):
        """
        The events held with an id above C{frame_id}, oldest first.

        :return: a list of C{(frame_id, payload)}.
        """
        entries = self._entries
        if not entries or frame_id < next(iter(entries)):
            return [(key, entry[1]) for key, entry in entries.items()]
        found = []
        for key in reversed(entries):
            if key <= frame_id:
                break
            found.append((key, entries[key][1]))
        found.reverse()
        return found

    def acknowledge(self, frame_id):
        """
        Forget an event a peer has acknowledged.

        :return: True if it was held, or dropped after it was sent (it
            is delivered all the same).
        """
        if self._entries.pop(frame_id, None) is not None:
            return True
        if self.unconfirmed.pop(frame_id, False) is None:
            self.late += 1
            return True
        return False

    def spool(self, path, session=None):
        """
        Write the events held, with their frame ids and the sending half's
        session, to a file (atomically, mode 0600), to be loaded by the
        next run, which sends them again under the same ids.

        :param session: the sending half's session (a new one if C{None}).
        :raise StorageError: when the file cannot be written, saying how
            many events are lost with it.
        """
        write_spool(path, session or new_session(), self._entries)

    @classmethod
    def unspool(cls, path):
        """
        Read and remove a spool file: see L{load}.

        :return: a list of C{(time received, payload)}, oldest first.
        """
        return [(stamp, payload) for _, stamp, payload in cls.load(path)[1]]

    @classmethod
    def load(cls, path):
        """
        Read and remove a spool file.

        A damaged file (cut short, or with a record no spool can hold) gives
        the events before the damage; what follows is reported, and the file
        is kept as C{<path>.damaged} rather than removed. A file that cannot
        be read (a symbolic link, no permission) is reported and left alone.

        :return: C{(session, events)}: the session that wrote it (C{None} for
            no file, or a round-1 file), and a list of C{(frame id, time
            received, payload)}, oldest first (the frame id C{None} in a
            round-1 file).
        """
        return load_spool(path, cls.log, SESSION_SIZE)
