"""
Tests for L{uhppoted_tunnel.app.descriptors}: the descriptor limit at start.
"""

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app.descriptors import MARGIN, fit_caps, needed, raise_limit
from uhppoted_tunnel.app.options import Options


class FakeResource:
    RLIMIT_NOFILE = 7
    RLIM_INFINITY = -1

    def __init__(self, soft, hard, refuse=False):
        self.limits = (soft, hard)
        self.refuse = refuse

    def getrlimit(self, which):
        assert which == self.RLIMIT_NOFILE
        return self.limits

    def setrlimit(self, which, limits):
        if self.refuse:
            raise ValueError("not allowed")
        self.limits = limits


class DescriptorTests(SynchronousTestCase):
    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def warnings(self):
        return [e for e in self.logged if e["log_level"].name == "warn"]

    def test_raisedToHard(self):
        """
        The soft limit is raised to the hard one; enough is no warning.
        """
        resource = FakeResource(1024, 524288)
        self.assertEqual(raise_limit(1200, resource), 524288)
        self.assertEqual(resource.limits, (524288, 524288))
        self.assertEqual(self.warnings(), [])

    def test_stillBelow(self):
        """
        A hard limit below what the caps need is a warning saying what to
        do.
        """
        resource = FakeResource(256, 300)
        self.assertEqual(raise_limit(576, resource), 300)
        [warning] = self.warnings()
        self.assertEqual((warning["soft"], warning["want"]), (300, 576))
        self.assertIn("--max-connections", warning["log_format"])

    def test_refused(self):
        """
        A limit that cannot be raised is said, and the check goes on.
        """
        raise_limit(576, FakeResource(256, 4096, refuse=True))
        self.assertEqual(len(self.warnings()), 2)

    def test_needed(self):
        """
        Each server end may hold --max-connections descriptors; a client
        end and a UDP end none beyond the margin.
        """
        host = Options()
        host.parseOptions(["--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:12345",
                           "--max-connections", "100"])
        self.assertEqual(needed(host), 100 + MARGIN)
        site = Options()
        site.parseOptions(["--in", "tcp/client:127.0.0.1:12345", "--out", "udp/broadcast:127.0.0.1:60000"])
        self.assertEqual(needed(site), MARGIN)

    def test_fitCaps(self):
        """
        Under a limit below what the caps need, the caps are lowered to fit
        it, with a warning; a limit that fits them changes nothing.
        """
        host = Options()
        host.parseOptions(["--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:12345"])
        self.assertEqual(fit_caps(host, 1024), 512)
        self.assertEqual(self.warnings(), [])
        self.assertEqual(fit_caps(host, 300), 300 - MARGIN)
        self.assertEqual((host["max-connections"], host["max-connections-per-source"]), (236, 128))
        self.assertEqual(self.warnings()[0]["fitted"], 236)
        self.assertEqual(fit_caps(host, -1), 236)

    def test_neededGRPC(self):
        """
        A gRPC server end may hold two descriptors for each connection
        --max-connections allows (twice as many connections as calls; none
        relayed any more).
        """
        host = Options()
        host.parseOptions(["--in", "udp/listen:127.0.0.1:60000", "--out", "grpc/server:127.0.0.1:12345",
                           "--max-connections", "100"])
        self.assertEqual(needed(host), 200 + MARGIN)
