"""
Tests for L{uhppoted_tunnel.app.options} and the command line's Go flags.
"""

import hashlib
import os
import stat
import textwrap

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app import config
from uhppoted_tunnel.core import eventfiles
from uhppoted_tunnel.app import lockfile
from uhppoted_tunnel.app.cli import _go_flags
from uhppoted_tunnel.app.options import Options

HOST = ["--in", "udp/listen:0.0.0.0:60000", "--out", "tcp/server:0.0.0.0:12345"]


def parse(*args):
    options = Options()
    options.parseOptions(list(args))
    return options


class OptionsTests(SynchronousTestCase):
    def setUp(self):
        # never read the machine's /etc/uhppoted/uhppoted-tunnel.toml
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def test_goDefaults(self):
        """
        Without a config file the Go defaults apply.
        """
        options = parse(*HOST)
        expected = {
            "udp-timeout": 5.0,
            "max-retries": -1,
            "max-retry-delay": 300.0,
            "log-level": "info",
            "rate-limit": 1.0,
            "rate-limit-burst": 120,
            "max-payload": 1024,
            "ca-cert": "ca.cert",
            "html": "./html",
            "debug": False,
            "console": False,
            "client-auth": False,
            "lockfile": lockfile.default_path(HOST[1], HOST[3]),
        }
        self.assertEqual({key: options[key] for key in expected}, expected)
        self.assertEqual(options.ends["in"][1].kind, "udp/listen")
        self.assertEqual(options.ends["out"][1].kind, "tcp/server")

    def test_run(self):
        """
        The Go command's optional C{run} word is accepted; other words are
        not.
        """
        self.assertEqual(parse("run", *HOST)["in"], HOST[1])
        e = self.assertRaises(usage.UsageError, parse, "walk", *HOST)
        self.assertIn("walk", str(e))

    def test_values(self):
        """
        Durations take Go syntax; numbers are checked.
        """
        options = parse(*HOST, "--udp-timeout", "1250ms", "--max-retry-delay", "1m", "--max-retries", "3",
                        "--rate-limit", "2.5", "--rate-limit-burst", "10", "--max-payload", "128")
        self.assertEqual(
            [options[key] for key in ("udp-timeout", "max-retry-delay", "max-retries", "rate-limit",
                                      "rate-limit-burst", "max-payload")],
            [1.25, 60.0, 3, 2.5, 10, 128],
        )

    def test_badValuesNameTheFlag(self):
        """
        A bad value is a usage error naming the flag.
        """
        for flag, value in [("--udp-timeout", "fast"), ("--udp-timeout", "0s"), ("--max-retries", "-2"),
                            ("--rate-limit", "0"), ("--max-payload", "70000"), ("--log-level", "loud")]:
            e = self.assertRaises(usage.UsageError, parse, *HOST, flag, value)
            self.assertTrue(str(e).startswith(flag + ":"), str(e))

    def test_udpReceiveBuffer(self):
        """
        C{--udp-receive-buffer} defaults to 4 MiB, takes a number of bytes
        from the command line or the file, and refuses one too small.
        """
        self.assertEqual(parse(*HOST)["udp-receive-buffer"], 4 << 20)
        self.assertEqual(parse(*HOST, "--udp-receive-buffer", "16777216")["udp-receive-buffer"], 16 << 20)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[defaults]\nudp-receive-buffer = 1048576\n")
        self.assertEqual(parse(*HOST, "--config", path)["udp-receive-buffer"], 1 << 20)
        e = self.assertRaises(usage.UsageError, parse, *HOST, "--udp-receive-buffer", "100")
        self.assertTrue(str(e).startswith("--udp-receive-buffer:"), str(e))

    def test_maxPendingReplies(self):
        """
        C{--max-pending-replies} defaults to 65,536, takes a number from the
        command line or the file, and refuses one under 1.
        """
        self.assertEqual(parse(*HOST)["max-pending-replies"], 65536)
        self.assertEqual(parse(*HOST, "--max-pending-replies", "100")["max-pending-replies"], 100)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[defaults]\nmax-pending-replies = 5000\n")
        self.assertEqual(parse(*HOST, "--config", path)["max-pending-replies"], 5000)
        e = self.assertRaises(usage.UsageError, parse, *HOST, "--max-pending-replies", "0")
        self.assertTrue(str(e).startswith("--max-pending-replies:"), str(e))

    def test_xmpp(self):
        """
        The C{xmpp/} settings come from flags or the file (where the
        password file is named, never the password); C{--xmpp-rate}
        defaults under prosody's limit and refuses a rate too low to carry
        a frame.
        """
        site = ["--in", "xmpp/client:site@example.org", "--out", "udp/broadcast:192.168.1.255:60000"]
        options = parse(*site, "--xmpp-peer", "host@example.org", "--xmpp-password-file", "/etc/site.password",
                        "--xmpp-server", "xmpp.example.org:5222")
        self.assertEqual([options[key] for key in ("xmpp-peer", "xmpp-password-file", "xmpp-server", "xmpp-rate")],
                         ["host@example.org", "/etc/site.password", "xmpp.example.org:5222", 9000])
        self.assertFalse(options["events"])
        self.assertTrue(parse("--in", "xmpp/event/client:site@example.org", "--out", "udp/event:127.0.0.1:60001")
                        ["events"])
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[site]\nxmpp-peer = "host@example.org"\nxmpp-password-file = "/etc/site.password"\n'
                    "xmpp-rate = 20000\n")
        options = parse(*site, "--config", path + "#site")
        self.assertEqual((options["xmpp-peer"], options["xmpp-rate"]), ("host@example.org", 20000))
        e = self.assertRaises(usage.UsageError, parse, *site, "--xmpp-rate", "10")
        self.assertTrue(str(e).startswith("--xmpp-rate:"), str(e))

    def test_endsRequired(self):
        """
        Both connectors are required.
        """
        e = self.assertRaises(usage.UsageError, parse, "--in", "udp/listen:0.0.0.0:60000")
        self.assertIn("--out is required", str(e))

    def test_roles(self):
        """
        A connector that cannot play the role it was given is refused.
        """
        e = self.assertRaises(usage.UsageError, parse, "--in", "udp/broadcast:127.0.0.1:60000", "--out", HOST[3])
        self.assertEqual(str(e), "--in: 'udp/broadcast' cannot be an in connector")

    def test_unknownConnector(self):
        """
        An unknown connector kind is refused, naming the flag and the kinds
        there are.
        """
        e = self.assertRaises(usage.UsageError, parse, "--in", HOST[1], "--out", "carrier/pigeon:1")
        self.assertIn("--out: unknown connector 'carrier/pigeon:1'", str(e))
        self.assertIn("tcp/client:", str(e))

    def test_debug(self):
        """
        --debug turns on debug logging.
        """
        self.assertEqual(parse(*HOST, "--debug")["log-level"], "debug")

    def test_goSingleDashFlags(self):
        """
        Go's single-dash long flags are accepted.
        """
        options = parse(*_go_flags(["-in", HOST[1], "-out=" + HOST[3], "-udp-timeout", "2s", "-debug"]))
        self.assertEqual((options["in"], options["out"], options["udp-timeout"], options["debug"]),
                         (HOST[1], HOST[3], 2.0, True))


class UnitDirectoryTests(SynchronousTestCase):
    """
    Under a systemd unit with C{RuntimeDirectory=} and C{StateDirectory=},
    the lockfile and the event spool default to those folders.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def parse(self, environ, *args):
        options = Options()
        options.environ = environ
        options.parseOptions(list(HOST) + list(args))
        return options

    def test_runtimeDirectory(self):
        """
        The default lockfile goes in C{RUNTIME_DIRECTORY} (the first, when
        several); the spool never does (systemd removes that folder when the
        unit stops), but goes to the state folder.
        """
        environ = {"RUNTIME_DIRECTORY": "/run/uhppoted-tunnel/host:/run/other"}
        options = self.parse(environ)
        self.assertEqual(options["lockfile"], lockfile.default_path(HOST[1], HOST[3], "/run/uhppoted-tunnel/host"))
        self.assertEqual(options["event-spool"],
                         eventfiles.default_spool(HOST[1], HOST[3], eventfiles.state_directory(environ)))

    def test_stateDirectory(self):
        """
        The default event spool goes in C{STATE_DIRECTORY}, named as the
        lockfile is, so that it outlives the service's private /tmp.
        """
        options = self.parse({"STATE_DIRECTORY": "/var/lib/uhppoted-tunnel"})
        self.assertEqual(options["event-spool"],
                         eventfiles.default_spool(HOST[1], HOST[3], "/var/lib/uhppoted-tunnel"))
        self.assertEqual(options["lockfile"], lockfile.default_path(HOST[1], HOST[3],
                                                                    lockfile.default_directory({})))

    def test_given(self):
        """
        A lockfile or spool given is used as given.
        """
        options = self.parse({"RUNTIME_DIRECTORY": "/run/x", "STATE_DIRECTORY": "/var/lib/x"},
                             "--lockfile", "/tmp/t.pid", "--event-spool", "/srv/spool")
        self.assertEqual((options["lockfile"], options["event-spool"]), ("/tmp/t.pid", "/srv/spool"))


class ConfigFileTests(SynchronousTestCase):
    def write(self, text):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(textwrap.dedent(text))
        return path

    def setUp(self):
        self.path = self.write("""
            [defaults]
            udp-timeout = "2s"
            max-retries = 5
            rate-limit = 10

            [site]
            in = "tcp/client:127.0.0.1:12345"
            out = "udp/broadcast:127.0.0.1:60000"
            udp-timeout = "1s"
            debug = true
            interfaces = { out = "lo" }

            [broken]
            in = "udp/listen:0.0.0.0:60000"
            out = "tcp/server:0.0.0.0:12345"
            udp-timeout = "soon"
            """)

    def test_precedence(self):
        """
        The command line beats the section, which beats [defaults], which
        beats the built-in defaults.
        """
        options = parse("--config", self.path + "#site", "--max-retries", "7")
        self.assertEqual(options["in"], "tcp/client:127.0.0.1:12345")
        self.assertEqual((options["udp-timeout"], options["max-retries"], options["rate-limit"],
                          options["rate-limit-burst"], options["debug"]), (1.0, 7, 10.0, 120, True))

    def test_goSectionSyntax(self):
        """
        FILE::SECTION works like FILE#SECTION.
        """
        self.assertEqual(parse("--config", self.path + "::site")["udp-timeout"], 1.0)

    def test_defaultsOnly(self):
        """
        --config FILE alone applies [defaults] only.
        """
        options = parse("--config", self.path, *HOST)
        self.assertEqual((options["udp-timeout"], options["max-retries"]), (2.0, 5))

    def test_interfaces(self):
        """
        The interfaces table binds an end to an interface.
        """
        options = parse("--config", self.path + "#site")
        self.assertEqual(options.ends["out"][1].interface, "lo")
        self.assertIsNone(options.ends["in"][1].interface)

    def test_badValueNamesFileSectionKey(self):
        """
        A bad value in the file is a usage error naming file, section and
        key.
        """
        e = self.assertRaises(usage.UsageError, parse, "--config", self.path + "#broken")
        self.assertIn(self.path, str(e))
        self.assertIn("[broken] udp-timeout", str(e))

    def test_badConnectorInFile(self):
        """
        A bad connector from the file names where it came from.
        """
        path = self.write("""
            [x]
            in = "udp/listen:0.0.0.0:60000"
            out = "tcp/nowhere:1"
            """)
        e = self.assertRaises(usage.UsageError, parse, "--config", path + "#x")
        self.assertIn("[x] out: unknown connector", str(e))

    def test_missingSection(self):
        """
        A section that is not in the file is an error.
        """
        e = self.assertRaises(usage.UsageError, parse, "--config", self.path + "#nosuch")
        self.assertIn("nosuch", str(e))


class SampleConfigTests(SynchronousTestCase):
    def test_everySectionParses(self):
        """
        Every section of the sample uhppoted_tunnel/data/uhppoted-tunnel.toml is a valid
        tunnel configuration.
        """
        import os
        import tomllib

        path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "uhppoted_tunnel", "data", "uhppoted-tunnel.toml")
        with open(path, "rb") as f:
            sections = [name for name in tomllib.load(f) if name != "defaults"]
        self.assertIn("host", sections)
        for section in sections:
            options = parse("--config", path + "#" + section)
            self.assertEqual(set(options.ends), {"in", "out"}, section)


class StateTests(SynchronousTestCase):
    """
    Where an event tunnel keeps its state, and the check, before anything
    listens, that it can.
    """

    SITE = ["--in", "udp/event:0.0.0.0:60001", "--out", "tcp/client:127.0.0.1:12346"]

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)

    def test_stateDirectory(self):
        """
        C{$STATE_DIRECTORY} under systemd (its first entry); else
        C{/var/lib/uhppoted-tunnel} for root; else C{$XDG_STATE_HOME} or
        C{~/.local/state}, with a folder of its own.
        """
        state = eventfiles.state_directory
        self.assertEqual(state({"STATE_DIRECTORY": "/var/lib/a:/var/lib/b"}, 1000), "/var/lib/a")
        self.assertEqual(state({}, 0), "/var/lib/uhppoted-tunnel")
        self.assertEqual(state({"XDG_STATE_HOME": "/home/u/.st"}, 1000), "/home/u/.st/uhppoted-tunnel")
        self.assertEqual(state({"XDG_STATE_HOME": "relative"}, 1000),
                         os.path.join(os.path.expanduser("~"), ".local", "state", "uhppoted-tunnel"))

    def test_defaultSpool(self):
        """
        Without C{--event-spool} the spool is C{events-<sha1(in+out)>} in
        the state folder, never in the temporary folder; with a
        C{--lockfile} it is beside it, as in round 1.
        """
        self.patch(eventfiles, "state_directory", lambda environ=None: "/state")
        digest = hashlib.sha1((self.SITE[1] + self.SITE[3]).encode()).hexdigest()
        self.assertEqual(parse(*self.SITE)["event-spool"], "/state/events-" + digest)
        lock = os.path.join(self.folder, "site.pid")
        self.assertEqual(parse(*self.SITE, "--lockfile", lock)["event-spool"], os.path.join(self.folder, "site"))

    def test_defaultFolderCreatedPrivate(self):
        """
        The default state folder is made, mode 0700, by the check before
        anything listens; parsing alone touches nothing.
        """
        state = os.path.join(self.folder, "state", "uhppoted-tunnel")
        self.patch(eventfiles, "state_directory", lambda environ=None: state)
        options = parse(*self.SITE)
        self.assertFalse(os.path.exists(state))
        options.checkFiles()
        self.assertEqual(stat.S_IMODE(os.stat(state).st_mode), 0o700)

    def test_unwritable(self):
        """
        A spool that cannot be written is a one-line error naming the
        setting; so is a spool file that is a symbolic link. A tunnel that
        relays no events is not checked.
        """
        blocker = os.path.join(self.folder, "file")
        open(blocker, "w").close()
        spool = os.path.join(blocker, "site")
        e = self.assertRaises(ValueError, parse(*self.SITE, "--event-spool", spool).checkFiles)
        self.assertEqual(str(e), "--event-spool {}: {} is not a folder".format(spool, blocker))
        parse(*HOST, "--event-spool", spool).checkFiles()

        spool = os.path.join(self.folder, "site")
        os.symlink(blocker, spool + ".events")
        e = self.assertRaises(ValueError, parse(*self.SITE, "--event-spool", spool).checkFiles)
        self.assertEqual(str(e), "--event-spool {}: {}.events is a symbolic link: refusing to use it".format(
            spool, spool))
        self.assertNotIn("\n", str(e))

    def test_fromFile(self):
        """
        A spool set in the TOML file is named by file, section and key.
        """
        blocker = os.path.join(self.folder, "file")
        open(blocker, "w").close()
        path = os.path.join(self.folder, "tunnel.toml")
        with open(path, "w") as f:
            f.write('[site]\nevent-spool = "{}/x"\n'.format(blocker))
        e = self.assertRaises(ValueError, parse(*self.SITE, "--config", path + "#site").checkFiles)
        self.assertTrue(str(e).startswith(path + " [site] event-spool "), str(e))


class MonitoringOptionsTests(SynchronousTestCase):
    """
    C{--metrics} and C{--log-format}, on the command line and in the file.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def test_defaults(self):
        """
        No metrics address, and the Go console layout.
        """
        options = parse(*HOST)
        self.assertEqual((options["metrics"], options["log-format"]), (None, "text"))

    def test_flags(self):
        """
        Both are taken from the command line; the format in any case.
        """
        options = parse(*HOST, "--metrics", "127.0.0.1:9100", "--log-format", "JSON")
        self.assertEqual((options["metrics"], options["log-format"]), ("127.0.0.1:9100", "json"))

    def test_badFormat(self):
        """
        Another log format is a usage error naming the flag.
        """
        e = self.assertRaises(usage.UsageError, parse, *HOST, "--log-format", "xml")
        self.assertIn("--log-format", str(e))
        self.assertIn("text or json", str(e))

    def test_file(self):
        """
        The TOML keys C{metrics} and C{log-format}.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[host]\nmetrics = "127.0.0.1:9100"\nlog-format = "json"\n')
        options = parse("--config", path + "#host", *HOST)
        self.assertEqual((options["metrics"], options["log-format"]), ("127.0.0.1:9100", "json"))


class WebSocketOptionsTests(SynchronousTestCase):
    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def test_defaults(self):
        """
        No origins, no token, no trusted proxies, a ping every 30 s.
        """
        options = parse(*HOST)
        self.assertEqual([options[key] for key in ("ws-origins", "token-file", "trusted-proxies", "ws-ping")],
                         [(), None, (), 30.0])

    def test_repeatable(self):
        """
        --ws-origin and --trusted-proxy repeat and take comma lists, and
        replace what the file says.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[defaults]\nws-origins = ["https://file.example.com"]\ntrusted-proxies = ["10.0.0.1"]\n')
        options = parse(*HOST, "--config", path, "--ws-origin", "https://a.example.com,https://b.example.com",
                        "--ws-origin", "http://c:8080", "--trusted-proxy", "127.0.0.1")
        self.assertEqual(options["ws-origins"], ["https://a.example.com", "https://b.example.com", "http://c:8080"])
        self.assertEqual(options["trusted-proxies"], ["127.0.0.1/32"])
        self.assertEqual(parse(*HOST, "--config", path)["ws-origins"], ["https://file.example.com"])

    def test_badValuesNameTheFlag(self):
        """
        A bad origin, network or ping interval is a usage error naming the
        flag.
        """
        for flag, value in [("--ws-origin", "null"), ("--trusted-proxy", "proxy.example.com"),
                            ("--ws-ping", "often")]:
            e = self.assertRaises(usage.UsageError, parse, *HOST, flag, value)
            self.assertTrue(str(e).startswith(flag + ":"), str(e))
