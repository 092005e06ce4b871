# -*- test-case-name: tests.loopback.test_caps -*-
"""
Connection caps on a stream server end, against a real tunnel process on
127.0.0.1 running under the usual 1,024-descriptor limit.
"""

import resource
import socket

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.loopback.processes import (
    Client,
    connected_line,
    listening_line,
    run_tunnel,
    start_emulator,
    tunnel_command,
)
from tests.tools import require

A = 405419896

#: The throttled connection count naming the site (127.0.0.1) as the last peer.
CHURN_SITE = r"connection\(s\) opened and \d+ closed, not logged one by one, the last with 127\.0\.0\.1:\d+"
IDLE = 1100


def open_idle(port, count, source):
    """
    Open C{count} connections from C{source} that never send a byte.

    :return: the sockets (connected, or refused by the server after
        accepting: either way the server spent an accept on each).
    """
    sockets = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((source, 0))
        sock.settimeout(5)
        try:
            sock.connect(("127.0.0.1", port))
        except OSError:
            pass
        sockets.append(sock)
    return sockets


class ConnectionCapTests(TestCase):
    timeout = 120

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < IDLE + 200 <= hard or hard == resource.RLIM_INFINITY:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, IDLE + 200), hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    @inlineCallbacks
    def test_idleFloodLeavesGoodPeerServed(self):
        """
        1,100 idle connections from one address to a host's tcp/server end,
        under a 1,024-descriptor limit: past --max-connections-per-source
        they are refused with a throttled warning naming the flag, and a
        site connecting afterwards from another address is served.
        """
        prlimit = require("prlimit", "util-linux")
        emulator, emulator_port = yield start_emulator(self, A)
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0",
                          command=[prlimit, "--nofile=1024:1024", "--"] + tunnel_command())
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        tcp_port = int((yield host.waitFor(listening_line("TCP"))).group(1))
        idle = yield deferToThread(open_idle, tcp_port, IDLE, "127.0.0.2")
        self.addCleanup(lambda: [sock.close() for sock in idle])
        yield host.waitFor(r"refused \d+ connection\(s\), the last from 127\.0\.0\.2:\d+: 128 open connections from "
                           r"127\.0\.0\.2 already \(--max-connections-per-source")
        mark = host.mark()
        site = run_tunnel(self, "site", "--in", "tcp/client:127.0.0.1:{}".format(tcp_port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s")
        yield site.waitFor(connected_line(tcp_port))
        # the site's connection, logged one by one or (after the flood's
        # first ones) in the throttled count that names the last peer
        yield host.waitFor(connected_line() + "|" + CHURN_SITE, since=mark)
        reply = yield Client(udp_port).get_controller(A, timeout=3.0)
        self.assertEqual(reply.controller, A)
        warnings = [line for _, line in host.lines if "refused" in line]
        self.assertLess(len(warnings), 5, warnings)
        self.assertNotIn("Traceback", host.output())


def open_idle_from(port, sources, count):
    """
    Open C{count} idle connections from each of C{sources}.
    """
    sockets = []
    for source in sources:
        sockets.extend(open_idle(port, count, source))
    return sockets


class UnprovenMakeRoomTests(TestCase):
    """
    A host's caps full of idle connections that never proved themselves:
    a real site is served by closing the oldest of them, and the log says
    so; under a descriptor limit below the caps, the start says so and the
    caps are fitted to the limit.
    """

    timeout = 180

    def setUp(self):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 900 <= hard or hard == resource.RLIM_INFINITY:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 900), hard))
            self.addCleanup(resource.setrlimit, resource.RLIMIT_NOFILE, (soft, hard))

    @inlineCallbacks
    def siteServed(self, nofile, sources, count):
        prlimit = require("prlimit", "util-linux")
        emulator, emulator_port = yield start_emulator(self, A)
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0",
                          command=[prlimit, "--nofile={0}:{0}".format(nofile), "--"] + tunnel_command())
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        tcp_port = int((yield host.waitFor(listening_line("TCP"))).group(1))
        idle = yield deferToThread(open_idle_from, tcp_port, sources, count)
        self.addCleanup(lambda: [sock.close() for sock in idle])
        yield host.waitFor(r"refused \d+ connection\(s\), the last from 127\.0\.0\.\d+:\d+: \d+ open connections "
                           r"already \(--max-connections;")
        site = run_tunnel(self, "site", "--in", "tcp/client:127.0.0.1:{}".format(tcp_port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s",
                          "--max-retry-delay", "2s")
        yield site.waitFor(connected_line(tcp_port), timeout=60)
        yield host.waitFor(r"closed \d+ connection\(s\) that had not proved themselves within \d+s "
                           r"\(--connection-probation\), the oldest first, the last from 127\.0\.0\.\d+:\d+, to make "
                           r"room under --max-connections", timeout=60)
        reply = yield Client(udp_port).get_controller(A, timeout=3.0)
        self.assertEqual(reply.controller, A)
        self.assertNotIn("Traceback", host.output())
        return host

    @inlineCallbacks
    def test_capFullOfIdle(self):
        """
        128 idle connections from each of 5 addresses fill the 512 cap; a
        site connecting after is served.
        """
        sources = ["127.0.0.{}".format(n) for n in range(2, 7)]
        yield self.siteServed(1024, sources, 128)

    @inlineCallbacks
    def test_descriptorLimitBelowCaps(self):
        """
        Under a 300-descriptor limit (below what the 512 cap needs) the start
        warns and fits the cap to the limit; idle connections from 10
        addresses then meet the cap rather than the limit, and a site is
        served.
        """
        sources = ["127.0.0.{}".format(n) for n in range(2, 12)]
        host = yield self.siteServed(300, sources, 30)
        output = host.output()
        self.assertIn("the open-file limit is 300, below the 576 descriptors", output)
        self.assertIn("lowered --max-connections from 512 to 236", output)
