"""
The status page of a real tunnel pair, in headless Chromium: a host half
(C{udp/listen} -> C{tcp/server}) with C{--metrics 127.0.0.1:0}, a site half
(C{tcp/client} -> C{udp/broadcast}) in front of the controller emulator,
and the C{uhppoted} client as the application. The browser reads the page
at C{/} of the host's C{--metrics} address, and the tests assert from its
DOM: the link state, the emulated controllers' serials, the request
counter rising while the test sends requests, and the link going down
when the site is stopped. The same page is at C{/} of an C{http/} end.
"""

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.loopback.browser import Browser, require_browser
from tests.loopback.processes import (
    Client,
    connected_line,
    listening_line,
    run_tunnel,
    start_emulator,
    start_site,
    stop,
)
from tests.loopback.test_metrics import METRICS_LINE
from tests.loopback.test_statuspage import _BrowserTest

A = 405419896
B = 303986753


class RealPairTests(_BrowserTest, TestCase):
    """
    The host's status page while the pair relays, and when the site goes.
    """

    timeout = 180

    @inlineCallbacks
    def setUp(self):
        require_browser()
        self.emulator, emulator_port = yield start_emulator(self, A, B)
        self.host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0",
                               "--metrics", "127.0.0.1:0")
        udp_port = int((yield self.host.waitFor(listening_line("UDP"))).group(1))
        tcp_port = int((yield self.host.waitFor(listening_line("TCP"))).group(1))
        metrics_port = int((yield self.host.waitFor(METRICS_LINE)).group(1))
        self.url = "http://127.0.0.1:{}/".format(metrics_port)
        self.site = start_site(self, "tcp/client:127.0.0.1:{}".format(tcp_port), emulator_port)
        yield self.site.waitFor(connected_line(tcp_port))
        yield self.host.waitFor(connected_line())
        self.client = Client(udp_port)
        self.browser = yield deferToThread(Browser)
        self.addCleanup(deferToThread, self.browser.quit)

    @inlineCallbacks
    def test_live(self):
        """
        The page shows both ends up, the controllers that answered through
        the tunnel, the request counter rising while requests are sent (no
        reload), and the out end going down when the site stops; no
        console error, no CSP violation. The host then stops at once
        despite the page's open stream, and the page says it reconnects.
        """
        browser = self.browser

        def up():
            self.load(browser)
            browser.js("window.__sameDocument = true;")
            browser.wait_text("#end-in-state", "up")
            browser.wait_text("#end-out-state", "up")
            browser.wait(lambda: browser.attribute("#link-summary", "data-state") == "up", "the link is not up")
            return browser.text("#end-in-connector"), browser.text("#end-out-connector")

        connectors = yield self.call(up)
        self.assertRegex(connectors[0], r"^udp/listen:127\.0\.0\.1:0$|^udp/listen:127\.0\.0\.1:\d+$")
        self.assertRegex(connectors[1], r"^tcp/server:127\.0\.0\.1:\d+$")

        replies = yield self.client.get_all_controllers()
        self.assertEqual(sorted(reply.controller for reply in replies), sorted([A, B]))

        def serials():
            return browser.wait(lambda: sorted(browser.texts("#controllers td.serial")) == sorted([str(A), str(B)])
                                and browser.texts("#controllers td.serial"), "the controllers are not listed")

        yield self.call(serials)

        before = int((yield self.call(browser.attribute, "#total-requests", "data-value")))
        sending = LoopingCall(lambda: self.client.get_controller(A).addErrback(lambda _: None))
        sending.clock = reactor
        sending.start(0.2)
        try:
            def rises():
                browser.wait(lambda: int(browser.attribute("#total-requests", "data-value")) >= before + 3,
                             "the request counter did not rise")
                return browser.js("return window.__sameDocument === true;")

            self.assertTrue((yield self.call(rises)), "the page reloaded")
        finally:
            sending.stop()

        yield stop(self.site, "TERM")

        def down():
            browser.wait(lambda: browser.text("#end-out-state") != "up", "the out end is still up")
            browser.wait(lambda: browser.attribute("#link-summary", "data-state") != "up", "the link is still up")
            return (browser.text("#end-out-state"), browser.text("#end-in-state"), browser.text("#link-summary"),
                    browser.js("return window.__sameDocument === true;"))

        out, in_, summary, same = yield self.call(down)
        self.assertEqual((out, in_, same), ("down", "up", True))
        self.assertEqual(summary, "Link down: the out end is down.")
        yield self.call(self.assertClean, browser)

        # the page's open stream does not hold the host up when it stops
        code = yield stop(self.host, "TERM")
        self.assertEqual(code, 0, self.host.recent())
        self.assertNotIn("Traceback", self.host.output())
        yield self.call(browser.wait, lambda: browser.attribute("#live", "data-state") == "reconnecting",
                        "the page did not notice the tunnel stopped")


class HTTPEndTests(_BrowserTest, TestCase):
    """
    An C{http/} end serves the same page at C{/} beside its API.
    """

    timeout = 180

    @inlineCallbacks
    def setUp(self):
        require_browser()
        self.emulator, emulator_port = yield start_emulator(self, A, B)
        self.tunnel = run_tunnel(self, "http", "--in", "http/127.0.0.1:0",
                                 "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s")
        port = int((yield self.tunnel.waitFor(r"HTTP\s+listening on 127\.0\.0\.1:(\d+)")).group(1))
        self.url = "http://127.0.0.1:{}/".format(port)
        self.browser = yield deferToThread(Browser)
        self.addCleanup(deferToThread, self.browser.quit)

    @inlineCallbacks
    def test_page(self):
        """
        The page loads at C{/} of the end (no C{--html} index there), shows
        both ends, and is clean under the end's CSP.
        """
        browser = self.browser

        def shown():
            self.load(browser)
            browser.wait_text("#end-in-state", "up")
            return browser.text("#end-in-connector"), browser.text("#end-out-connector")

        in_, out = yield self.call(shown)
        self.assertRegex(in_, r"^http/127\.0\.0\.1:")
        self.assertRegex(out, r"^udp/broadcast:127\.0\.0\.1:\d+$")
        yield self.call(self.assertClean, browser)
