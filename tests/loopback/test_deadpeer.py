# -*- test-case-name: tests.loopback.test_deadpeer -*-
"""
A peer that vanishes without a word (its packets black-holed, as when a
site's router dies) is noticed by C{TCP_USER_TIMEOUT} beside keepalive,
and the client end dials again.

The test makes its own network namespace (with only a loopback
interface), runs the emulator and both halves in it, and black-holes the
stream port with an nftables rule inside that namespace: nothing is sent
anywhere but its own loopback.
"""

import os
import subprocess
import time

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from tests.loopback.processes import connected_line, free_port, run_tunnel, tunnel_command
from tests.tools import require, under_ci

A = 405419896


class DeadPeerTests(TestCase):
    timeout = 120

    def setUp(self):
        self.ip = require("ip", "iproute2")
        self.nft = require("nft", "nftables")
        if os.geteuid() != 0:
            if under_ci():
                raise AssertionError("network namespaces need root (CI runs as root)")
            raise SkipTest("network namespaces need root")
        self.namespace = "uhtunnel-test-{}".format(os.getpid())
        subprocess.run([self.ip, "netns", "add", self.namespace], check=True)
        self.addCleanup(subprocess.run, [self.ip, "netns", "del", self.namespace])
        self.run_in(self.ip, "link", "set", "lo", "up")

    def run_in(self, *command):
        subprocess.run([self.ip, "netns", "exec", self.namespace] + list(command), check=True)

    def half(self, name, *args):
        return run_tunnel(self, name, *args, command=[self.ip, "netns", "exec", self.namespace] + tunnel_command())

    @inlineCallbacks
    def test_blackholedHostNoticed(self):
        """
        With --dead-peer-timeout 10s, a site whose host stops answering at
        the packet level notices within about 15 s of keepalive idle plus
        the timeout, closes the connection and dials again.
        """
        port = free_port()
        self.half("host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:{}".format(port))
        site = self.half("site", "--in", "tcp/client:127.0.0.1:{}".format(port),
                         "--out", "udp/broadcast:127.0.0.1:{}".format(free_port()), "--dead-peer-timeout", "10s")
        yield site.waitFor(connected_line(port))
        mark = site.mark()
        self.run_in(self.nft, "add", "table", "inet", "blackhole")
        self.run_in(self.nft, "add", "chain", "inet", "blackhole", "out",
                    "{ type filter hook output priority 0 ; }")
        self.run_in(self.nft, "add", "rule", "inet", "blackhole", "out", "tcp", "dport", str(port), "drop")
        self.run_in(self.nft, "add", "rule", "inet", "blackhole", "out", "tcp", "sport", str(port), "drop")
        started = time.monotonic()
        yield site.waitFor(r"connection to 127\.0\.0\.1:{} closed".format(port), timeout=50, since=mark)
        noticed = time.monotonic() - started
        yield site.waitFor(r"(reconnecting to|could not connect to) 127\.0\.0\.1:{}".format(port), timeout=30,
                           since=mark)
        self.assertLess(noticed, 40, "noticed after {:.0f}s".format(noticed))
