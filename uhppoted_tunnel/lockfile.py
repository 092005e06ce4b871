# -*- test-case-name: tests.unit.test_lockfile -*-
"""
A lockfile that allows one tunnel per C{--in} and C{--out} pair.

The Go tunnel refuses to start while the file exists, so a crash leaves it
refusing until someone deletes the file.  Here the file is only a place for
an advisory C{flock}: the kernel drops the lock when its holder dies, so a
leftover file is simply taken over.
"""

import errno
import fcntl
import hashlib
import os
import tempfile


class LockfileError(Exception):
    """
    The lockfile is held by another process or cannot be used; the message
    is one line.
    """


def default_path(in_spec, out_spec, tmpdir=None):
    """
    The Go tunnel's lockfile name for a pair of connectors.

    :param in_spec: the C{--in} connector as given.
    :param out_spec: the C{--out} connector as given.
    :param tmpdir: the directory, by default the system's temporary one.
    :return: C{<tmpdir>/uhppoted-tunnel-<sha1(in + out)>.pid}.
    """
    digest = hashlib.sha1((in_spec + out_spec).encode()).hexdigest()
    return os.path.join(tmpdir or tempfile.gettempdir(),
                        "uhppoted-tunnel-" + digest + ".pid")


def _same_file(fd, path):
    try:
        held, named = os.fstat(fd), os.stat(path)
    except FileNotFoundError:
        return False
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


class Lockfile:
    """
    An exclusive C{flock} on a file holding the holder's process id.

    :param path: the lockfile.
    """

    def __init__(self, path):
        self.path = path
        self._fd = None

    def acquire(self):
        """
        Lock the file, creating it if need be, and write this process's id.

        :raise LockfileError: if another process (or another L{Lockfile}) holds
            it, or it cannot be opened.
        """
        if self._fd is not None:
            return
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC,
                             0o644)
            except OSError as e:
                raise LockfileError("lockfile %s: %s" % (self.path, e.strerror))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                holder = self._holder(fd)
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    raise LockfileError("lockfile %s: %s"
                                        % (self.path, e.strerror)) from None
                raise LockfileError(
                    "lockfile %s is held by %s: is another uhppoted-tunnel "
                    "running with the same --in and --out?"
                    % (self.path, holder)) from None
            # The holder may have removed the file between our open and our
            # lock; then we hold a lock nobody else can see, so start again.
            if _same_file(fd, self.path):
                break
            os.close(fd)
        self._fd = fd
        self.write_pid()

    @staticmethod
    def _holder(fd):
        try:
            pid = int(os.pread(fd, 32, 0).decode("ascii").strip())
        except (OSError, ValueError):
            return "another process"
        return "process %d" % (pid,)

    def write_pid(self):
        """
        Write this process's id into the held lockfile again, as after
        C{twistd} forks to become a daemon.
        """
        if self._fd is None:
            raise LockfileError("lockfile %s is not held" % (self.path,))
        data = b"%d\n" % (os.getpid(),)
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self):
        """
        Remove the file, then unlock and close it; calling it again, or
        without L{acquire}, does nothing.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if _same_file(fd, self.path):
                os.unlink(self.path)
        except OSError:
            pass
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
