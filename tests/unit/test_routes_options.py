"""
Tests for the routing options: C{--unknown-serial} and the TOML
C{unknown-serial} key and C{[SECTION.routes]} table, in C{run} and in
C{check}.
"""

import io

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app import check
from uhppoted_tunnel.app.options import Options

A, B, C = 405419896, 303986753, 201020304


class OptionTests(SynchronousTestCase):
    def parse(self, *argv, toml=None):
        argv = ["--in", "tcp/server:0.0.0.0:12345", "--out", "tcp/server:0.0.0.0:23456"] + list(argv)
        if toml is not None:
            path = self.mktemp()
            with open(path, "w") as f:
                f.write(toml)
            argv += ["--config", path + "#host"]
        options = Options()
        options.parseOptions(argv)
        return options

    def test_defaults(self):
        """
        By default unknown serials go to all sites, and there are no static
        routes.
        """
        options = self.parse()
        self.assertEqual((options["unknown-serial"], options["routes"]), ("all", {}))

    def test_flag(self):
        """
        C{--unknown-serial drop} is accepted; anything but all or drop is a
        usage error naming the flag.
        """
        self.assertEqual(self.parse("--unknown-serial", "DROP")["unknown-serial"], "drop")
        e = self.assertRaises(usage.UsageError, self.parse, "--unknown-serial", "some")
        self.assertIn("--unknown-serial: expected all or drop", str(e))

    def test_toml(self):
        """
        The TOML file gives C{unknown-serial} and a C{[SECTION.routes]}
        table of site identity to serials, merged over C{[defaults.routes]}.
        """
        options = self.parse(toml='[defaults.routes]\n"CN=site-a" = [405419896]\n'
                                  '[host]\nunknown-serial = "drop"\n'
                                  '[host.routes]\n"192.0.2.7" = [303986753, 201020304]\n')
        self.assertEqual(options["unknown-serial"], "drop")
        self.assertEqual(options["routes"], {"CN=site-a": [A], "192.0.2.7": [B, C]})

    def test_badRoutes(self):
        """
        A route that is not a list of serials is an error naming the file,
        section and identity.
        """
        e = self.assertRaises(usage.UsageError, self.parse, toml='[host.routes]\n"CN=site-a" = ["x"]\n')
        self.assertIn("[host.routes] CN=site-a: expected a list of controller serial numbers", str(e))


class CheckTests(SynchronousTestCase):
    def test_checkRefuses(self):
        """
        C{uhppoted-tunnel check} refuses a bad C{unknown-serial} or
        C{[routes]} entry with the same message as C{run}, and accepts good
        ones.
        """
        path = self.mktemp()
        argv = ["--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:1", "--config", path + "#host"]
        for text, code, message in [
                ('[host]\nunknown-serial = "some"\n', 2, "[host] unknown-serial: expected all or drop"),
                ('[host.routes]\n"CN=a" = 5\n', 2, "CN=a: expected a list of controller serial numbers"),
                ('[host]\nunknown-serial = "drop"\n[host.routes]\n"CN=a" = [5]\n', 0, "")]:
            with open(path, "w") as f:
                f.write(text)
            out, err = io.StringIO(), io.StringIO()
            self.assertEqual(check.main(argv, out, err), code, err.getvalue())
            self.assertIn(message, err.getvalue())
