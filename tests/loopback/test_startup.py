# -*- test-case-name: tests.loopback.test_startup -*-
"""
An end that cannot start stops the tunnel the same way under both runners,
C{uhppoted-tunnel} and C{twistd -n uhtunnel}: one line naming the address,
exit code 1, no traceback, and nothing of the tunnel left open.
"""

import os
import re
import socket

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests import certs
from tests.loopback.processes import lockfile, run_tunnel, twistd_command, workdir

TWISTD = ["-n", "--pidfile", ""]


def _taken(kind):
    """
    A socket holding a port on 127.0.0.1, so that an end cannot have it.

    :param kind: C{socket.SOCK_STREAM} or C{socket.SOCK_DGRAM}.
    :return: the socket, bound (and listening, for a stream).
    """
    taken = socket.socket(socket.AF_INET, kind)
    taken.bind(("127.0.0.1", 0))
    if kind == socket.SOCK_STREAM:
        taken.listen(1)
    return taken


class PortInUseMixin:
    """
    Each kind of listening end, started on a port already in use, with a
    C{tcp/server} on a free port as its other end (started first, so there
    is something to close again).
    """

    timeout = 60

    def runner(self):
        """
        :return: the command to run, or C{None} for C{uhppoted-tunnel}.
        """
        return None

    @inlineCallbacks
    def check(self, in_kind, socket_kind, *extra, out="tcp/server:127.0.0.1:0"):
        taken = _taken(socket_kind)
        self.addCleanup(taken.close)
        address = "127.0.0.1:{}".format(taken.getsockname()[1])
        connector = in_kind + address
        command = self.runner()
        child = run_tunnel(self, "half", "--in", connector, "--out", out, *extra, command=command)
        code = yield child.exited()
        output = child.output()
        self.assertEqual(code, 1, child.recent())
        self.assertNotIn("Traceback", output)
        errors = [line for line in output.splitlines() if re.search(r"ERROR|#error|#critical", line)]
        self.assertEqual(len(errors), 1, output)
        self.assertRegex(errors[0], r"cannot listen on {}\b".format(re.escape(address)))
        # the other end was listening, and closed again before the exit
        if out.startswith("tcp/server:"):
            self.assertRegex(output, r"listening on 127\.0\.0\.1:\d+")
        self.assertFalse(os.path.exists(lockfile(self, "half")))

    def test_udpListen(self):
        """
        A C{udp/listen} in end whose port is taken.
        """
        return self.check("udp/listen:", socket.SOCK_DGRAM)

    def test_udpEvent(self):
        """
        A C{udp/event} in end whose port is taken.
        """
        return self.check("udp/event:", socket.SOCK_DGRAM, "--event-spool",
                          os.path.join(workdir(self), "spool"))

    def test_tcpServer(self):
        """
        A C{tcp/server} in end whose port is taken.
        """
        return self.check("tcp/server:", socket.SOCK_STREAM, out="udp/broadcast:127.0.0.1:60005")

    def test_tlsServer(self):
        """
        A C{tls/server} in end whose port is taken.
        """
        files = certs.make(os.path.join(workdir(self), "certs"))
        return self.check("tls/server:", socket.SOCK_STREAM, "--ca-cert", files["ca"][0], "--cert",
                          files["server"][0], "--key", files["server"][1], out="udp/broadcast:127.0.0.1:60005")

    def test_http(self):
        """
        An C{http/} in end whose port is taken.
        """
        return self.check("http/", socket.SOCK_STREAM, "--html", workdir(self),
                          out="udp/broadcast:127.0.0.1:60005")


class ConsoleScriptTests(PortInUseMixin, TestCase):
    """
    Under C{uhppoted-tunnel}.
    """


class TwistdTests(PortInUseMixin, TestCase):
    """
    Under C{twistd -n uhtunnel}.
    """

    def runner(self):
        return twistd_command() + TWISTD + ["uhtunnel"]
