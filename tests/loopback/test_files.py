# -*- test-case-name: tests.loopback.test_files -*-
"""
The files the real C{uhppoted-tunnel} command reads and writes, tried as a
hostile local user or a careless administrator would: a lockfile path that
is a planted symbolic link, the default lockfile folder, and configuration
files that are nested too deeply, endless or huge. Each is a one-line
error and exit code 2, before anything listens.
"""

import os
import shutil
import sys
import tempfile

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests import certs
from tests.loopback.processes import (
    empty_config,
    listening_line,
    spawn,
    stop,
    tunnel_command,
    workdir,
)
from tests.tools import require
from uhppoted_tunnel.app import lockfile

IN = "udp/listen:127.0.0.1:0"
OUT = "tcp/server:127.0.0.1:0"

#: The unprivileged user the lockfile tests run as when the tests run as root.
NOBODY = 65534

#: CAP_DAC_READ_SEARCH: read any file and search any folder (but write
#: only as the user's own permissions allow).
CAP_DAC_READ_SEARCH = 2


def bounding_capabilities():
    """
    :return: the capabilities this process may pass on (its bounding set),
        as a bit mask.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapBnd:"):
                return int(line.split()[1], 16)
    return 0


def as_nobody(setpriv):
    """
    The command prefix that runs a child as the user nobody, with no
    groups. The checkout and the Python running the tests may lie where
    nobody cannot read (a clone under C{/root}, mode 0700, a Python from
    pyenv there): where the kernel allows, nobody is given
    C{CAP_DAC_READ_SEARCH} (as an ambient capability, kept across exec), so
    that it can read them; it creates and writes files with its own
    permissions all the same, which is what the tests check.

    :param setpriv: the path of C{setpriv}.
    """
    command = [setpriv, "--reuid", str(NOBODY), "--regid", str(NOBODY), "--clear-groups"]
    if bounding_capabilities() & (1 << CAP_DAC_READ_SEARCH):
        command += ["--inh-caps", "+dac_read_search", "--ambient-caps", "+dac_read_search"]
    return command


#: The address space a child may use: far more than a tunnel needs, and a
#: bound on a child that would read an endless file into memory.
ADDRESS_SPACE = 2 << 30

_LIMITED = ("import os, resource, sys; resource.setrlimit(resource.RLIMIT_AS, ({0}, {0})); "
            "os.execv(sys.argv[1], sys.argv[1:])").format(ADDRESS_SPACE)


def limited(command):
    """
    :return: C{command} run with its address space limited to
        L{ADDRESS_SPACE}.
    """
    return [sys.executable, "-c", _LIMITED] + list(command)


class _Errors:
    @inlineCallbacks
    def assertOneLineError(self, child, *fragments):
        """
        The child exits 2 with one stderr line holding every fragment, no
        traceback, and without listening.
        """
        code = yield child.exited()
        self.assertEqual(code, 2, child.recent())
        errors = child.output(2).splitlines()
        self.assertEqual(len(errors), 1, child.recent())
        for fragment in fragments:
            self.assertIn(fragment, errors[0])
        self.assertNotIn("Traceback", child.output())
        self.assertNotIn("listening on", child.output())
        return errors[0]


class LockfileTests(_Errors, TestCase):
    """
    The lockfile is never followed through a link, and by default lives
    out of world-writable folders.
    """

    @inlineCallbacks
    def test_symlink_refused(self):
        """
        A symbolic link planted at the --lockfile path is refused with one
        line and exit 2, and the file it points to keeps its contents.
        """
        directory = workdir(self)
        target = os.path.join(directory, "precious")
        with open(target, "w") as f:
            f.write("precious\n")
        link = os.path.join(directory, "tunnel.pid")
        os.symlink(target, link)
        child = spawn(self, tunnel_command() + ["--in", IN, "--out", OUT, "--lockfile", link,
                                                "--config", empty_config(self)], "tunnel")
        error = yield self.assertOneLineError(child, link, "symbolic link")
        self.assertNotIn("\n", error)
        with open(target) as f:
            self.assertEqual(f.read(), "precious\n")
        self.assertTrue(os.path.islink(link))

    @inlineCallbacks
    def test_default_under_systemd(self):
        """
        Without --lockfile, the lockfile goes to systemd's
        C{$RUNTIME_DIRECTORY} under Go's name, and is removed on a clean
        stop.
        """
        runtime = os.path.join(workdir(self), "run")
        os.mkdir(runtime, 0o755)
        child = spawn(self, tunnel_command() + ["--in", IN, "--out", OUT, "--config", empty_config(self)],
                      "tunnel", env={"RUNTIME_DIRECTORY": runtime})
        yield child.waitFor(listening_line("TCP"))
        path = lockfile.default_path(IN, OUT, runtime)
        with open(path) as f:
            self.assertEqual(f.read(), "%d\n" % (child.pid,))
        code = yield stop(child)
        self.assertEqual(code, 0, child.recent())
        self.assertFalse(os.path.exists(path))

    @inlineCallbacks
    def test_default_private_temporary_folder(self):
        """
        A user without systemd's or XDG's folder gets a private (0700)
        folder of their own in the temporary folder (run as the user
        nobody when the tests run as root, wherever the checkout is).
        """
        # a folder the user can reach (the test's own folder may not be)
        tmp = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, tmp)
        os.chmod(tmp, 0o1777)
        command = tunnel_command() + ["--in", IN, "--out", OUT, "--config", os.devnull]
        uid = os.geteuid()
        if uid == 0:
            uid = NOBODY
            command = as_nobody(require("setpriv", "util-linux")) + command
        child = spawn(self, command, "tunnel", env={"TMPDIR": tmp, "XDG_RUNTIME_DIR": "", "RUNTIME_DIRECTORY": ""})
        yield child.waitFor(listening_line("TCP"))
        folder = os.path.join(tmp, "uhppoted-tunnel-{}".format(uid))
        info = os.stat(folder)
        self.assertEqual((info.st_uid, info.st_mode & 0o777), (uid, 0o700))
        self.assertTrue(os.path.isfile(lockfile.default_path(IN, OUT, folder)))
        code = yield stop(child)
        self.assertEqual(code, 0, child.recent())


class ConfigurationFileTests(_Errors, TestCase):
    """
    A configuration file that would exhaust the parser or memory is a
    configuration error like any other.
    """

    def write(self, name, text):
        path = os.path.join(workdir(self), name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def start(self, config):
        return spawn(self, limited(tunnel_command() + ["--in", IN, "--out", OUT, "--config", config,
                                                       "--lockfile", os.path.join(workdir(self), "t.pid")]),
                     "tunnel")

    def test_nested_500_deep(self):
        """
        A TOML value nested 500 deep is one line naming the file, exit 2.
        """
        path = self.write("deep.toml", "[defaults]\nrate-limit = " + "[" * 500 + "]" * 500 + "\n")
        return self.assertOneLineError(self.start(path), path, "nested too deeply")

    def test_inline_tables_500_deep(self):
        """
        Inline tables nested 500 deep are refused the same way.
        """
        path = self.write("deep.toml", "[defaults]\nx = " + "{a=" * 500 + "1" + "}" * 500 + "\n")
        return self.assertOneLineError(self.start(path), path, "nested too deeply")

    def test_dev_zero(self):
        """
        C{--config /dev/zero} is one line, exit 2: what is read is capped.
        """
        return self.assertOneLineError(self.start("/dev/zero"), "/dev/zero", "over 1048576 bytes")

    def test_over_one_mebibyte(self):
        """
        A file over 1 MiB (here valid TOML) is an error.
        """
        path = self.write("big.toml", "[defaults]\n" + "# padding\n" * 110000)
        return self.assertOneLineError(self.start(path), path, "over 1048576 bytes")

    def test_long_value_shortened(self):
        """
        A bad value is shown shortened, so the error stays one short line.
        """
        path = self.write("long.toml", "[defaults]\nrate-limit = [" + ", ".join(["1"] * 5000) + "]\n")
        return self.assertOneLineError(self.start(path), path, "rate-limit", "...")


class CertificateFileTests(_Errors, TestCase):
    """
    Certificate and key files are read bounded, like the configuration
    (issue 25, item 6): C{/dev/zero} is one line and exit 2, not a
    C{MemoryError}, with the address space limited to 2 GiB.
    """

    def start(self, *args):
        return spawn(self, limited(tunnel_command() + list(args) + [
            "--config", os.devnull, "--lockfile", os.path.join(workdir(self), "t.pid")]), "tunnel")

    def test_cert_dev_zero(self):
        """
        C{--cert /dev/zero} for a tls/ server end.
        """
        files = certs.make(os.path.join(workdir(self), "certs"))
        child = self.start("--in", IN, "--out", "tls/server:127.0.0.1:0", "--ca-cert", files["ca"][0],
                           "--cert", "/dev/zero", "--key", files["server"][1])
        return self.assertOneLineError(child, "--cert '/dev/zero'", "over 1048576 bytes")

    def test_zmq_server_key_dev_zero(self):
        """
        C{--zmq-server-key /dev/zero} for a zmq/ server end.
        """
        child = self.start("--in", IN, "--out", "zmq/server:127.0.0.1:0", "--zmq-server-key", "/dev/zero")
        return self.assertOneLineError(child, "--zmq-server-key /dev/zero", "over")
