# -*- test-case-name: tests.loopback.test_freebind -*-
"""
C{--freebind}: server and udp/listen ends bind an address this machine
does not have (192.0.2.10, TEST-NET-1: binding only, nothing is sent), as
a tunnel bound to a given address must before the network is online;
without it the same start fails with one line.
"""

import re

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.processes import free_port, run_tunnel

ADDRESS = "192.0.2.10"


class FreebindTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_freebind(self):
        """
        With --freebind, a udp/listen in end and a tcp/server out end listen
        on an address that is not up.
        """
        udp, tcp = free_port(), free_port()
        half = run_tunnel(self, "host", "--in", "udp/listen:{}:{}".format(ADDRESS, udp),
                          "--out", "tcp/server:{}:{}".format(ADDRESS, tcp), "--freebind")
        yield half.waitFor(r"UDP\s+listening on {}:{}".format(re.escape(ADDRESS), udp))
        yield half.waitFor(r"TCP\s+listening on {}:{}".format(re.escape(ADDRESS), tcp))
        half.send_signal("TERM")
        code = yield half.exited()
        self.assertEqual(code, 0, half.recent())

    @inlineCallbacks
    def test_withoutFreebind(self):
        """
        Without --freebind the same start fails: one line naming the
        address, exit 1, no traceback.
        """
        tcp = free_port()
        half = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0",
                          "--out", "tcp/server:{}:{}".format(ADDRESS, tcp))
        code = yield half.exited()
        self.assertEqual(code, 1, half.recent())
        errors = [line for _, line in half.lines if "ERROR" in line]
        self.assertEqual(len(errors), 1, half.output())
        self.assertIn("cannot listen on {}:{}".format(ADDRESS, tcp), errors[0])
        self.assertNotIn("Traceback", half.output())
