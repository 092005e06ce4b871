# -*- test-case-name: tests.unit.test_events -*-
"""
The files of event tunnels that lose nothing: where they live (the state
folder, the default spool), how they are opened and written (mode 0600,
C{O_NOFOLLOW}, atomically), and their formats: C{<event-spool>.events},
the events a sending half had not delivered, and C{<event-spool>.seen},
what a receiving half has forwarded.

The files hold card numbers: they are created with mode 0600, opened with
C{O_NOFOLLOW}, and rewritten atomically (a new file written and fsynced,
then renamed over the old one). A damaged file is reported with what was
kept and what was discarded, and a copy of it kept beside it as
C{<file>.damaged}; it is never deleted in silence.

The logic that uses them, in memory, is L{uhppoted_tunnel.core.events}.
"""

import errno
import hashlib
import math
import os
import stat
import struct
import tempfile

#: A C{.seen} file: this header, then (session, frame id) records.
SEEN_HEADER = b"UHTSEEN2"
SEEN = struct.Struct("<16sI")
#: A C{.events} file: this header and the session, then (time received,
#: frame id, length, payload) records. A file without the header is a
#: round-1 spool: (time received, length, payload) records.
SPOOL_HEADER = b"UHTEVTS2"
SPOOLED_V1 = struct.Struct("!dH")
SPOOLED = struct.Struct("!dIH")

#: The mode of every file written here.
PRIVATE = 0o600

#: The state folder of a tunnel run by root (when systemd gives none).
SYSTEM_STATE = "/var/lib/uhppoted-tunnel"


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


def open_private(path, flags):
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


def read_private(path):
    """
    The contents of a file, not following a symbolic link.

    :raise FileNotFoundError: when there is none.
    :raise OSError: for a link (C{ELOOP}) or any other failure.
    """
    fd = open_private(path, os.O_RDONLY)
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


def keep_damaged(path, data):
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


#: What L{read_seen} returns for a C{.seen} file written by round 1
#: (keyed by controller and event index, without the header).
LEGACY = object()


def set_aside(path, suffix):
    """
    Rename a file that is not used to C{<path><suffix>}.

    :return: the new name, or the old one and why it could not be
        renamed, for a log line.
    """
    aside = path + suffix
    try:
        os.replace(path, aside)
    except OSError as e:
        aside = "{} (could not be renamed: {})".format(path, e.strerror or e)
    return aside


def read_seen(path, size):
    """
    Read a C{.seen} file.

    :param size: how many of the last records to read.
    :return: C{None} when there is no file or it is empty, L{LEGACY} for
        a round-1 file, else C{(keys, records, bad, torn, data)}: the keys
        of the last C{size} whole records that an event can have (frame id
        not 0), oldest first; how many whole records there are; how many
        of the last C{size} were discarded as invalid; the trailing bytes
        of a torn last record; and the file's bytes.
    """
    try:
        data = read_private(path)
    except FileNotFoundError:
        return None
    if not data:
        return None
    if not data.startswith(SEEN_HEADER):
        return LEGACY
    body = len(data) - len(SEEN_HEADER)
    whole = body - body % SEEN.size
    first = len(SEEN_HEADER)
    start = first + max(0, whole - size * SEEN.size)
    bad = 0
    keys = []
    for offset in range(start, first + whole, SEEN.size):
        key = SEEN.unpack_from(data, offset)
        if key[1] == 0:
            bad += 1
        else:
            keys.append(key)
    return keys, whole // SEEN.size, bad, body - whole, data


def open_seen(path):
    """
    Open a C{.seen} file to append to (mode 0600, C{O_NOFOLLOW}), with
    its header written first when it is new or empty.

    :return: the file, unbuffered.
    """
    new = not os.path.exists(path)
    f = os.fdopen(open_private(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab", buffering=0)
    if new or os.fstat(f.fileno()).st_size == 0:
        f.write(SEEN_HEADER)
    return f


def append_seen(f, key):
    """
    Append a C{(session, frame id)} record to a C{.seen} file opened with
    L{open_seen}.

    :raise OSError: when it cannot be written whole (C{ENOSPC} for a
        short write: the disk is full).
    """
    record = SEEN.pack(*key)
    if f.write(record) != len(record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def write_seen(path, keys):
    """
    Write a C{.seen} file afresh (atomically, mode 0600) with these
    C{(session, frame id)} keys.
    """
    write_atomically(path, SEEN_HEADER + b"".join(SEEN.pack(*key) for key in keys))


def write_spool(path, session, entries):
    """
    Write a C{.events} file (atomically, mode 0600).

    :param session: the sending half's session.
    :param entries: C{{frame id: (time received, payload)}}, oldest first.
    :raise StorageError: when the file cannot be written, saying how
        many events are lost with it.
    """
    data = SPOOL_HEADER + session + b"".join(
        SPOOLED.pack(stamp, frame_id, len(payload)) + payload
        for frame_id, (stamp, payload) in entries.items())
    try:
        write_atomically(path, data)
    except OSError as e:
        raise StorageError(path, e.strerror or str(e), len(entries)) from e


def load_spool(path, log, session_size):
    """
    Read and remove a C{.events} file: see
    L{uhppoted_tunnel.core.events.EventBuffer.load}.

    :param log: the logger that reports a file damaged or unreadable.
    :param session_size: the length of a session, in bytes.
    :return: C{(session, events)}.
    """
    try:
        data = read_private(path)
    except FileNotFoundError:
        return None, []
    except OSError as e:
        reason = "a symbolic link" if e.errno == errno.ELOOP else e.strerror or str(e)
        log.error("could not read the undelivered events in {path}: {reason}; left as it is", path=path,
                      reason=reason)
        return None, []
    events = []
    size = len(data)
    if data.startswith(SPOOL_HEADER) and size >= len(SPOOL_HEADER) + session_size:
        session = data[len(SPOOL_HEADER):len(SPOOL_HEADER) + session_size]
        offset = len(SPOOL_HEADER) + session_size
        record = SPOOLED
    else:
        session, offset, record = None, 0, SPOOLED_V1
    while offset + record.size <= size:
        if record is SPOOLED:
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
        aside = set_aside(path, ".damaged")
        log.warn("{path} was damaged: kept the {kept} undelivered event(s) before the damage, discarded the "
                     "last {discarded} byte(s); the damaged file is kept as {aside}", path=path, kept=len(events),
                     discarded=size - offset, aside=aside)
    else:
        os.remove(path)
    return session, events
