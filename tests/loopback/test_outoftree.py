# -*- test-case-name: tests.loopback.test_outoftree -*-
"""
A transport from another distribution brings its own connectors and
options: C{tests/outoftree} (the C{loop/} connectors and
C{--loop-greeting}) is installed with pip into a folder of its own, put on
the children's C{PYTHONPATH}, and the tunnel, unchanged, lists the option
in C{--help}, takes it from the command line and the TOML file, has
C{check} validate it, and relays requests through a C{loop/} pair.
"""

import os
import shutil
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests.loopback.processes import (
    ROOT,
    Client,
    child_environment,
    connected_line,
    listening_line,
    run_tunnel,
    start_emulator,
    tunnel_command,
    workdir,
)

#: the distribution's source
SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "outoftree")

A = 405419896


class OutOfTreeTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def install(self):
        """
        Install the distribution (built from a copy, so that the checkout is
        not written) into a folder of the test's.

        :return: a Deferred firing with the environment for a child that
            sees it.
        """
        source = os.path.join(workdir(self), "source")
        target = os.path.join(workdir(self), "site")
        shutil.copytree(SOURCE, source)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable, ["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
                             "--target", target, source], env=child_environment())
        self.assertEqual(code, 0, (out + err).decode("utf-8", "replace"))
        self.assertTrue(os.path.exists(os.path.join(target, "uhppoted_tunnel", "plugins", "loop.py")))
        return {"PYTHONPATH": os.pathsep.join([ROOT, target])}

    @inlineCallbacks
    def command(self, env, *args):
        out, err, code = yield getProcessOutputAndValue(tunnel_command()[0], tunnel_command()[1:] + list(args),
                                                        env=child_environment(env), path=workdir(self))
        return out.decode("utf-8"), err.decode("utf-8"), code

    @inlineCallbacks
    def test_helpAndCheck(self):
        """
        C{--help} lists the plugin's option under its title; C{check}
        accepts a C{loop/} connector, and refuses a greeting the plugin's
        validation refuses, with the plugin's message; the TOML key is
        converted as the plugin declares.
        """
        env = yield self.install()
        out, err, code = yield self.command(env, "help")
        self.assertEqual(code, 0, err)
        self.assertIn("--loop-greeting=", out.split("Loop (loop/, out of tree) options:")[1])
        self.assertNotIn("--loop-greeting", out.split("Loop (loop/, out of tree) options:")[0])
        ends = ["--in", "udp/listen:127.0.0.1:0", "--out", "loop/server:127.0.0.1:0"]
        out, err, code = yield self.command(env, "check", *ends, "--loop-greeting", "hi")
        self.assertEqual((code, err), (0, ""))
        self.assertIn("configuration OK", out)
        out, err, code = yield self.command(env, "check", *ends, "--loop-greeting", "x" * 40)
        self.assertEqual(code, 2)
        self.assertEqual(err, "uhppoted-tunnel: --loop-greeting: a greeting of 40 characters is over 32: "
                              "shorten it\n")
        config = os.path.join(workdir(self), "loop.toml")
        with open(config, "w") as f:
            f.write("[defaults]\nloop-greeting = 3\n")
        out, err, code = yield self.command(env, "check", "--config", config, *ends)
        self.assertEqual(code, 2)
        self.assertIn("[defaults] loop-greeting: expected a string, got 3", err)

    @inlineCallbacks
    def test_relays(self):
        """
        A C{loop/client} site half and a C{loop/server} host half relay a
        request; each end says its greeting, from the command line or, by
        default, the plugin's.
        """
        env = yield self.install()
        emulator, emulator_port = yield start_emulator(self, A)
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "loop/server:127.0.0.1:0",
                          "--loop-greeting", "good evening", env=env)
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        loop_port = int((yield host.waitFor(listening_line("TCP"))).group(1))
        yield host.waitFor(r"loop/server greets: good evening")
        site = run_tunnel(self, "site", "--in", "loop/client:127.0.0.1:{}".format(loop_port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s", env=env)
        yield site.waitFor(r"loop/client greets: hello")
        yield site.waitFor(connected_line(loop_port))
        reply = yield Client(udp_port).get_controller(A)
        self.assertEqual(reply.controller, A)
