# -*- test-case-name: tests.unit.test_lockfile -*-
"""
Tests for L{uhppoted_tunnel.app.lockfile}: one tunnel per in and out pair.
"""

import hashlib
import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app import lockfile
from uhppoted_tunnel.app.lockfile import Lockfile, LockfileError, default_path


def read(path):
    """
    :param path: a file.
    :return: its contents as text.
    """
    with open(path) as f:
        return f.read()


class DefaultPathTests(SynchronousTestCase):
    """
    L{default_path} names the lockfile as the Go tunnel does.
    """

    def test_go_name(self):
        """
        The name is the SHA-1 of the in and out specs, joined, in the
        temporary directory.
        """
        digest = hashlib.sha1(
            b"udp/listen:0.0.0.0:60000tcp/client:1.2.3.4:12345").hexdigest()
        self.assertEqual(
            default_path("udp/listen:0.0.0.0:60000", "tcp/client:1.2.3.4:12345",
                         "/run/x"),
            "/run/x/uhppoted-tunnel-%s.pid" % (digest,))

    def test_deterministic(self):
        """
        The same pair always gives the same name; another pair another name.
        """
        self.assertEqual(default_path("a", "b"), default_path("a", "b"))
        self.assertNotEqual(default_path("a", "b"), default_path("b", "a"))

    def test_default_directory(self):
        """
        Without a directory, L{lockfile.default_directory} is used (no
        longer the shared temporary folder, as in Go).
        """
        self.assertEqual(os.path.dirname(default_path("a", "b")),
                         lockfile.default_directory())


class DefaultDirectoryTests(SynchronousTestCase):
    """
    L{lockfile.default_directory} keeps lockfiles out of world-writable
    folders.
    """

    def test_systemd(self):
        """
        systemd's C{$RUNTIME_DIRECTORY} comes first (its first entry when
        it lists several), for root and others.
        """
        environ = {"RUNTIME_DIRECTORY": "/run/uhppoted-tunnel:/run/other", "XDG_RUNTIME_DIR": "/run/user/1000"}
        self.assertEqual(lockfile.default_directory(environ, 0), "/run/uhppoted-tunnel")
        self.assertEqual(lockfile.default_directory(environ, 1000), "/run/uhppoted-tunnel")

    def test_root(self):
        """
        Root without systemd uses /run/uhppoted, even with an
        C{$XDG_RUNTIME_DIR}.
        """
        self.assertEqual(lockfile.default_directory({"XDG_RUNTIME_DIR": "/run/user/0"}, 0), "/run/uhppoted")

    def test_user(self):
        """
        Another user uses C{$XDG_RUNTIME_DIR} (an absolute one).
        """
        self.assertEqual(lockfile.default_directory({"XDG_RUNTIME_DIR": "/run/user/1000"}, 1000),
                         "/run/user/1000")

    def test_last_resort(self):
        """
        With neither, a per-user folder in the temporary folder; relative
        paths in the environment are ignored.
        """
        self.assertEqual(lockfile.default_directory({"XDG_RUNTIME_DIR": "relative", "RUNTIME_DIRECTORY": "x"}, 1000),
                         os.path.join(tempfile.gettempdir(), "uhppoted-tunnel-1000"))

    def test_private_folder_created(self):
        """
        Acquiring a lockfile in a missing per-user folder creates it with
        mode 0700.
        """
        tmp = os.path.abspath(self.mktemp())
        os.mkdir(tmp)
        self.patch(tempfile, "tempdir", tmp)
        folder = lockfile.private_temporary_directory()
        lock = Lockfile(os.path.join(folder, "x.pid"))
        self.addCleanup(lock.release)
        lock.acquire()
        self.assertEqual(os.stat(folder).st_mode & 0o777, 0o700)

    def test_private_folder_not_private(self):
        """
        A per-user folder that others can write (planted before us, or
        loosened) is refused with a one-line error.
        """
        tmp = os.path.abspath(self.mktemp())
        os.mkdir(tmp)
        self.patch(tempfile, "tempdir", tmp)
        folder = lockfile.private_temporary_directory()
        os.mkdir(folder)
        os.chmod(folder, 0o777)
        lock = Lockfile(os.path.join(folder, "x.pid"))
        e = self.assertRaises(LockfileError, lock.acquire)
        self.assertIn("not private", str(e))
        self.assertFalse(os.path.exists(lock.path))

    def test_private_folder_link(self):
        """
        A per-user folder that is a symbolic link is refused.
        """
        tmp = os.path.abspath(self.mktemp())
        os.mkdir(tmp)
        self.patch(tempfile, "tempdir", tmp)
        elsewhere = os.path.join(tmp, "elsewhere")
        os.mkdir(elsewhere, 0o700)
        os.symlink(elsewhere, lockfile.private_temporary_directory())
        lock = Lockfile(os.path.join(lockfile.private_temporary_directory(), "x.pid"))
        e = self.assertRaises(LockfileError, lock.acquire)
        self.assertIn("not a folder", str(e))
        self.assertEqual(os.listdir(elsewhere), [])


class LockfileTests(SynchronousTestCase):
    """
    L{Lockfile} lets one holder at a time use a path.
    """

    def setUp(self):
        self.path = self.mktemp()
        self.lock = Lockfile(self.path)
        self.addCleanup(self.lock.release)

    def other(self):
        """
        :return: a second L{Lockfile} on the same path, released at cleanup.
        """
        other = Lockfile(self.path)
        self.addCleanup(other.release)
        return other

    def test_acquire_writes_pid(self):
        """
        Acquiring creates the file holding this process's id.
        """
        self.lock.acquire()
        self.assertEqual(read(self.path), "%d\n" % (os.getpid(),))

    def test_held(self):
        """
        While one L{Lockfile} holds the path another cannot acquire it, and
        is told which process holds it.
        """
        self.lock.acquire()
        e = self.assertRaises(LockfileError, self.other().acquire)
        self.assertEqual(
            str(e),
            "lockfile %s is held by process %d: is another uhppoted-tunnel "
            "running with the same --in and --out?" % (self.path, os.getpid()))

    def test_held_unreadable_pid(self):
        """
        If the holder's id cannot be read, the message says another process.
        """
        self.lock.acquire()
        with open(self.path, "w") as f:
            f.write("garbage")
        e = self.assertRaises(LockfileError, self.other().acquire)
        self.assertIn("is held by another process:", str(e))

    def test_release(self):
        """
        Releasing removes the file and lets the path be acquired again.
        """
        self.lock.acquire()
        self.lock.release()
        self.assertFalse(os.path.exists(self.path))
        other = self.other()
        other.acquire()
        self.assertEqual(read(self.path), "%d\n" % (os.getpid(),))

    def test_release_twice(self):
        """
        Releasing twice, or without acquiring, does nothing.
        """
        self.other().release()
        self.lock.acquire()
        self.lock.release()
        self.lock.release()
        self.assertFalse(os.path.exists(self.path))

    def test_acquire_twice(self):
        """
        Acquiring a L{Lockfile} already held does nothing.
        """
        self.lock.acquire()
        self.lock.acquire()
        self.assertEqual(read(self.path), "%d\n" % (os.getpid(),))

    def test_stale(self):
        """
        A file left behind by a process that died, and so holds no lock, is
        taken over.
        """
        with open(self.path, "w") as f:
            f.write("999999999\n")
        self.lock.acquire()
        self.assertEqual(read(self.path), "%d\n" % (os.getpid(),))

    def test_write_pid(self):
        """
        L{Lockfile.write_pid} rewrites the file with the current process id,
        replacing longer contents.
        """
        self.lock.acquire()
        with open(self.path, "w") as f:
            f.write("12345678901234567890\n")
        self.patch(os, "getpid", lambda: 42)
        self.lock.write_pid()
        self.assertEqual(read(self.path), "42\n")

    def test_write_pid_not_held(self):
        """
        L{Lockfile.write_pid} without the lock is an error.
        """
        e = self.assertRaises(LockfileError, self.lock.write_pid)
        self.assertEqual(str(e), "lockfile %s is not held" % (self.path,))

    def test_cannot_open(self):
        """
        A lockfile that cannot be created is a one-line error.
        """
        lock = Lockfile(os.path.join(self.mktemp(), "missing", "x.pid"))
        e = self.assertRaises(LockfileError, lock.acquire)
        self.assertEqual(str(e), "lockfile %s: No such file or directory"
                         % (lock.path,))

    def test_removed_while_locking(self):
        """
        If the holder removes the file between opening and locking it, the
        lock is taken again on the file now at the path.
        """
        checks = []

        def same_file(fd, path):
            checks.append(path)
            return len(checks) > 1

        self.patch(lockfile, "_same_file", same_file)
        self.lock.acquire()
        self.assertEqual(checks, [self.path, self.path])
        self.assertEqual(read(self.path), "%d\n" % (os.getpid(),))

    def test_release_leaves_replaced_file(self):
        """
        Releasing does not remove a file that replaced the one locked.
        """
        self.lock.acquire()
        os.unlink(self.path)
        with open(self.path, "w") as f:
            f.write("other\n")
        self.lock.release()
        self.assertEqual(read(self.path), "other\n")

    def test_symlink_refused(self):
        """
        A symbolic link at the path is refused with a one-line error and
        its target is not touched.
        """
        target = self.mktemp()
        with open(target, "w") as f:
            f.write("precious\n")
        os.symlink(os.path.abspath(target), self.path)
        e = self.assertRaises(LockfileError, self.lock.acquire)
        self.assertEqual(str(e), "lockfile %s is a symbolic link: refusing to follow it (remove it, or choose "
                         "another --lockfile)" % (self.path,))
        self.assertEqual(read(target), "precious\n")
        self.assertTrue(os.path.islink(self.path))

    def test_dangling_symlink_refused(self):
        """
        A link to a file that does not exist yet is refused too, and
        nothing is created.
        """
        target = os.path.abspath(self.mktemp())
        os.symlink(target, self.path)
        self.assertRaises(LockfileError, self.lock.acquire)
        self.assertFalse(os.path.exists(target))

    def test_hard_link_refused(self):
        """
        A file with another name too (a hard link planted in a shared
        folder) is refused and left as it was.
        """
        target = self.mktemp()
        with open(target, "w") as f:
            f.write("precious\n")
        os.link(target, self.path)
        e = self.assertRaises(LockfileError, self.lock.acquire)
        self.assertIn("has 2 links", str(e))
        self.assertEqual(read(target), "precious\n")

    def test_fifo_refused(self):
        """
        Something other than a regular file at the path is refused
        without blocking.
        """
        os.mkfifo(self.path)
        e = self.assertRaises(LockfileError, self.lock.acquire)
        self.assertIn("not a regular file", str(e))
