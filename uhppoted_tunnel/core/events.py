# -*- test-case-name: tests.unit.test_events -*-
"""
Event tunnels that lose nothing: the sending half's buffer and the
receiving half's memory of what it has forwarded.

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

from uhppoted_tunnel.core import eventfiles
from uhppoted_tunnel.core.eventfiles import (
    LEGACY,
    keep_damaged,
    load_spool,
    set_aside,
    write_spool,
)

#: The sending half holds at most this many events while its link is down.
DEFAULT_BUFFER = 10000
#: ... and none older than this (seconds).
DEFAULT_BUFFER_AGE = 24 * 3600.0
#: The receiving half remembers this many (session, frame id) pairs.
DEFAULT_WINDOW = 10000
#: While its C{.seen} file cannot be written (a full disk), the receiving
#: half tries to write it again at most this often (seconds).
SEEN_RETRY = 1.0

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


class SeenEvents:
    """
    The (session, frame id) pairs most recently forwarded, so that an
    event resent after a reconnect is not forwarded twice. The session is
    the sending half's own (16 random bytes it names at the start of each
    connection) and the frame id its own number for the event: fields that
    no controller packet, forged or not, can set.

    With a path, every pair is also appended to a file (20 bytes each,
    after an 8-byte header) and read back on start, so the memory survives
    a restart, even a SIGKILL. The file is rewritten when it holds twice
    the window. On loading, a torn last record (a crash while appending)
    and records that no event can have (frame id 0) are discarded and
    reported; the rest are kept. A file from round 1 (keyed by controller
    and event index, without the header) is set aside, reported, and not
    used.

    A file that cannot be written (a full disk, C{ENOSPC}) stops nothing:
    the events go on being forwarded, acknowledged and remembered in
    memory, one ERROR says which file and what to do, and the file is
    written afresh from memory as soon as it can be (tried at most every
    L{SEEN_RETRY} seconds, and at L{close}). Until then only a restart can
    forward twice an event the sending half resends.

    :ivar failing: why the file cannot be written, while it cannot.
    :ivar unrecorded: events forwarded while it could not be written.
    """

    log = Logger()
    log_tag = "EVENTS"

    def __init__(self, size=DEFAULT_WINDOW, path=None, seconds=None, files=eventfiles):
        """
        :param size: how many pairs to remember.
        :param path: the file to keep them in, or C{None}.
        :param seconds: a callable giving the time, to space the attempts
            to write a file that could not be written (without it, every
            event tries).
        :param files: what reads and writes the file (C{open_seen},
            C{append_seen}, C{read_seen}, C{write_seen}): by default
            L{uhppoted_tunnel.core.eventfiles}.
        """
        self.size = size
        self.path = path
        self.files = files
        self._seconds = seconds
        self._keys = OrderedDict()
        self._file = None
        self._records = 0
        self._retry_at = 0.0
        self.failing = None
        self.unrecorded = 0
        if path is not None:
            self._load()
            if self.failing is None:
                self._open()

    def _open(self):
        try:
            self._file = self.files.open_seen(self.path)
        except OSError as e:
            self._cannotWrite(e)

    def _cannotWrite(self, error):
        """
        The file could not be written: close it, say so once, and carry on
        in memory.
        """
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        first = self.failing is None
        self.failing = error.strerror or str(error)
        self._retry_at = (self._seconds() if self._seconds else 0.0) + SEEN_RETRY
        if first:
            self.log.error("could not record forwarded events in {path}: {reason}. Events are still forwarded, "
                           "acknowledged and remembered in memory, and the file is written again as soon as it "
                           "can be; until then a restart may forward twice an event the sending half resends. Free "
                           "space on the disk that holds {path} (or fix its permissions).", path=self.path,
                           reason=self.failing)

    def _retry(self, force=False):
        """
        Write the file afresh from memory, if it is time to try again.
        """
        if not force and self._seconds is not None and self._seconds() < self._retry_at:
            return
        try:
            self.files.write_seen(self.path, self._keys)
            self._file = self.files.open_seen(self.path)
        except OSError as e:
            self._cannotWrite(e)
            return
        self._records = len(self._keys)
        self.failing = None
        self.log.info("{path} can be written again: recorded the {n} event(s) forwarded meanwhile with the rest",
                      path=self.path, n=self.unrecorded)
        self.unrecorded = 0

    def _load(self):
        found = self.files.read_seen(self.path, self.size)
        if found is None:
            return
        if found is LEGACY:
            aside = set_aside(self.path, ".legacy")
            self.log.warn("{path} was written by an earlier version (keyed by controller and event index): not "
                          "used, kept as {aside}", path=self.path, aside=aside)
            return
        keys, self._records, bad, torn, data = found
        for key in keys:
            self._remember(key)
        if bad or torn:
            self.log.warn("{path} was damaged: kept {kept} forwarded event(s), discarded {bad} invalid record(s) "
                          "and {torn} trailing byte(s); the damaged file is kept as {aside}", path=self.path,
                          kept=len(self._keys), bad=bad, torn=torn, aside=keep_damaged(self.path, data))
        if self._records > 2 * self.size or bad or torn:
            self._rewrite()

    def _remember(self, key):
        keys = self._keys
        keys[key] = None
        keys.move_to_end(key)
        while len(keys) > self.size:
            keys.popitem(last=False)

    def _rewrite(self):
        try:
            self.files.write_seen(self.path, self._keys)
        except OSError as e:
            self._cannotWrite(e)
            return
        self._records = len(self._keys)
        if self._file is not None:
            self._file.close()
            self._open()

    def __contains__(self, key):
        return key in self._keys

    def __len__(self):
        return len(self._keys)

    def add(self, key):
        """
        Remember a forwarded event.

        :param key: C{(session, frame id)}.
        """
        self._remember(key)
        if self.path is None:
            return
        if self.failing is not None:
            self.unrecorded += 1
            self._retry()
            return
        try:
            self.files.append_seen(self._file, key)
        except OSError as e:
            self.unrecorded += 1
            self._cannotWrite(e)
            return
        self._records += 1
        if self._records > 2 * self.size:
            self._rewrite()

    def close(self):
        """
        Close the file, after a last attempt to write it if it could not
        be written: C{failing} then says whether it still cannot.
        """
        if self.failing is not None:
            self._retry(force=True)
        if self._file is not None:
            self._file.close()
            self._file = None


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
