"""
Tests for L{uhppoted_tunnel.app.daemonize} and L{uhppoted_tunnel.app.unit}: the units written and removed, and
what is refused.
"""

import io
import os

from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app import cli
from uhppoted_tunnel.app import config
from uhppoted_tunnel.app import daemonize, unit

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHIPPED = os.path.join(ROOT, "uhppoted_tunnel", "data", "systemd")

HOST = ["--in", "udp/listen:0.0.0.0:60000", "--out", "tcp/server:0.0.0.0:12345"]


def lines(text):
    return [line for line in text.splitlines() if line and not line.startswith("#")]


class NameTests(SynchronousTestCase):
    def test_default(self):
        """
        The default label names C{uhppoted-tunnel.service}.
        """
        self.assertEqual(unit.unit_name("uhppoted-tunnel"), "uhppoted-tunnel")

    def test_label(self):
        """
        Another label names C{uhppoted-tunnel-LABEL}, as the Go tunnel does;
        a label already so named is kept.
        """
        self.assertEqual(unit.unit_name("site"), "uhppoted-tunnel-site")
        self.assertEqual(unit.unit_name("uhppoted-tunnel-site"), "uhppoted-tunnel-site")

    def test_badLabel(self):
        """
        A label that cannot be part of a unit name is refused.
        """
        for label in ("", "a b", "x@y", "../etc", "a/b"):
            e = self.assertRaises(unit.DaemonizeError, unit.unit_name, label)
            self.assertIn("--label", str(e))

    def test_quote(self):
        """
        Specifiers and variables are escaped; arguments with spaces or
        quotes are quoted.
        """
        self.assertEqual(unit.quote("tcp/server:0.0.0.0:12345"), "tcp/server:0.0.0.0:12345")
        self.assertEqual(unit.quote("/etc/x.toml#host"), "/etc/x.toml#host")
        self.assertEqual(unit.quote("50%"), "50%%")
        self.assertEqual(unit.quote("$HOME"), "$$HOME")
        self.assertEqual(unit.quote('/my dir/a"b'), '"/my dir/a\\"b"')
        self.assertEqual(unit.quote(""), '""')


class DaemonizeTests(SynchronousTestCase):
    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.units = os.path.join(self.folder, "units")
        self.config = os.path.join(self.folder, "tunnel.toml")
        with open(self.config, "w") as f:
            f.write('[host]\nin = "udp/listen:0.0.0.0:60000"\nout = "tcp/server:0.0.0.0:12345"\n'
                    '[site]\nin = "tcp/client:192.0.2.1:12345"\nout = "udp/broadcast:192.0.2.255:60000"\n'
                    'label = "north"\nuser = "tunnel:tunnels"\n'
                    '[events]\nin = "udp/event:0.0.0.0:60001"\nout = "tcp/client:192.0.2.1:12346"\n')
        self.created = []
        self.existing = set()

    def daemonize(self, *args, systemd_running=None):
        out = io.StringIO()
        path = daemonize.daemonize(list(args), out, systemd_running=systemd_running or self.folder,
                                   user_exists=lambda name: name in self.existing,
                                   make_user=lambda user, group: self.created.append((user, group)))
        with open(path) as f:
            return path, f.read(), out.getvalue()

    def test_writes(self):
        """
        The unit runs the installed command with the config file (made
        absolute) and the other run flags given, checks first, notifies,
        and is hardened; daemonize's own flags are not passed on.
        """
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.folder)
        path, text, out = self.daemonize("--config", "tunnel.toml#host", "--unit-dir", self.units,
                                         "--udp-timeout", "1s", "--user", "uhppoted", "--label=uhppoted-tunnel")
        self.assertEqual(path, os.path.join(self.units, "uhppoted-tunnel.service"))
        command = daemonize.installed_command()
        self.assertIn("\nExecStart={} run --config {}#host --udp-timeout 1s\n".format(command, self.config), text)
        self.assertIn("\nExecStartPre={} check --config {}#host --udp-timeout 1s\n".format(command, self.config),
                      text)
        for line in ["Type=notify", "User=uhppoted", "DynamicUser=yes", "StateDirectory=uhppoted-tunnel",
                     "RuntimeDirectory=uhppoted-tunnel/%N", "LimitNOFILE=4096", "CapabilityBoundingSet=",
                     "AmbientCapabilities=", "WorkingDirectory=" + self.folder, "WantedBy=multi-user.target"]:
            self.assertIn(line, lines(text))
        for line in lines(unit.HARDENING):
            self.assertIn(line, lines(text))
        self.assertNotIn("CAP_NET_RAW", text)
        self.assertIn("wrote " + path, out)
        self.assertIn("systemctl enable --now uhppoted-tunnel\n", out)

    def test_goFlags(self):
        """
        The Go tunnel's spellings work: C{-label}, C{-user}, C{-config}.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(cli.sys, "stdout", out)
        self.patch(cli.sys, "stderr", err)
        self.patch(daemonize, "_user_exists", lambda name: True)
        code = cli.main(["daemonize", "-label", "east", "-user", "tunnel", "-config", self.config + "#host",
                         "--unit-dir", self.units])
        self.assertEqual((code, err.getvalue()), (0, ""))
        with open(os.path.join(self.units, "uhppoted-tunnel-east.service")) as f:
            text = f.read()
        self.assertIn("User=tunnel\n", text)
        self.assertIn("run --config {}#host\n".format(self.config), text)

    def test_tomlLabelUser(self):
        """
        The section's C{label} and C{user} name the unit and its user
        (group too) unless given as flags.
        """
        path, text, out = self.daemonize("--config", self.config + "#site", "--unit-dir", self.units)
        self.assertEqual(os.path.basename(path), "uhppoted-tunnel-north.service")
        self.assertIn("\nUser=tunnel\nGroup=tunnels\n", text)
        self.assertIn("undaemonize --label north", text)
        path, text, out = self.daemonize("--config", self.config + "#site", "--unit-dir", self.units,
                                         "--label", "south", "--user", "other")
        self.assertEqual(os.path.basename(path), "uhppoted-tunnel-south.service")
        self.assertIn("\nUser=other\nDynamicUser", text)

    def test_interfaceCapability(self):
        """
        Binding an interface (C{::IFACE:}) gets C{CAP_NET_RAW}, and only
        then.
        """
        path, text, out = self.daemonize("--in", "udp/listen:0.0.0.0:60000", "--out", "tcp/client::lo:192.0.2.1:1",
                                         "--unit-dir", self.units)
        self.assertIn("\nCapabilityBoundingSet=CAP_NET_RAW\nAmbientCapabilities=CAP_NET_RAW\n", text)
        self.assertNotIn("PrivateUsers=yes", text)
        self.assertIn("run --in udp/listen:0.0.0.0:60000 --out tcp/client::lo:192.0.2.1:1\n", text)

    def test_noSystemd(self):
        """
        Where systemd is not running, and no --unit-dir is given, daemonize
        refuses, saying so.
        """
        e = self.assertRaises(unit.DaemonizeError, self.daemonize, "--config", self.config + "#host",
                              systemd_running=os.path.join(self.folder, "no-systemd"))
        self.assertIn("systemd is not running here", str(e))
        self.assertIn("--unit-dir", str(e))
        self.assertEqual(e.code, 2)

    def test_goRefusedConnectors(self):
        """
        Connectors the Go tunnel's daemonize refuses (udp/event, ip/out,
        the event stream aliases) are refused, naming the connector.
        """
        for args in (["--config", self.config + "#events"],
                     ["--in", "udp/listen:0.0.0.0:60000", "--out", "ip/out:192.0.2.255:60000"],
                     ["--in", "tcp/event/server:0.0.0.0:1", "--out", "udp/event:127.0.0.1:60001"]):
            e = self.assertRaises(unit.DaemonizeError, self.daemonize, "--unit-dir", self.units, *args)
            self.assertIn("is not taken by daemonize, as with the Go tunnel", str(e))
        self.assertFalse(os.path.exists(self.units) and os.listdir(self.units))

    def test_badOptions(self):
        """
        A bad run option is a usage error, as for run.
        """
        self.assertRaises(usage.UsageError, self.daemonize, "--unit-dir", self.units, "--in", "udp/listen:x",
                          "--out", "tcp/server:0.0.0.0:1", "--udp-timeout", "soon")

    def test_badUser(self):
        """
        A user that is not a user name is refused.
        """
        e = self.assertRaises(unit.DaemonizeError, self.daemonize, "--unit-dir", self.units, *HOST,
                              "--user", "root; rm")
        self.assertIn("--user", str(e))

    def test_missingUser(self):
        """
        A user that does not exist is named, with how to create it; with
        --create-user it is created.
        """
        path, text, out = self.daemonize("--unit-dir", self.units, *HOST)
        self.assertIn("user 'uhppoted' does not exist", out)
        self.assertEqual(self.created, [])
        path, text, out = self.daemonize("--unit-dir", self.units, "--create-user", "--user", "u:g", *HOST)
        self.assertEqual(self.created, [("u", "g")])
        self.assertNotIn("does not exist", out)
        self.existing.add("uhppoted")
        path, text, out = self.daemonize("--unit-dir", self.units, "--create-user", *HOST)
        self.assertEqual(self.created, [("u", "g")])

    def test_createUserNeedsRoot(self):
        """
        Creating a user needs root: said so, exit code 1.
        """
        self.patch(daemonize.os, "geteuid", lambda: 1000)
        e = self.assertRaises(unit.DaemonizeError, daemonize.create_user, "uhppoted", None)
        self.assertIn("needs root", str(e))
        self.assertEqual(e.code, 1)

    def test_createUser(self):
        """
        As root, a system user with no login and no home is created.
        """
        self.patch(daemonize.os, "geteuid", lambda: 0)
        ran = []

        class Result:
            returncode = 0
            stderr = ""

        daemonize.create_user("uhppoted", None, run=lambda command, **kw: ran.append(command) or Result())
        (command,) = ran
        self.assertEqual(command[1:], ["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell",
                                       "/usr/sbin/nologin", "--user-group", "uhppoted"])

    def test_homeWarning(self):
        """
        A command under a home folder, which ProtectHome= hides, is a
        warning.
        """
        executable = os.path.join(self.folder, "uhppoted-tunnel")
        with open(executable, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(executable, 0o755)
        self.patch(daemonize, "under_home", lambda path: True)
        path, text, out = self.daemonize("--unit-dir", self.units, "--executable", executable, *HOST)
        self.assertIn("ProtectHome=yes", out)

    def test_underHome(self):
        """
        Home folders are those ProtectHome=yes hides.
        """
        for path in ("/home/me/.venv/bin/uhppoted-tunnel", "/root/bin/x", "/run/user/1000/x"):
            self.assertTrue(unit.under_home(path), path)
        for path in ("/opt/uhppoted/bin/uhppoted-tunnel", "/usr/local/bin/x", "/homework/x"):
            self.assertFalse(unit.under_home(path), path)

    def test_executable(self):
        """
        The command must be an executable file.
        """
        e = self.assertRaises(unit.DaemonizeError, self.daemonize, "--unit-dir", self.units,
                              "--executable", self.config, *HOST)
        self.assertIn("not an executable file", str(e))


class UndaemonizeTests(SynchronousTestCase):
    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.units = os.path.abspath(self.mktemp())

    def test_removes(self):
        """
        undaemonize removes the unit daemonize wrote for the same label.
        """
        daemonize.daemonize(["--unit-dir", self.units, "--label", "west"] + HOST, io.StringIO(),
                            user_exists=lambda name: True)
        path = os.path.join(self.units, "uhppoted-tunnel-west.service")
        self.assertTrue(os.path.exists(path))
        out = io.StringIO()
        daemonize.undaemonize(["--unit-dir", self.units, "--label", "west"], out)
        self.assertFalse(os.path.exists(path))
        self.assertIn("removed " + path, out.getvalue())

    def test_nothing(self):
        """
        No unit, nothing to do, said so.
        """
        out = io.StringIO()
        daemonize.undaemonize(["--unit-dir", self.units], out)
        self.assertIn("nothing to do", out.getvalue())

    def test_stopsFirst(self):
        """
        From the system's unit folder, the unit is stopped and disabled
        before it is removed.
        """
        os.makedirs(self.units)
        self.patch(daemonize, "UNIT_DIR", self.units)
        path = os.path.join(self.units, "uhppoted-tunnel.service")
        open(path, "w").close()
        calls = []
        daemonize.undaemonize([], io.StringIO(), systemctl=lambda *args: calls.append(args) or (0, ""),
                              systemd_running=self.units)
        self.assertEqual(calls, [("disable", "--now", "uhppoted-tunnel.service")])
        self.assertFalse(os.path.exists(path))

    def test_noSystemd(self):
        """
        Without systemd and --unit-dir, undaemonize refuses.
        """
        e = self.assertRaises(unit.DaemonizeError, daemonize.undaemonize, [], io.StringIO(),
                              systemd_running=os.path.join(self.units, "none"))
        self.assertIn("systemd is not running here", str(e))

    def test_command(self):
        """
        C{uhppoted-tunnel undaemonize} refuses in one line, exit code 2.
        """
        out, err = io.StringIO(), io.StringIO()
        self.patch(cli.sys, "stdout", out)
        self.patch(cli.sys, "stderr", err)
        self.patch(daemonize, "SYSTEMD_RUNNING", os.path.join(self.units, "none"))
        self.assertEqual(cli.main(["undaemonize", "-label", "x"]), 2)
        self.assertEqual(err.getvalue().count("\n"), 1)


class ShippedUnitTests(SynchronousTestCase):
    """
    The units in uhppoted_tunnel/data/systemd are hardened as the written ones are.
    """

    def read(self, name):
        with open(os.path.join(SHIPPED, name)) as f:
            return f.read()

    def test_hardened(self):
        """
        Every shipped service has the same hardening, no capability, and
        notifies.
        """
        for name in ("uhppoted-tunnel@.service", "uhppoted-tunnel-host.service"):
            text = lines(self.read(name))
            for line in lines(unit.HARDENING) + lines(unit.NO_CAPABILITIES) + [
                    "Type=notify", "DynamicUser=yes", "User=uhppoted", "StateDirectory=uhppoted-tunnel",
                    "RuntimeDirectory=uhppoted-tunnel/%N", "LimitNOFILE=4096"]:
                self.assertIn(line, text, name)

    def test_purposes(self):
        """
        The templated unit runs the section named by the instance; the
        socket-activated host runs [host-systemd], whose socket it requires.
        """
        self.assertIn("ExecStart=/usr/local/bin/uhppoted-tunnel --config /etc/uhppoted/uhppoted-tunnel.toml#%i",
                      self.read("uhppoted-tunnel@.service"))
        host = self.read("uhppoted-tunnel-host.service")
        self.assertIn("#host-systemd\n", host)
        self.assertIn("Requires=uhppoted-tunnel-host.socket", host)
        self.assertIn("ListenStream=12345", self.read("uhppoted-tunnel-host.socket"))


class UnitSyntaxTests(SynchronousTestCase):
    """
    No value reaches a unit that systemd would read as syntax (issue 25,
    item 8).
    """

    INJECTION = 'udp/listen:127.0.0.1:60000"\nExecStartPre=/bin/touch /tmp/pwned\nEnvironment="A='

    def setUp(self):
        self.folder = os.path.abspath(self.mktemp())
        self.units = os.path.join(self.folder, "units")
        os.makedirs(self.folder)
        self.patch(config, "DEFAULT_CONFIG", os.path.join(self.folder, "none.toml"))

    def refused(self, *args):
        error = self.assertRaises(daemonize.DaemonizeError, daemonize.daemonize, list(args), io.StringIO(),
                                  systemd_running=self.folder, user_exists=lambda name: True,
                                  make_user=lambda user, group: None)
        self.assertEqual(error.code, 2)
        self.assertNotIn("\n", str(error))
        self.assertFalse(os.path.exists(self.units), "a unit was written")
        return str(error)

    def test_injectedNewline(self):
        """
        The issue's injection, a newline in C{--in}'s value, is refused
        with one line naming the flag, and no unit is written.
        """
        message = self.refused("--in", self.INJECTION, "--out", "tcp/server:0.0.0.0:12345",
                               "--unit-dir", self.units)
        self.assertTrue(message.startswith("--in: "), message)
        self.assertIn("end of a line", message)

    def test_everyFlag(self):
        """
        Every flag's value is checked, given apart or with C{=}: any other
        control character, and a lone C{;}, are refused too.
        """
        for extra, flag in [(["--event-spool", "/x\r/y"], "--event-spool"), (["--lockfile=/x\x0b"], "--lockfile"),
                            (["--lockfile", "/x\u2028"], "--lockfile")]:
            message = self.refused(*(HOST + ["--unit-dir", self.units] + extra))
            self.assertTrue(message.startswith(flag + ": "), message)
        self.assertRaises(daemonize.DaemonizeError, unit.refuse_unit_syntax, "--out", ";")

    def test_quotedStillFine(self):
        """
        Quotes, spaces, backslashes and semicolons inside a value are still
        written, quoted.
        """
        self.assertEqual(unit.quote('a "b" c;d\\'), '"a \\"b\\" c;d\\\\"')
        unit.refuse_unit_syntax("--in", 'a "b" c;d\\')
