"""
Tests for L{uhppoted_tunnel.app.demo}: the README's first command.
"""

import io

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase

from uhppoted_tunnel import emulator
from uhppoted_tunnel.app import config
from uhppoted_tunnel.app import demo


class DemoTests(TestCase):
    timeout = 60

    def test_demo(self):
        """
        The demo relays a get-all-controllers broadcast and a get-time
        through a real host and site pair on loopback, prints every
        controller and the commands for the two halves, and the address of
        the controller console, whose page and /udp/send answered; and
        stops everything it started.
        """
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        out = io.StringIO()

        def check(result):
            text = out.getvalue()
            self.assertEqual(result, 0, text)
            self.assertIn("2 replies", text)
            for serial in emulator.DEFAULT_SERIALS:
                self.assertIn(str(serial), text)
            self.assertIn("host: uhppoted-tunnel --in udp/listen:127.0.0.1:", text)
            self.assertIn("get-time {}: {}: 20".format(emulator.DEFAULT_SERIALS[0], emulator.DEFAULT_SERIALS[0]), text)
            self.assertRegex(text, r"serves the controller console at http://127\.0\.0\.1:\d+/console/")
            self.assertIn("the console's page answered 200; get-time from its /udp/send: {}: 20".format(
                emulator.DEFAULT_SERIALS[0]), text)

        return ensureDeferred(demo.demo(reactor, out)).addCallback(check)
