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

The files (C{<event-spool>.events}, C{<event-spool>.seen}) hold card
numbers: they are created with mode 0600, opened with C{O_NOFOLLOW}, and
rewritten atomically (a new file written and fsynced, then renamed over the
old one). A damaged file is reported with what was kept and what was
discarded, and a copy of it kept beside it as C{<file>.damaged}; it is
never deleted in silence.
"""

import errno
import hashlib
import math
import os
import stat
import struct
import tempfile
from collections import OrderedDict

from twisted.logger import Logger

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

#: A C{.seen} file: this header, then (session, frame id) records.
_SEEN_HEADER = b"UHTSEEN2"
_SEEN = struct.Struct("<16sI")
#: A C{.events} file: this header and the session, then (time received,
#: frame id, length, payload) records. A file without the header is a
#: round-1 spool: (time received, length, payload) records.
_SPOOL_HEADER = b"UHTEVTS2"
_SPOOLED_V1 = struct.Struct("!dH")
_SPOOLED = struct.Struct("!dIH")


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

#: The mode of every file written here.
PRIVATE = 0o600

#: The state folder of a tunnel run by root (when systemd gives none).
SYSTEM_STATE = "/var/lib/uhppoted-tunnel"

_log = Logger(namespace="uhppoted_tunnel.core.events")


class StorageError(Exception):
    """
    Events that could not be kept on disk; C{str()} is one line.

    :ivar lost: how many events are lost with the write.
    :ivar path: the file that could not be written.
    :ivar reason: why, e.g. C{"Permission denied"}.
    """

    def __init__(self, path, reason, lost=0):
        Exception.__init__(self, path, reason, lost)
        self.path = path
        self.reason = reason
        self.lost = lost

    def __str__(self):
        return "could not keep {} undelivered event(s) in {}: {}".format(self.lost, self.path, self.reason)


def state_directory(environ=None, uid=None):
    """
    The folder for a tunnel's state when C{--event-spool} is not given:
    C{$STATE_DIRECTORY} under systemd (its first entry), C{/var/lib/
    uhppoted-tunnel} for root, else C{$XDG_STATE_HOME/uhppoted-tunnel}
    (C{~/.local/state/uhppoted-tunnel} without it).

    :param environ: the environment, by default C{os.environ}.
    :param uid: the effective user id, by default the process's.
    """
    environ = os.environ if environ is None else environ
    uid = os.geteuid() if uid is None else uid
    systemd = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if systemd:
        return systemd
    if uid == 0:
        return SYSTEM_STATE
    base = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "uhppoted-tunnel")


def default_spool(in_spec, out_spec, folder):
    """
    The default C{--event-spool} prefix of a tunnel.

    :return: C{<folder>/events-<sha1(in + out)>}.
    """
    return os.path.join(folder, "events-" + hashlib.sha1((in_spec + out_spec).encode()).hexdigest())


def check_spool(prefix, create=False):
    """
    Check, before anything listens, that the spool files can be written:
    the folder exists (with C{create}, it is made, mode 0700), a file can
    be created in it, and neither spool file is a symbolic link or
    something other than a file this process can read and write.

    :param prefix: the C{--event-spool} path prefix.
    :param create: make the folder if it is missing.
    :raise ValueError: a one-line reason.
    """
    folder = os.path.dirname(os.path.abspath(prefix))
    if create:
        try:
            os.makedirs(folder, mode=0o700, exist_ok=True)
        except OSError as e:
            raise ValueError("cannot create the folder {}: {}".format(folder, e.strerror or e)) from None
    if not os.path.isdir(folder):
        raise ValueError("{} is not a folder".format(folder))
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".uhppoted-tunnel-", suffix=".probe")
    except OSError as e:
        raise ValueError("cannot write in {}: {}".format(folder, e.strerror or e)) from None
    os.close(fd)
    os.unlink(probe)
    for path in (prefix + ".events", prefix + ".seen"):
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            continue
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise ValueError("{} is a symbolic link: refusing to use it".format(path)) from None
            raise ValueError("cannot use {}: {}".format(path, e.strerror or e)) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise ValueError("{} is not a regular file".format(path))
        finally:
            os.close(fd)


def _open_private(path, flags):
    """
    Open a file with C{O_NOFOLLOW}, creating it with mode 0600; one found
    with a wider mode (a round-1 file) is narrowed to 0600.

    :return: the file descriptor.
    """
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, PRIVATE)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise OSError(errno.EINVAL, "not a regular file", path)
        if status.st_mode & 0o077:
            os.fchmod(fd, PRIVATE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _read_private(path):
    """
    The contents of a file, not following a symbolic link.

    :raise FileNotFoundError: when there is none.
    :raise OSError: for a link (C{ELOOP}) or any other failure.
    """
    fd = _open_private(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        return f.read()


def write_atomically(path, data):
    """
    Replace a file's contents at once: write a new file (mode 0600, a name
    no one can guess, created exclusively) beside it, fsync it, rename it
    over the old one and fsync the folder. A crash leaves the old file or
    the new one, never a mix; a link at C{path} is replaced, not followed.

    :raise OSError: when any step fails (the new file is then removed).
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    try:
        folder_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(folder_fd)
    except OSError:
        pass
    finally:
        os.close(folder_fd)


def _keep_damaged(path, data):
    """
    Keep a copy of a damaged file beside it, as C{<path>.damaged}.

    :return: the copy's path, or a reason it could not be written.
    """
    aside = path + ".damaged"
    try:
        write_atomically(aside, data)
    except OSError as e:
        return "{} (could not keep a copy: {})".format(path, e.strerror or e)
    return aside


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
    """

    log = Logger()
    log_tag = "EVENTS"

    def __init__(self, size=DEFAULT_WINDOW, path=None):
        """
        :param size: how many pairs to remember.
        :param path: the file to keep them in, or C{None}.
        """
        self.size = size
        self.path = path
        self._keys = OrderedDict()
        self._file = None
        self._records = 0
        if path is not None:
            self._load()
            self._open()

    def _open(self):
        new = not os.path.exists(self.path)
        self._file = os.fdopen(_open_private(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab", buffering=0)
        if new or os.fstat(self._file.fileno()).st_size == 0:
            self._file.write(_SEEN_HEADER)

    def _load(self):
        try:
            data = _read_private(self.path)
        except FileNotFoundError:
            return
        if not data:
            return
        if not data.startswith(_SEEN_HEADER):
            aside = self.path + ".legacy"
            try:
                os.replace(self.path, aside)
            except OSError as e:
                aside = "{} (could not be renamed: {})".format(self.path, e.strerror or e)
            self.log.warn("{path} was written by an earlier version (keyed by controller and event index): not "
                          "used, kept as {aside}", path=self.path, aside=aside)
            return
        body = len(data) - len(_SEEN_HEADER)
        whole = body - body % _SEEN.size
        first = len(_SEEN_HEADER)
        start = first + max(0, whole - self.size * _SEEN.size)
        bad = 0
        for offset in range(start, first + whole, _SEEN.size):
            key = _SEEN.unpack_from(data, offset)
            if key[1] == 0:
                bad += 1
            else:
                self._remember(key)
        self._records = whole // _SEEN.size
        torn = body - whole
        if bad or torn:
            self.log.warn("{path} was damaged: kept {kept} forwarded event(s), discarded {bad} invalid record(s) "
                          "and {torn} trailing byte(s); the damaged file is kept as {aside}", path=self.path,
                          kept=len(self._keys), bad=bad, torn=torn, aside=_keep_damaged(self.path, data))
        if self._records > 2 * self.size or bad or torn:
            self._rewrite()

    def _remember(self, key):
        keys = self._keys
        keys[key] = None
        keys.move_to_end(key)
        while len(keys) > self.size:
            keys.popitem(last=False)

    def _rewrite(self):
        write_atomically(self.path, _SEEN_HEADER + b"".join(_SEEN.pack(*key) for key in self._keys))
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
        if self._file is not None:
            self._file.write(_SEEN.pack(*key))
            self._records += 1
            if self._records > 2 * self.size:
                self._rewrite()

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None


class EventBuffer:
    """
    The sending half's events not yet acknowledged, in order (ids rise with
    each event added).

    It holds at most C{limit} events and none older than C{max_age}
    seconds; past either limit the oldest go first, and are counted in
    C{lost}. Every operation on the path of an event (add, expire, send,
    acknowledge) costs in proportion to the events it touches, never to
    the events held.
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
        self.lost = 0

    def __len__(self):
        return len(self._entries)

    def add(self, frame_id, payload, stamp=None):
        """
        Hold an event.

        :return: how many older events were dropped to make room.
        """
        entries = self._entries
        entries[frame_id] = (self._seconds() if stamp is None else stamp, payload)
        dropped = 0
        while len(entries) > self.limit:
            entries.popitem(last=False)
            dropped += 1
        self.lost += dropped
        return dropped + self.expire()

    def expire(self):
        """
        Drop events older than C{max_age}.

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
            dropped += 1
        self.lost += dropped
        return dropped

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

        :return: True if it was held.
        """
        return self._entries.pop(frame_id, None) is not None

    def spool(self, path, session=None):
        """
        Write the events held, with their frame ids and the sending half's
        session, to a file (atomically, mode 0600), to be loaded by the
        next run, which sends them again under the same ids.

        :param session: the sending half's session (a new one if C{None}).
        :raise StorageError: when the file cannot be written, saying how
            many events are lost with it.
        """
        data = _SPOOL_HEADER + (session or new_session()) + b"".join(
            _SPOOLED.pack(stamp, frame_id, len(payload)) + payload
            for frame_id, (stamp, payload) in self._entries.items())
        try:
            write_atomically(path, data)
        except OSError as e:
            raise StorageError(path, e.strerror or str(e), len(self._entries)) from e

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
        try:
            data = _read_private(path)
        except FileNotFoundError:
            return None, []
        except OSError as e:
            reason = "a symbolic link" if e.errno == errno.ELOOP else e.strerror or str(e)
            cls.log.error("could not read the undelivered events in {path}: {reason}; left as it is", path=path,
                          reason=reason)
            return None, []
        events = []
        size = len(data)
        if data.startswith(_SPOOL_HEADER) and size >= len(_SPOOL_HEADER) + SESSION_SIZE:
            session = data[len(_SPOOL_HEADER):len(_SPOOL_HEADER) + SESSION_SIZE]
            offset = len(_SPOOL_HEADER) + SESSION_SIZE
            record = _SPOOLED
        else:
            session, offset, record = None, 0, _SPOOLED_V1
        while offset + record.size <= size:
            if record is _SPOOLED:
                stamp, frame_id, length = record.unpack_from(data, offset)
            else:
                (stamp, length), frame_id = record.unpack_from(data, offset), None
            if (length == 0 or frame_id == 0 or not math.isfinite(stamp) or stamp < 0
                    or offset + record.size + length > size):
                break
            offset += record.size
            events.append((frame_id, stamp, data[offset : offset + length]))
            offset += length
        if offset < size:
            aside = path + ".damaged"
            try:
                os.replace(path, aside)
            except OSError as e:
                aside = "{} (could not be renamed: {})".format(path, e.strerror or e)
            cls.log.warn("{path} was damaged: kept the {kept} undelivered event(s) before the damage, discarded the "
                         "last {discarded} byte(s); the damaged file is kept as {aside}", path=path, kept=len(events),
                         discarded=size - offset, aside=aside)
        else:
            os.remove(path)
        return session, events
