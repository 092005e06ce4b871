"""
Tests for L{uhppoted_tunnel.app.sample}: C{uhppoted-tunnel sample} prints
the files shipped for deployment, from the package itself.
"""

import io
import os

from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app import cli, sample

DATA = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "uhppoted_tunnel", "data")


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    return sample.main(list(argv), out, err), out.getvalue(), err.getvalue()


def shipped(*path):
    with open(os.path.join(DATA, *path), encoding="utf-8") as f:
        return f.read()


class SampleTests(SynchronousTestCase):
    def test_files(self):
        """
        C{toml}, C{tac} and C{man} print the shipped files exactly.
        """
        for name, path in [("toml", "uhppoted-tunnel.toml"), ("tac", "uhtunnel.tac"), ("man", "uhppoted-tunnel.1")]:
            self.assertEqual(run(name), (0, shipped(path), ""), name)

    def test_units(self):
        """
        C{unit NAME} prints each shipped systemd unit.
        """
        self.assertEqual(sample.units(), ["uhppoted-tunnel-host.service", "uhppoted-tunnel-host.socket",
                                          "uhppoted-tunnel@.service"])
        for unit in sample.units():
            self.assertEqual(run("unit", unit), (0, shipped("systemd", unit), ""), unit)

    def test_unknownUnit(self):
        """
        An unknown unit is one line naming the units there are, exit 2.
        """
        code, out, err = run("unit", "tunnel.service")
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err, "uhppoted-tunnel: sample unit: no unit named 'tunnel.service' (expected one of "
                              "uhppoted-tunnel-host.service, uhppoted-tunnel-host.socket, uhppoted-tunnel@.service)\n")
        self.assertEqual(run("unit")[0], 2)
        self.assertIn("name one unit", run("unit")[2])

    def test_unknown(self):
        """
        Anything else is one line saying what is accepted, exit 2; no
        argument prints the usage, exit 2; C{help} prints it, exit 0.
        """
        code, out, err = run("yaml")
        self.assertEqual((code, out), (2, ""))
        self.assertEqual(err.count("\n"), 1)
        self.assertIn("expected toml, tac, man, unit NAME or list", err)
        code, out, err = run()
        self.assertEqual(code, 2)
        self.assertIn("Usage: uhppoted-tunnel sample", out)
        self.assertEqual(run("help")[0], 0)

    def test_list(self):
        """
        C{list} prints where each file is.
        """
        code, out, err = run("list")
        self.assertEqual(code, 0)
        paths = out.splitlines()
        self.assertEqual([os.path.basename(p) for p in paths],
                         ["uhppoted-tunnel.1", "uhppoted-tunnel.toml", "uhtunnel.tac"] + sample.units())
        for path in paths:
            self.assertTrue(os.path.isfile(path), path)

    def test_commands(self):
        """
        The command's help lists C{sample} and C{emulator}.
        """
        self.assertIn("uhppoted-tunnel sample toml | tac | man | unit NAME | list", cli.USAGE)
        self.assertIn("uhppoted-tunnel emulator", cli.USAGE)
