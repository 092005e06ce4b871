# -*- test-case-name: tests.unit.test_lockfile -*-
"""
Tests for L{uhppoted_tunnel.lockfile}: one tunnel per in and out pair.
"""

import hashlib
import os
import tempfile

from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel import lockfile
from uhppoted_tunnel.lockfile import Lockfile, LockfileError, default_path


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

    def test_system_temporary_directory(self):
        """
        Without a directory, the system's temporary directory is used.
        """
        self.assertEqual(os.path.dirname(default_path("a", "b")),
                         tempfile.gettempdir())


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
