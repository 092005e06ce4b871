"""
Tests for L{uhppoted_tunnel.app.check}: C{uhppoted-tunnel check} passes a good
configuration and names the exact problem in a bad one.
"""

import datetime
import io
import os

from twisted.trial.unittest import SynchronousTestCase

from tests import certs
from uhppoted_tunnel.app import check
from uhppoted_tunnel.app import cli
from uhppoted_tunnel.app import config
from uhppoted_tunnel.core.declare import BOTH, ConnectorPlugin, Option


class CheckTests(SynchronousTestCase):
    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.folder = os.path.abspath(self.mktemp())
        self.files = certs.make(self.folder)
        self.lockfile = os.path.join(self.folder, "tunnel.pid")

    def path(self, name):
        return os.path.join(self.folder, name)

    def check(self, *args, now=None):
        """
        :return: C{(exit code, stdout, stderr)} of C{check ARGS}.
        """
        out, err = io.StringIO(), io.StringIO()
        code = check.main(list(args) + ["--lockfile", self.lockfile], out, err, now=now)
        return code, out.getvalue(), err.getvalue()

    def assertProblem(self, result, *parts):
        code, out, err = result
        self.assertEqual((code, out), (2, ""), err)
        self.assertEqual(err.count("\n"), 1, err)
        self.assertTrue(err.startswith("uhppoted-tunnel: "), err)
        for part in parts:
            self.assertIn(part, err)

    def server(self, *args):
        return ["--in", "udp/listen:127.0.0.1:60000", "--out", "tls/server:127.0.0.1:12345",
                "--ca-cert", self.files["ca"][0], "--cert", self.files["server"][0],
                "--key", self.files["server"][1]] + list(args)

    def client(self, host="localhost", *args):
        return ["--in", "tls/client:{}:12345".format(host), "--out", "udp/broadcast:127.0.0.1:60000",
                "--ca-cert", self.files["ca"][0], "--cert", self.files["client"][0],
                "--key", self.files["client"][1]] + list(args)

    def test_spoolFolder(self):
        """
        check refuses an event spool that run would refuse (issue 25,
        item 9): C{/proc/nope/sp} is no folder, in one line naming the
        flag; a spool run can write passes.
        """
        event = ["--in", "udp/event:127.0.0.1:60000", "--out", "tcp/client:127.0.0.1:1"]
        self.assertProblem(self.check(*(event + ["--event-spool", "/proc/nope/sp"])), "--event-spool /proc/nope/sp",
                           "/proc/nope is not a folder")
        code, out, err = self.check(*(event + ["--event-spool", self.path("sp")]))
        self.assertEqual(code, 0, err)

    def test_goodServer(self):
        """
        A good TLS server configuration passes, saying until when each
        certificate is valid, and takes no lockfile.
        """
        code, out, err = self.check(*self.server())
        self.assertEqual((code, err), (0, ""))
        self.assertIn("configuration OK: udp/listen:127.0.0.1:60000 -> tls/server:127.0.0.1:12345", out)
        self.assertIn("--cert '{}': valid until".format(self.files["server"][0]), out)
        self.assertIn("--ca-cert '{}': valid until".format(self.files["ca"][0]), out)
        self.assertFalse(os.path.exists(self.lockfile))

    def test_goodConfigFile(self):
        """
        A good TOML section passes, any C{run} flag allowed beside it.
        """
        path = self.path("tunnel.toml")
        with open(path, "w") as f:
            f.write('[site]\nin = "tls/client:127.0.0.1:12345"\nout = "udp/broadcast:127.0.0.1:60000"\n'
                    'ca-cert = "{ca}"\ncert = "{cert}"\nkey = "{key}"\n'.format(
                        ca=self.files["ca"][0], cert=self.files["client"][0], key=self.files["client"][1]))
        code, out, err = self.check("--config", path + "#site", "--udp-timeout", "1s",
                                    "--peer-cert", self.files["server"][0])
        self.assertEqual((code, err), (0, ""))
        self.assertIn("--peer-cert '{}' names '127.0.0.1'".format(self.files["server"][0]), out)
        self.assertIn("configuration OK", out)

    def test_plainTunnel(self):
        """
        A tunnel without TLS passes on its connector strings alone.
        """
        code, out, err = self.check("--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:12345")
        self.assertEqual((code, err, out), (0, "", "configuration OK: udp/listen:127.0.0.1:60000 -> "
                                                  "tcp/server:127.0.0.1:12345\n"))

    def test_socketActivated(self):
        """
        A socket-activated end passes outside systemd (which passes its
        socket only to the service itself).
        """
        code, out, err = self.check("--in", "udp/listen:127.0.0.1:60000",
                                    "--out", "tcp/server:systemd:domain=INET:index=0")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("configuration OK", out)

    def test_badConnector(self):
        """
        A bad connector string is named, with the flag.
        """
        self.assertProblem(self.check("--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:99999"),
                           "invalid port")
        self.assertProblem(self.check("--in", "udp/lsten:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:1"),
                           "--in", "unknown connector 'udp/lsten:127.0.0.1:60000'")

    def test_badConfig(self):
        """
        A missing configuration file or section is named.
        """
        self.assertProblem(self.check("--config", self.path("nowhere.toml") + "#host"), "nowhere.toml",
                           "no such file")

    def test_expired(self):
        """
        An expired certificate is named, with the date it expired.
        """
        expired = certs.make(self.path("old"), server_days=(-30, -2))
        self.assertProblem(self.check(*self.server("--cert", expired["server"][0], "--key", expired["server"][1])),
                           "--cert '{}': expired on ".format(expired["server"][0]))

    def test_notYetValid(self):
        """
        A certificate not yet valid is named.
        """
        early = certs.make(self.path("early"), server_days=(2, 30))
        self.assertProblem(self.check(*self.server("--cert", early["server"][0], "--key", early["server"][1])),
                           "--cert '{}': not valid before ".format(early["server"][0]))

    def test_expiringSoon(self):
        """
        A certificate that expires within 30 days is a warning, not an
        error.
        """
        soon = certs.make(self.path("soon"), server_days=(-1, 10))
        code, out, err = self.check(*self.server("--cert", soon["server"][0], "--key", soon["server"][1]))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("warning: --cert '{}' expires on ".format(soon["server"][0]), out)

    def test_now(self):
        """
        Dates are checked against the time given.
        """
        later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=900)
        self.assertProblem(self.check(*self.server(), now=later),
                           "--cert '{}': expired on".format(self.files["server"][0]))

    def test_keyMismatch(self):
        """
        A key that does not match its certificate is named, with both
        files.
        """
        other = certs.make(self.path("other"), prefix="other-")
        self.assertProblem(self.check(*self.server("--key", other["server"][1])),
                           "--key '{}' does not match --cert '{}'".format(other["server"][1],
                                                                         self.files["server"][0]))

    def test_missingFile(self):
        """
        A missing certificate is named.
        """
        self.assertProblem(self.check(*self.server("--ca-cert", self.path("none.cert"))),
                           "--ca-cert '{}'".format(self.path("none.cert")), "No such file")

    def test_sanNotCovering(self):
        """
        A server certificate (C{--peer-cert}) that does not name the host a
        TLS client dials is named, with the names it has.
        """
        self.assertProblem(self.check(*self.client("tunnel.example.com", "--peer-cert", self.files["server"][0])),
                           "--peer-cert '{}' does not name 'tunnel.example.com'".format(self.files["server"][0]),
                           "tls/client:tunnel.example.com:12345", "DNS:localhost, IP:127.0.0.1")

    def test_sanIPAddress(self):
        """
        An IP address dialled must be an IP address SAN: a DNS name of the
        same text does not do.
        """
        named = certs.make(self.path("named"), server_names=("192.0.2.10",))
        dns = certs.make(self.path("dns"), server_names=("localhost",))
        self.assertEqual(self.check(*self.client("192.0.2.10", "--ca-cert", named["ca"][0],
                                                 "--peer-cert", named["server"][0]))[0], 0)
        self.assertProblem(self.check(*self.client("127.0.0.1", "--ca-cert", dns["ca"][0],
                                                   "--peer-cert", dns["server"][0])),
                           "does not name '127.0.0.1'")

    def test_grpcs(self):
        """
        grpcs/ ends are checked as tls/ ends are: their certificates'
        dates, and a peer certificate against the host a client dials.
        """
        server = [arg.replace("tls/server:", "grpcs/server:") for arg in self.server()]
        code, out, err = self.check(*server)
        self.assertEqual((code, err), (0, ""))
        self.assertIn("--cert '{}': valid until".format(self.files["server"][0]), out)
        client = [arg.replace("tls/client:", "grpcs/client:")
                  for arg in self.client("tunnel.example.com", "--peer-cert", self.files["server"][0])]
        self.assertProblem(self.check(*client), "does not name 'tunnel.example.com'",
                           "grpcs/client:tunnel.example.com:12345")

    def test_sanCovering(self):
        """
        The host name dialled, named in the server certificate, passes.
        """
        code, out, err = self.check(*self.client("localhost", "--peer-cert", self.files["server"][0]))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("--peer-cert '{}' names 'localhost'".format(self.files["server"][0]), out)

    def test_peerOtherCA(self):
        """
        A peer certificate from another CA is named.
        """
        other = certs.make(self.path("other"), prefix="other-")
        self.assertProblem(self.check(*self.client("localhost", "--peer-cert", other["server"][0])),
                           "--peer-cert '{}': not signed by --ca-cert".format(other["server"][0]))

    def test_peerCertDevZero(self):
        """
        C{--peer-cert /dev/zero} (and C{--ca-cert}) is one line, exit 2:
        what is read is bounded (issue 25, item 6).
        """
        self.assertProblem(self.check(*self.client("localhost", "--peer-cert", "/dev/zero")),
                           "--peer-cert '/dev/zero': over 1048576 bytes")
        args = self.client("localhost")
        args[args.index("--ca-cert") + 1] = "/dev/zero"
        self.assertProblem(self.check(*args), "--ca-cert '/dev/zero': over 1048576 bytes")

    def test_peerWithoutTLS(self):
        """
        C{--peer-cert} for a tunnel without TLS is a mistake, and said so.
        """
        self.assertProblem(self.check("--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:1",
                                      "--peer-cert", self.files["server"][0]), "neither end uses TLS")

    def test_command(self):
        """
        C{uhppoted-tunnel check} is the command, Go's single-dash flags
        included.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(cli.sys, "stdout", out)
        self.patch(cli.sys, "stderr", err)
        code = cli.main(["check", "-in", "udp/listen:127.0.0.1:60000", "-out", "tcp/server:127.0.0.1:1",
                         "--lockfile", self.lockfile], reactor=object())
        self.assertEqual((code, err.getvalue()), (0, ""))
        self.assertIn("configuration OK", out.getvalue())


class WebSocketCheckTests(SynchronousTestCase):
    """
    wss/ ends are checked as tls/ ones are, their path aside.
    """

    setUp = CheckTests.setUp
    path = CheckTests.path
    check = CheckTests.check
    assertProblem = CheckTests.assertProblem

    def server(self, *args):
        arguments = CheckTests.server(self, *args)
        arguments[3] = "wss/server:127.0.0.1:12345/tunnel"
        return arguments

    def client(self, host="localhost", *args):
        arguments = CheckTests.client(self, host, *args)
        arguments[1] = "wss/client:{}:12345/tunnel".format(host)
        return arguments

    def test_goodServer(self):
        """
        A good wss/ server configuration passes, saying until when each
        certificate is valid.
        """
        code, out, err = self.check(*self.server())
        self.assertEqual((code, err), (0, ""))
        self.assertIn("configuration OK: udp/listen:127.0.0.1:60000 -> wss/server:127.0.0.1:12345/tunnel", out)
        self.assertIn("--cert '{}': valid until".format(self.files["server"][0]), out)

    def test_missingFile(self):
        """
        A missing certificate is named.
        """
        self.assertProblem(self.check(*self.server("--ca-cert", self.path("none.cert"))),
                           "--ca-cert '{}'".format(self.path("none.cert")), "No such file")

    def test_sanCovering(self):
        """
        The host name a wss/ client dials, named in the server certificate,
        passes.
        """
        code, out, err = self.check(*self.client("localhost", "--peer-cert", self.files["server"][0]))
        self.assertEqual((code, err), (0, ""))
        self.assertIn("--peer-cert '{}' names 'localhost'".format(self.files["server"][0]), out)

    def test_sanNotCovering(self):
        """
        A server certificate that does not name the host a wss/ client
        dials is named.
        """
        self.assertProblem(self.check(*self.client("tunnel.example.com", "--peer-cert", self.files["server"][0])),
                           "--peer-cert '{}' does not name 'tunnel.example.com'".format(self.files["server"][0]),
                           "wss/client:tunnel.example.com:12345/tunnel")

    def test_badTokenFile(self):
        """
        A --token-file that cannot be read is named.
        """
        self.assertProblem(self.check(*self.server("--token-file", self.path("none"))),
                           "--token-file '{}': No such file".format(self.path("none")))


class Settings(dict):
    """
    Parsed options as L{check.validate_options} reads them: values, and
    where each came from.
    """

    def __init__(self, values, sources=None):
        dict.__init__(self, values)
        self.sources = sources or {}


class PluginValidationTests(SynchronousTestCase):
    """
    C{check} runs the validations connector plugins declare for their
    options.
    """

    def plugins(self):
        def even(value, settings):
            return None if value % 2 == 0 else "{} is odd: give an even number".format(value)

        return [ConnectorPlugin("fake", "fake.module:Maker", {"fake/": (BOTH, False)},
                                options=[Option("fake-count", "A count.", default=2, validate=even),
                                         Option("fake-name", "A name.")])]

    def test_passes(self):
        """
        Values the validations accept, and unset ones, pass.
        """
        check.validate_options(Settings({"fake-count": 4, "fake-name": None}), self.plugins())

    def test_flag(self):
        """
        A refused value fails with the plugin's message after the flag.
        """
        e = self.assertRaises(check.CheckFailed, check.validate_options,
                              Settings({"fake-count": 3}), self.plugins())
        self.assertEqual(str(e), "--fake-count: 3 is odd: give an even number")

    def test_file(self):
        """
        A refused value from the TOML file is named by its file, section and
        key.
        """
        e = self.assertRaises(check.CheckFailed, check.validate_options,
                              Settings({"fake-count": 5}, {"fake-count": "t.toml [site] fake-count"}), self.plugins())
        self.assertEqual(str(e), "t.toml [site] fake-count: 5 is odd: give an even number")
