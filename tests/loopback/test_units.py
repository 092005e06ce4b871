"""
The systemd units shipped in uhppoted_tunnel/data/systemd and those C{uhppoted-tunnel
daemonize} writes, checked by systemd's own tools: C{systemd-analyze
verify} accepts them and C{systemd-analyze security --offline=yes} rates
them OK or better.
"""

import os
import re

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.processes import ROOT, spawn, tunnel_command, workdir
from tests.tools import require

SHIPPED = os.path.join(ROOT, "uhppoted_tunnel", "data", "systemd")
INSTALLED = "/usr/local/bin/uhppoted-tunnel"

#: C{systemd-analyze security}'s ratings, safest first, that pass.
GOOD = ("SAFE", "OK")


class UnitTests(TestCase):
    timeout = 120

    def setUp(self):
        self.analyze = require("systemd-analyze", "systemd")
        self.folder = os.path.join(workdir(self), "units")
        os.makedirs(self.folder)

    def command(self):
        """
        An existing executable for ExecStart= (verify checks that it is
        there): the tunnel's script, or the Python that runs it.
        """
        return tunnel_command()[0]

    def ship(self, name, instance=None):
        """
        Copy a shipped unit into the test's folder, running this tree's
        command instead of /usr/local/bin/uhppoted-tunnel.

        :param instance: for a template, the instance name to copy it as.
        :return: the copy's path.
        """
        with open(os.path.join(SHIPPED, name)) as f:
            text = f.read()
        if name.endswith(".service"):
            self.assertIn(INSTALLED, text)
        path = os.path.join(self.folder, name.replace("@.", "@{}.".format(instance)) if instance else name)
        with open(path, "w") as f:
            f.write(text.replace(INSTALLED, self.command()))
        return path

    @inlineCallbacks
    def analyze_run(self, *args):
        """
        Run C{systemd-analyze ARGS}.

        :return: a Deferred firing with C{(exit code, stdout, stderr)}.
        """
        process = spawn(self, [self.analyze] + list(args), "systemd-analyze")
        code = yield process.exited()
        return code, process.output(1), process.output(2)

    @inlineCallbacks
    def assertVerified(self, *paths):
        code, out, err = yield self.analyze_run("verify", *paths)
        self.assertEqual((code, err), (0, ""), "{}\n{}".format(out, err))

    @inlineCallbacks
    def assertSecure(self, path):
        code, out, err = yield self.analyze_run("security", "--offline=yes", path)
        match = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", out)
        self.assertIsNotNone(match, out + err)
        self.assertIn(match.group(2), GOOD, match.group(0))
        return float(match.group(1))

    @inlineCallbacks
    def test_templated(self):
        """
        The templated unit, as an instance, verifies and rates OK.
        """
        path = self.ship("uhppoted-tunnel@.service", instance="host")
        yield self.assertVerified(path)
        yield self.assertSecure(path)

    @inlineCallbacks
    def test_socketActivated(self):
        """
        The socket-activated host and its socket verify together, and the
        service rates OK.
        """
        service = self.ship("uhppoted-tunnel-host.service")
        socket_unit = self.ship("uhppoted-tunnel-host.socket")
        yield self.assertVerified(socket_unit, service)
        yield self.assertSecure(service)

    @inlineCallbacks
    def test_daemonize(self):
        """
        C{daemonize --unit-dir} writes a unit that verifies and rates OK
        (with an interface bound too, which gets CAP_NET_RAW), and
        C{undaemonize} removes it.
        """
        config = os.path.join(self.folder, "tunnel.toml")
        with open(config, "w") as f:
            f.write('[host]\nin = "udp/listen:0.0.0.0:60000"\nout = "tcp/server:0.0.0.0:12345"\n'
                    '[bound]\nin = "udp/listen:0.0.0.0:60000"\nout = "tcp/client::lo:192.0.2.1:12345"\n')
        units = os.path.join(self.folder, "written")
        for label, section in (("uhppoted-tunnel", "host"), ("bound", "bound")):
            daemonize = spawn(self, tunnel_command() + [
                "daemonize", "--unit-dir", units, "--label", label, "--config", config + "#" + section], "daemonize")
            code = yield daemonize.exited()
            self.assertEqual(code, 0, daemonize.output())
        written = os.path.join(units, "uhppoted-tunnel.service")
        bound = os.path.join(units, "uhppoted-tunnel-bound.service")
        yield self.assertVerified(written)
        yield self.assertVerified(bound)
        yield self.assertSecure(written)
        yield self.assertSecure(bound)
        with open(bound) as f:
            self.assertIn("AmbientCapabilities=CAP_NET_RAW", f.read())

        undaemonize = spawn(self, tunnel_command() + ["undaemonize", "--unit-dir", units], "undaemonize")
        code = yield undaemonize.exited()
        self.assertEqual(code, 0, undaemonize.output())
        self.assertEqual(os.listdir(units), ["uhppoted-tunnel-bound.service"])
