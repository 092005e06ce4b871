# -*- test-case-name: tests.unit.test_events,tests.unit.test_diskfull -*-
"""
The receiving half of an event tunnel's memory of what it has forwarded
(L{SeenEvents}), kept in C{<event-spool>.seen} (its format is
L{uhppoted_tunnel.core.eventfiles}), and what it does when that file
cannot be written.
"""

from collections import OrderedDict

from twisted.logger import Logger

from uhppoted_tunnel.core import eventfiles
from uhppoted_tunnel.core.eventfiles import LEGACY, keep_damaged, set_aside
from uhppoted_tunnel.core.events import DEFAULT_WINDOW

#: While its C{.seen} file cannot be written (a full disk), the receiving
#: half tries to write it again at most this often (seconds).
SEEN_RETRY = 1.0


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
