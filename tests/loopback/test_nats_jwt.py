# -*- test-case-name: tests.loopback.test_nats_jwt -*-
"""
The nats/ ends with a C{.creds} file (a user JWT and its seed) against a
real nats-server in operator (JWT) mode, the operator, account and users
minted by the test (L{tests.loopback.natsjwt}). Nothing sleeps: each step
waits, with a deadline, for a log line, an exit or a reply.
"""

import os
import time

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.natsjwt import Operator, account_key
from tests.loopback.pairs import A
from tests.loopback.processes import Client, run_tunnel, start_emulator, start_host, start_site, workdir
from tests.loopback.test_nats import RETRYING, connected


class NATSCredsTests(TestCase):
    """
    A pair through a server that admits users by their account's JWT.
    """

    timeout = 120

    @inlineCallbacks
    def setUp(self):
        root = os.path.join(workdir(self), "jwt")
        os.makedirs(root)
        self.server = Operator(root)
        yield self.server.start(self)

    @inlineCallbacks
    def test_pair(self):
        """
        A site and a host whose .creds files hold users of the account the
        server knows connect and relay a request and its reply.
        """
        creds = self.server.creds("site")
        _, port = yield start_emulator(self, A)
        site = start_site(self, "nats/client:" + self.server.address, port, "--nats-credentials", creds,
                          "--nats-serial", str(A))
        yield site.waitFor(connected(self.server))
        host, host_port = yield start_host(self, "nats/client:" + self.server.address, "--nats-credentials",
                                           self.server.creds("host"))
        yield host.waitFor(connected(self.server))
        reply = yield Client(host_port).get_controller(A)
        self.assertEqual(reply.controller, A)

    @inlineCallbacks
    def refused(self, name, creds):
        """
        A half with C{creds} warns once per attempt that the server refused
        its credentials, backs off 5 s, and with --max-retries 1 ends with
        exit 1.
        """
        half = run_tunnel(self, name, "--in", "nats/client:" + self.server.address, "--out",
                          "udp/broadcast:127.0.0.1:9", "--nats-credentials", creds, "--max-retries", "1")
        code = yield half.exited(timeout=30)
        self.assertEqual(code, 1, half.recent())
        lines = half.output().splitlines()
        warnings = [line for line in lines if "WARN" in line and "NATS" in line]
        self.assertEqual(len(warnings), 1, half.recent())
        self.assertRegex(warnings[0], RETRYING + r".*retrying in 5s")
        self.assertTrue([line for line in lines if "ERROR" in line and "after 2 attempt(s)" in line], half.recent())

    def test_wrongAccount(self):
        """
        A user JWT signed by an account the server does not know is
        refused: one warning per attempt, then exit 1.
        """
        return self.refused("stranger", self.server.creds("stranger", account=account_key()))

    def test_expired(self):
        """
        An expired user JWT is refused: one warning per attempt, then
        exit 1.
        """
        return self.refused("expired", self.server.creds("expired", expires=time.time() - 60))
