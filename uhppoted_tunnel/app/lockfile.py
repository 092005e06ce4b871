# -*- test-case-name: tests.unit.test_lockfile -*-
"""
A lockfile that allows one tunnel per C{--in} and C{--out} pair.

The Go tunnel refuses to start while the file exists, so a crash leaves it
refusing until someone deletes the file.  Here the file is only a place for
an advisory C{flock}: the kernel drops the lock when its holder dies, so a
leftover file is simply taken over.

The file is never in a world-writable folder unless nothing better exists
(L{default_directory}), and is opened with C{O_NOFOLLOW}: a symbolic link,
or anything but a regular file this user owns, planted at its path is
refused, and what it points to is never written.
"""

import errno
import fcntl
import hashlib
import os
import stat
import tempfile


class LockfileError(Exception):
    """
    The lockfile is held by another process or cannot be used; the message
    is one line.
    """


#: The folder for root's lockfiles when systemd gives none.
ROOT_DIRECTORY = "/run/uhppoted"


def private_temporary_directory(euid=None):
    """
    The last resort: a folder of this user's own (mode 0700) in the
    system's temporary folder, C{<tmp>/uhppoted-tunnel-<uid>}.
    """
    euid = os.geteuid() if euid is None else euid
    return os.path.join(tempfile.gettempdir(), "uhppoted-tunnel-%d" % (euid,))


def default_directory(environ=None, euid=None):
    """
    Where lockfiles go by default, never a world-writable folder:
    C{$RUNTIME_DIRECTORY} (systemd's C{RuntimeDirectory=}), else
    L{ROOT_DIRECTORY} for root, else C{$XDG_RUNTIME_DIR}, else
    L{private_temporary_directory}.

    :param environ: the environment (default C{os.environ}).
    :param euid: the effective user id (default this process's).
    """
    environ = os.environ if environ is None else environ
    euid = os.geteuid() if euid is None else euid
    runtime = environ.get("RUNTIME_DIRECTORY", "").split(":")[0]
    if os.path.isabs(runtime):
        return runtime
    if euid == 0:
        return ROOT_DIRECTORY
    xdg = environ.get("XDG_RUNTIME_DIR", "")
    if os.path.isabs(xdg):
        return xdg
    return private_temporary_directory(euid)


def default_path(in_spec, out_spec, tmpdir=None):
    """
    The Go tunnel's lockfile name for a pair of connectors.

    :param in_spec: the C{--in} connector as given.
    :param out_spec: the C{--out} connector as given.
    :param tmpdir: the directory, by default L{default_directory} (Go uses
        the system's temporary folder, where anyone may plant a link).
    :return: C{<tmpdir>/uhppoted-tunnel-<sha1(in + out)>.pid}.
    """
    digest = hashlib.sha1((in_spec + out_spec).encode()).hexdigest()
    return os.path.join(tmpdir or default_directory(),
                        "uhppoted-tunnel-" + digest + ".pid")


def _prepare_directory(directory):
    """
    Create a missing lockfile folder (mode 0700), and check that the
    per-user temporary folder is this user's own and private.

    :raise LockfileError: if it cannot be used.
    """
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    except FileNotFoundError:
        return  # its parent is missing: opening the lockfile says so
    except OSError as e:
        raise LockfileError("lockfile folder %s: %s" % (directory, e.strerror)) from None
    if os.path.abspath(directory) != private_temporary_directory():
        return
    info = os.lstat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise LockfileError("lockfile folder %s is not a folder (a link?): refusing to use it" % (directory,))
    if info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise LockfileError("lockfile folder %s is not private to this user (owner %d, mode %o): refusing to use it"
                            % (directory, info.st_uid, stat.S_IMODE(info.st_mode)))


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
        _prepare_directory(os.path.dirname(os.path.abspath(self.path)))
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK,
                             0o644)
            except OSError as e:
                if e.errno == errno.ELOOP:
                    raise LockfileError("lockfile %s is a symbolic link: refusing to follow it (remove it, or "
                                        "choose another --lockfile)" % (self.path,)) from None
                raise LockfileError("lockfile %s: %s" % (self.path, e.strerror)) from None
            self._check(fd)
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

    def _check(self, fd):
        """
        Refuse anything but a regular file of this user's with one link
        (a hard link planted in a shared folder would have more), before
        anything is written.
        """
        info = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(info.st_mode):
            problem = "is not a regular file"
        elif info.st_uid != os.geteuid():
            problem = "belongs to user %d" % (info.st_uid,)
        elif info.st_nlink > 1:
            problem = "has %d links" % (info.st_nlink,)
        if problem is not None:
            os.close(fd)
            raise LockfileError("lockfile %s %s: refusing to use it" % (self.path, problem))

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
