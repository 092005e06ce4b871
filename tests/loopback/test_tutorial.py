# -*- test-case-name: tests.loopback.test_tutorial -*-
"""
The tutorial (C{docs/tutorial.rst}) as a reader follows it: its commands,
read from the page, run as written (on free ports instead of 60000, 12345
and 8080, each half with a lockfile and an empty configuration of the
test's own), and curl's answer holds a reply from each emulated
controller.
"""

import json
import os
import re
import shlex
import struct

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.processes import ROOT, empty_config, free_port, lockfile, spawn, stop, tunnel_command
from tests.tools import require
from uhppoted_tunnel import emulator

TUTORIAL = os.path.join(ROOT, "docs", "tutorial.rst")


def commands():
    """
    The tutorial's commands after its install step: the emulator, the
    site, the host and curl, in order, each as an argument list.
    """
    with open(TUTORIAL, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.startswith("    .venv/bin/uhppoted-tunnel ")
                 or line.startswith("    curl ")]
    return [shlex.split(line) for line in lines]


class TutorialTests(TestCase):
    timeout = 90

    @inlineCallbacks
    def test_tutorial(self):
        """
        The emulator, the site half and the host half of the tutorial make
        a tunnel through which curl's broadcast get-controller is answered
        by both emulated controllers, as the page says.
        """
        curl = require("curl", "curl")
        found = commands()
        self.assertEqual([c[1] if c[0] != "curl" else "curl" for c in found], ["emulator", "--in", "--in", "curl"])
        ports = {"60000": str(free_port()), "12345": str(free_port()), "8080": str(free_port())}

        def local(args):
            return [re.sub(r"\b(60000|12345|8080)\b", lambda m: ports[m.group(1)], arg) for arg in args]

        run_emulator, run_site, run_host, ask = (local(c) for c in found)
        emulated = spawn(self, tunnel_command() + run_emulator[1:], "emulator")
        yield emulated.waitFor(r"^emulator listening on 127\.0\.0\.1:{}$".format(ports["60000"]))
        isolated = ["--config", empty_config(self)]
        site = spawn(self, tunnel_command() + run_site[1:] + isolated + ["--lockfile", lockfile(self, "site")], "site")
        host = spawn(self, tunnel_command() + run_host[1:] + isolated + ["--lockfile", lockfile(self, "host")], "host")
        yield site.waitFor(r"connected to 127\.0\.0\.1:{}".format(ports["12345"]))
        yield host.waitFor(r"listening on 127\.0\.0\.1:{}".format(ports["8080"]))
        asking = spawn(self, [curl] + ask[1:], "curl")
        code = yield asking.exited()
        self.assertEqual(code, 0, asking.output())
        answer = json.loads(asking.output(1))
        self.assertEqual(answer["ID"], 1)
        serials = sorted(struct.unpack("<I", bytes(reply[4:8]))[0] for reply in answer["replies"])
        self.assertEqual(serials, sorted(emulator.DEFAULT_SERIALS))
        self.assertTrue(all(reply[:2] == [23, 148] for reply in answer["replies"]))
        for child in (host, site, emulated):
            code = yield stop(child)
            self.assertIn(code, (0, None), child.output())
