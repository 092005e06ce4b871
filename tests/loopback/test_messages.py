# -*- test-case-name: tests.loopback.test_messages -*-
"""
A user's first hour, with real processes: every request accounted for
(unanswered, or held for want of a peer), the start line, traffic at
info, C{check} refusing a misspelt key, and the hints (did you mean, the
sections of a file, Go's C{-h}, C{help COMMAND}, a closed pipe).
"""

import os
import re
import socket

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.loopback.processes import (
    Client,
    child_environment,
    connected_line,
    free_port,
    lockfile,
    run_tunnel,
    start_host,
    start_site,
    tunnel_command,
    workdir,
)
from uhppoted_tunnel import __version__

SERIAL = 405419896


def free_udp_port():
    """
    A loopback UDP port nothing listens on: requests sent there go
    unanswered.
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


class AccountedTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_noPeer(self):
        """
        A host with no site connected warns at once of the first request it
        holds, naming the function and the controller; the start line names
        the version, the system and the PID, and both ends.
        """
        host, udp_port = yield start_host(self, "tcp/server:127.0.0.1:0")
        yield host.waitFor(r"uhppoted-tunnel v{} - \w+ \(PID {}\): starting udp/listen:127\.0\.0\.1:0 -> "
                           r"tcp/server:127\.0\.0\.1:0".format(re.escape(__version__), host.pid))
        Client(udp_port).get_controller(SERIAL, timeout=0.5).addErrback(lambda _: None)
        yield host.waitFor(r"WARN   TCP    no peer connected: holding get-device for controller 405419896 until "
                           r"one connects \(up to 16 requests, each for --udp-timeout 5s\)")

    @inlineCallbacks
    def test_unanswered(self):
        """
        A site whose udp/broadcast reaches no controller warns that the
        request went unanswered within --udp-timeout, naming the function,
        the controller and the end; the host shows the request at info.
        """
        port = free_port()
        nobody = free_udp_port()
        host, udp_port = yield start_host(self, "tcp/server:127.0.0.1:{}".format(port))
        site = start_site(self, "tcp/client:127.0.0.1:{}".format(port), nobody)
        yield site.waitFor(connected_line(port))
        Client(udp_port).get_controller(SERIAL, timeout=0.5).addErrback(lambda _: None)
        yield host.waitFor(r"INFO   RELAY  get-device for controller 405419896 from 127\.0\.0\.1 -> "
                           r"tcp/server:127\.0\.0\.1:{}".format(port))
        yield site.waitFor(r"WARN   UDP    no reply to get-device for controller 405419896 within --udp-timeout "
                           r"\(1s\) on udp/broadcast:127\.0\.0\.1:{}: is the controller on, and at that "
                           r"address\?".format(nobody))


class ConfigTests(TestCase):
    timeout = 60

    def write(self, text):
        path = os.path.join(workdir(self), "tunnel.toml")
        with open(path, "w") as f:
            f.write(text)
        return path

    def command(self, *args):
        return getProcessOutputAndValue(tunnel_command()[0], tunnel_command()[1:] + list(args),
                                        env=child_environment(), path=workdir(self))

    @inlineCallbacks
    def test_checkMisspeltKey(self):
        """
        C{check} fails a file with a misspelt key, naming the file,
        section, key and the closest key, and exits 2; a run of the same
        file warns the same way under the CONFIG tag.
        """
        path = self.write('[defaults]\nudp-timout = "1s"\n\n[host]\nin = "udp/listen:127.0.0.1:0"\n'
                          'out = "tcp/server:127.0.0.1:0"\n')
        out, err, code = yield self.command("check", "--config", path + "#host", "--lockfile",
                                            lockfile(self, "check"))
        self.assertEqual((code, out), (2, b""))
        self.assertEqual(err.decode().splitlines()[-1], "uhppoted-tunnel: {} [defaults] udp-timout: unknown key "
                                                        "(did you mean 'udp-timeout'?)".format(path))
        run = run_tunnel(self, "host", "--config", path + "#host", config=False)
        yield run.waitFor(r"WARN   CONFIG {} \[defaults\] udp-timout: unknown key \(ignored\) \(did you mean "
                          r"'udp-timeout'\?\)".format(re.escape(path)))

    @inlineCallbacks
    def test_sections(self):
        """
        A file given without #SECTION names its sections and how to choose
        one.
        """
        path = self.write('[host]\nin = "udp/listen:127.0.0.1:0"\nout = "tcp/server:127.0.0.1:0"\n\n'
                          '[site]\nin = "tcp/client:127.0.0.1:1"\nout = "udp/broadcast:127.0.0.1:60000"\n')
        out, err, code = yield self.command("--config", path)
        self.assertEqual(code, 2)
        self.assertIn("--in is required: --config {0} has sections host, site: use --config {0}#host".format(path),
                      err.decode())


class HintTests(TestCase):
    timeout = 60

    def command(self, *args):
        return getProcessOutputAndValue(tunnel_command()[0], tunnel_command()[1:] + list(args),
                                        env=child_environment(), path=workdir(self))

    @inlineCallbacks
    def test_hints(self):
        """
        Go's -h and -help print the help; help COMMAND prints that
        command's; a misspelt connector or flag is answered with the
        closest one.
        """
        out, err, code = yield self.command("-h")
        self.assertEqual(code, 0)
        self.assertTrue(out.startswith(b"Usage: uhppoted-tunnel"), out[:80])
        self.assertEqual((yield self.command("-help"))[0], out)
        out, err, code = yield self.command("help", "daemonize")
        self.assertEqual(code, 0)
        self.assertIn(b"--create-user", out)
        out, err, code = yield self.command("--in", "udp/lisen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0")
        self.assertEqual(code, 2)
        self.assertIn(b"unknown connector 'udp/lisen:127.0.0.1:0': did you mean udp/listen:?", err)
        out, err, code = yield self.command("-udp-timout", "1s")
        self.assertEqual(code, 2)
        self.assertIn(b"option --udp-timout not recognized (did you mean --udp-timeout?)", err)

    @inlineCallbacks
    def test_closedPipe(self):
        """
        C{--help | head -1} and C{--help | true}: the reader goes away, and
        the command ends without a traceback.
        """
        command = " ".join("'{}'".format(part) for part in tunnel_command())
        out, err, code = yield getProcessOutputAndValue("/bin/sh", ["-c", command + " --help | head -1"],
                                                        env=child_environment(), path=workdir(self))
        self.assertEqual(out, b"Usage: uhppoted-tunnel [run] --in CONNECTOR --out CONNECTOR [options]\n")
        self.assertNotIn(b"Traceback", err)
        # a reader gone before the first write: the pipe is closed for sure
        out, err, code = yield getProcessOutputAndValue("/bin/sh", ["-c", command + " --help | true"],
                                                        env=child_environment(), path=workdir(self))
        self.assertNotIn(b"Traceback", err)
        self.assertNotIn(b"BrokenPipeError", err)
