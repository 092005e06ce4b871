# -*- test-case-name: tests.unit.test_hints -*-
"""
Tests for the hints that point to the fix: L{uhppoted_tunnel.core.hints},
L{uhppoted_tunnel.app.helptext}, and the commands and files that use them
(a misspelt TOML key, connector, flag or command; a file given without a
section; Go's single-dash help and version; C{help COMMAND}; a closed
pipe).
"""

import io
import os
import textwrap

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app import check, cli, config
from uhppoted_tunnel.app.config import load
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.core.hints import closest_prefix, did_you_mean
from uhppoted_tunnel.transports.tls import certs

SITE = ["--in", "tcp/client:127.0.0.1:12345", "--out", "udp/broadcast:127.0.0.1:60000"]


class HintTests(SynchronousTestCase):
    def test_didYouMean(self):
        """
        A misspelt word is answered with the closest valid one, written as
        asked; a word close to nothing gets no hint.
        """
        self.assertEqual(did_you_mean("udp-timout", ["udp-timeout", "rate-limit"]),
                         " (did you mean 'udp-timeout'?)")
        self.assertEqual(did_you_mean("rate-limt", ["udp-timeout", "rate-limit"], "--{}"),
                         " (did you mean --rate-limit?)")
        self.assertEqual(did_you_mean("frobnicate", ["udp-timeout", "rate-limit"]), "")

    def test_closestPrefix(self):
        """
        A connector's misspelt kind is matched against each prefix.
        """
        prefixes = ["udp/listen:", "udp/broadcast:", "tcp/client:", "tls/client:", "http/", "https/"]
        self.assertEqual(closest_prefix("udp/lisen:0.0.0.0:60000", prefixes), "udp/listen:")
        self.assertEqual(closest_prefix("tsl/client:host:1", prefixes), "tls/client:")
        self.assertEqual(closest_prefix("htps/0.0.0.0:8080", prefixes), "https/")
        self.assertIsNone(closest_prefix("carrier/pigeon:1", prefixes))


class FileHintTests(SynchronousTestCase):
    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def write(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def test_unknownKeyWarns(self):
        """
        A run warns of a misspelt key, naming the file, section, key and
        the closest valid key.
        """
        path = self.write('[defaults]\nudp-timout = "1s"\n[host]\nrate-limt = 5\n')
        settings = load(path, "host", explicit=True)
        self.assertEqual(settings.warnings, [
            path + " [defaults] udp-timout: unknown key (ignored) (did you mean 'udp-timeout'?)",
            path + " [host] rate-limt: unknown key (ignored) (did you mean 'rate-limit'?)",
        ])

    def test_checkRefusesUnknownKey(self):
        """
        C{check} refuses a file with a misspelt key (a run would silently
        use the default), naming file, section, key and the closest key.
        """
        path = self.write('[defaults]\nudp-timout = "1s"\n')
        out, err = io.StringIO(), io.StringIO()
        code = check.main(SITE + ["--config", path, "--lockfile", self.mktemp()], out, err)
        self.assertEqual((code, out.getvalue()), (2, ""))
        self.assertEqual(err.getvalue(), "uhppoted-tunnel: {} [defaults] udp-timout: unknown key "
                                         "(did you mean 'udp-timeout'?)\n".format(path))

    def test_sectionsOfAFile(self):
        """
        A file given without C{#SECTION} whose tunnels are all in sections
        names them, and how to choose one.
        """
        path = self.write('[host]\nin = "udp/listen:0.0.0.0:60000"\nout = "tcp/server:0.0.0.0:1"\n'
                          '[site]\nin = "tcp/client:127.0.0.1:1"\nout = "udp/broadcast:127.0.0.1:60000"\n')
        options = Options()
        e = self.assertRaises(usage.UsageError, options.parseOptions, ["--config", path])
        self.assertEqual(str(e), "--in is required: --config {0} has sections host, site: use "
                                 "--config {0}#host".format(path))

    def test_unknownConnector(self):
        """
        A misspelt connector kind is answered with the closest kind, not a
        list of every one.
        """
        e = self.assertRaises(usage.UsageError, Options().parseOptions,
                              ["--in", "udp/lisen:0.0.0.0:60000", "--out", "tcp/server:0.0.0.0:1"])
        self.assertEqual(str(e), "--in: unknown connector 'udp/lisen:0.0.0.0:60000': did you mean udp/listen:?")


class CommandHintTests(SynchronousTestCase):
    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def main(self, *argv):
        out, err = io.StringIO(), io.StringIO()
        self.patch(cli.sys, "stdout", out)
        self.patch(cli.sys, "stderr", err)
        code = cli.main(list(argv))
        return code, out.getvalue(), err.getvalue()

    def test_goHelpAndVersion(self):
        """
        Go's C{-h} and C{-help} print the help, and C{-version} the version,
        like C{help} and C{version}.
        """
        general = self.main("help")
        self.assertTrue(general[1].startswith("Usage: uhppoted-tunnel"))
        for spelling in ("-h", "-help", "--help"):
            self.assertEqual(self.main(spelling), general)
        version = self.main("version")
        self.assertEqual(self.main("-version"), version)
        self.assertEqual(self.main("--version"), version)

    def test_helpCommand(self):
        """
        C{help COMMAND} prints that command's help; an unknown command is
        answered with the closest one.
        """
        code, out, err = self.main("help", "daemonize")
        self.assertEqual(code, 0)
        self.assertIn("--create-user", out)
        self.assertNotIn("undaemonize", out)
        code, out, err = self.main("help", "check")
        self.assertIn("--peer-cert", out)
        code, out, err = self.main("help", "dmo")
        self.assertEqual((code, out), (2, ""))
        self.assertIn("no command 'dmo' (did you mean 'demo'?)", err)

    def test_flagHint(self):
        """
        A misspelt flag, with two dashes or Go's one, is answered with the
        closest flag, in a run and in C{check}.
        """
        for argv in (["--udp-timout", "1s"], ["-udp-timout", "1s"], ["check", "--udp-timout", "1s"]):
            code, out, err = self.main(*argv)
            self.assertEqual(code, 2)
            self.assertIn("option --udp-timout not recognized (did you mean --udp-timeout?)", err)

    def test_closedPipe(self):
        """
        A reader that goes away (C{--help | head -1}) ends the command
        quietly, without a traceback.
        """
        class Closed(io.StringIO):
            def write(self, text):
                raise BrokenPipeError(32, "Broken pipe")

            def fileno(self):
                return descriptor

        read, descriptor = os.pipe()
        self.addCleanup(os.close, read)
        self.addCleanup(os.close, descriptor)
        self.patch(cli.sys, "stdout", Closed())
        self.assertEqual(cli.main(["--help"]), 0)


class DefaultFileTests(SynchronousTestCase):
    def test_defaultNamed(self):
        """
        A missing certificate the user never named is reported as the
        default, with the flag that names another; one the user named is
        not.
        """
        missing = os.path.abspath(self.mktemp())
        e = self.assertRaises(ValueError, certs.load_ca, certs.DEFAULT_CA)
        self.assertEqual(str(e), "--ca-cert 'ca.cert': No such file or directory (the default; set --ca-cert)")
        e = self.assertRaises(ValueError, certs.load_ca, missing)
        self.assertEqual(str(e), "--ca-cert '{}': No such file or directory".format(missing))
        e = self.assertRaises(ValueError, certs.load_identity, missing, missing, ["--key"])
        self.assertEqual(str(e), "--cert '{}': No such file or directory".format(missing))
