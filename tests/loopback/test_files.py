# -*- test-case-name: tests.loopback.test_files -*-
"""
The files the real C{uhppoted-tunnel} command reads and writes, tried as a
hostile local user or a careless administrator would: a lockfile path that
is a planted symbolic link, the default lockfile folder, and configuration
files that are nested too deeply, endless or huge. Each is a one-line
error and exit code 2, before anything listens.
"""

import os
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.processes import spawn, tunnel_command, workdir

IN = "udp/listen:127.0.0.1:0"
OUT = "tcp/server:127.0.0.1:0"

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
