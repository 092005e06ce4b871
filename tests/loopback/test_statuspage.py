"""
The status page in a real browser: headless Chromium (Debian's, driven by
Selenium and chromedriver, see L{tests.loopback.browser}) loads it from a
real process on 127.0.0.1 that serves a scripted snapshot
(L{tests.loopback.statusserver}), and the tests read what it shows from
the DOM: the ends' states, the controllers, a counter rising live, a link
going down; no console error and no CSP violation under the tunnel's
Content-Security-Policy; no horizontal scroll on a 360 px phone; and no
serious or critical axe-core finding, in the light and the dark scheme.
"""

import os
import socket
import sys

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.loopback.browser import Browser, axe_source, describe_violations, require_browser
from tests.loopback.processes import spawn
from uhppoted_tunnel.observe.web import CONTENT_SECURITY_POLICY

#: The scripted status server, run as a file (the package under test may
#: be installed, the tests folder is not).
STATUS_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "statusserver.py")

#: The controllers the scripted tunnel has seen, as the page lists them.
SERIALS = ["201020304", "303986753", "405419896"]


def start_status_server(testcase, *args):
    """
    Start the scripted status server.

    :return: a Deferred firing with C{(process, url)}.
    """
    server = spawn(testcase, [sys.executable, STATUS_SERVER, "--port", "0"] + list(args), "statusserver")
    return server.waitFor(r"^status page listening on 127\.0\.0\.1:(\d+)$").addCallback(
        lambda match: (server, "http://127.0.0.1:{}/".format(match.group(1))))


class _BrowserTest:
    """
    A status server and a browser for each test.
    """

    timeout = 180

    @inlineCallbacks
    def setUp(self):
        require_browser()
        self.server, self.url = yield start_status_server(self)
        self.browser = yield deferToThread(Browser)
        self.addCleanup(deferToThread, self.browser.quit)

    def call(self, method, *args, **kwargs):
        """
        Run a browser method in a thread (Selenium blocks).
        """
        return deferToThread(method, *args, **kwargs)

    def command(self, line):
        """
        Tell the status server something (see its docstring).
        """
        self.server.transport.write(line.encode("utf-8") + b"\n")

    def load(self, browser, url=None):
        """
        Open the page and wait for its first snapshot.
        """
        browser.open(url or self.url)
        browser.wait(lambda: browser.attribute("body", "data-loaded") == "true", "the page showed no snapshot")

    def assertClean(self, browser):
        """
        No console error or warning, and no CSP violation.
        """
        self.assertEqual(browser.csp_violations(), [])
        self.assertEqual(browser.console_errors(), [])


class StatusPageTests(_BrowserTest, TestCase):
    """
    What the page shows, live.
    """

    @inlineCallbacks
    def test_live(self):
        """
        The page shows both ends' states and the controllers; the request
        counter rises without a reload; an end going down shows as down in
        words, in the link summary and in its card; all without a console
        error or a CSP violation, the CSP enforced.
        """
        browser = self.browser

        def first():
            self.load(browser)
            browser.js("window.__sameDocument = true;")
            return {
                "in": browser.text("#end-in-state"),
                "out": browser.text("#end-out-state"),
                "in-connector": browser.text("#end-in-connector"),
                "out-connector": browser.text("#end-out-connector"),
                "out-peers": browser.texts("#end-out-peers td.address"),
                "serials": browser.texts("#controllers td.serial"),
                "summary": browser.text("#link-summary"),
                "requests": int(browser.attribute("#total-requests", "data-value")),
                "live": browser.attribute("#live", "data-state"),
            }

        shown = yield self.call(first)
        self.assertEqual((shown["in"], shown["out"]), ("up", "up"))
        self.assertEqual(shown["in-connector"], "udp/listen:0.0.0.0:60000")
        self.assertEqual(shown["out-connector"], "tls/server:0.0.0.0:12345")
        self.assertEqual(shown["out-peers"], ["198.51.100.23:50514"])
        self.assertEqual(shown["serials"], SERIALS)
        self.assertEqual(shown["summary"], "Link up: both ends are up.")
        self.assertEqual(shown["live"], "live")

        def rises():
            browser.wait(lambda: int(browser.attribute("#total-requests", "data-value")) > shown["requests"] + 2,
                         "the request counter did not rise")
            return browser.js("return window.__sameDocument === true;")

        self.assertTrue((yield self.call(rises)), "the page reloaded")

        self.command("state out down")

        def down():
            browser.wait_text("#end-out-state", "down")
            browser.wait(lambda: browser.attribute("#link-summary", "data-state") == "down", "no link summary")
            return (browser.text("#link-summary"), browser.attribute("#end-out", "data-state"),
                    browser.text("#end-in-state"), browser.js("return window.__sameDocument === true;"))

        summary, card, other, same = yield self.call(down)
        self.assertEqual(summary, "Link down: the out end is down.")
        self.assertEqual((card, other, same), ("down", "up", True))

        def headers():
            return browser.responses()

        responses = yield self.call(headers)
        status, page_headers, mime = responses[self.url]
        self.assertEqual((status, mime), (200, "text/html"))
        self.assertEqual(page_headers["content-security-policy"], CONTENT_SECURITY_POLICY.decode("ascii"))
        for path in ("status.css", "status.js", "logo.svg"):
            self.assertEqual(responses[self.url + path][0], 200, path)
        yield self.call(self.assertClean, browser)

    @inlineCallbacks
    def test_hostileText(self):
        """
        A warning carrying markup is shown as the text it is: no element is
        made from it and nothing runs.
        """
        browser = self.browser
        hostile = '<img src="x" onerror="window.__pwned = 1"><script>window.__pwned = 2</script>'
        yield self.call(self.load, browser)
        self.command("warn " + hostile)

        def shown():
            browser.wait(lambda: hostile in browser.texts("#warnings .message"), "the warning did not show")
            return (browser.js("return document.querySelectorAll('#warnings img, #warnings script').length;"),
                    browser.js("return window.__pwned === undefined;"))

        elements, safe = yield self.call(shown)
        self.assertEqual(elements, 0)
        self.assertTrue(safe)
        yield self.call(self.assertClean, browser)

    @inlineCallbacks
    def test_pause(self):
        """
        The pause button is a real toggle button: pressed, updates stop
        and the indicator says so; pressed again, they resume.
        """
        browser = self.browser

        def pause():
            self.load(browser)
            button = browser.driver.find_element("id", "pause")
            button.click()
            browser.wait(lambda: browser.attribute("#live", "data-state") == "paused", "not paused")
            pressed = browser.attribute("#pause", "aria-pressed")
            text = browser.text("#live-text")
            button.click()
            browser.wait(lambda: browser.attribute("#live", "data-state") == "live", "not live again")
            return pressed, text

        pressed, text = yield self.call(pause)
        self.assertEqual((pressed, text), ("true", "Paused"))

    @inlineCallbacks
    def test_keyboard(self):
        """
        Every control is reached with Tab, in reading order, each showing
        its focus: the skip link, the pause button (which Space presses),
        the tables that scroll sideways, the footer's links.
        """
        browser = self.browser
        focused = ("var e = document.activeElement; return [e.id || e.getAttribute('aria-label') || e.textContent, "
                   "getComputedStyle(e).outlineStyle];")

        def tab():
            from selenium.webdriver.common.action_chains import ActionChains
            from selenium.webdriver.common.keys import Keys

            self.load(browser)
            order = []
            for _ in range(6):
                ActionChains(browser.driver).send_keys(Keys.TAB).perform()
                order.append(tuple(browser.js(focused)))
            for _ in range(4):
                ActionChains(browser.driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
            back = browser.js(focused)[0]
            ActionChains(browser.driver).send_keys(Keys.SPACE).perform()
            browser.wait(lambda: browser.attribute("#live", "data-state") == "paused", "Space did not pause")
            return order, back, browser.attribute("#pause", "aria-pressed")

        order, back, pressed = yield self.call(tab)
        self.assertEqual([name for name, _ in order],
                         ["Skip to the status", "pause", "Controllers table", "Events table", "status.json", "metrics"])
        self.assertEqual({outline for _, outline in order}, {"solid"})
        self.assertEqual((back, pressed), ("pause", "true"))

    @inlineCallbacks
    def test_reconnect(self):
        """
        When the server goes the indicator says "Reconnecting…"; when it is
        back on the same port the page is live again by itself.
        """
        browser = self.browser
        yield self.call(self.load, browser)
        port = self.url.rsplit(":", 1)[1].strip("/")
        self.command("quit")
        yield self.server.exited()

        def reconnecting():
            browser.wait(lambda: browser.attribute("#live", "data-state") == "reconnecting", "not reconnecting")
            return browser.text("#live-text")

        self.assertEqual((yield self.call(reconnecting)), "Reconnecting…")
        self.server, _ = yield start_status_server(self, "--port", port)
        yield self.call(browser.wait, lambda: browser.attribute("#live", "data-state") == "live",
                        "not live again after the server came back")


class LayoutTests(_BrowserTest, TestCase):
    """
    The page on a phone, and its accessibility.
    """

    @inlineCallbacks
    def test_phone(self):
        """
        At 360 CSS pixels wide the page has no horizontal scroll (wide
        tables scroll in their own focusable region).
        """
        browser = self.browser

        def phone():
            browser.emulate_phone(360, 740)
            self.load(browser)
            return browser.horizontal_overflow(), browser.js("return window.innerWidth;")

        overflow, width = yield self.call(phone)
        self.assertEqual(width, 360)
        self.assertEqual(overflow, 0)
        yield self.call(self.assertClean, browser)

    @inlineCallbacks
    def test_motion(self):
        """
        The live indicator pulses, unless the reader asked for reduced
        motion; the dark scheme changes the colours.
        """
        browser = self.browser
        dot = "return getComputedStyle(document.querySelector('#live .live-dot')).animationName;"
        background = "return getComputedStyle(document.body).backgroundColor;"

        def look():
            seen = {}
            for motion, scheme in (("no-preference", "light"), ("reduce", "dark")):
                browser.emulate_media(prefers_reduced_motion=motion, prefers_color_scheme=scheme)
                self.load(browser)
                browser.wait(lambda: browser.attribute("#live", "data-state") == "live", "not live")
                seen[motion] = (browser.js(dot), browser.js(background))
            return seen

        seen = yield self.call(look)
        self.assertEqual(seen["no-preference"][0], "pulse")
        self.assertEqual(seen["reduce"][0], "none")
        self.assertNotEqual(seen["no-preference"][1], seen["reduce"][1])

    @inlineCallbacks
    def test_accessibility(self):
        """
        axe-core finds nothing serious or critical (WCAG 2.x A and AA and
        best practices), in the light and the dark colour scheme, on a
        desktop and on a phone. Everything it finds is printed.
        """
        source = yield self.call(axe_source)
        browser = self.browser

        def audit():
            found = {}
            for scheme in ("light", "dark"):
                browser.emulate_media(prefers_color_scheme=scheme)
                self.load(browser)
                found[scheme] = browser.axe(source)
            browser.emulate_phone(360, 740)
            self.load(browser)
            found["phone"] = browser.axe(source)
            return found

        found = yield self.call(audit)
        serious = []
        for where, violations in found.items():
            if violations:
                print("axe-core ({}):\n{}".format(where, describe_violations(violations)))
            serious += [(where, v) for v in violations if v.get("impact") in ("serious", "critical")]
        self.assertEqual(serious, [], "\n".join("{}: {}".format(where, describe_violations([v]))
                                               for where, v in serious))


class StallTests(TestCase):
    """
    Clients that open the status stream and never read (issue 25, item
    7), on real sockets: dropped after the stall timeout, so that a new
    viewer is served. No browser needed.
    """

    timeout = 60

    def never_reading(self, port):
        """
        Open the stream on a socket with a tiny receive buffer that is
        never read.
        """
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(sock.close)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(b"GET /status/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        return sock

    def status_of_stream(self, port):
        """
        Open the stream as a new viewer: the status code of the answer.
        """
        def ask():
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(b"GET /status/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                return int(sock.recv(64).split(b" ")[1])

        return deferToThread(ask)

    @inlineCallbacks
    def test_neverReadingDropped(self):
        """
        Two never-reading clients hold both slots (a third viewer gets
        503) until the stall timeout; then they are dropped with a warning
        naming --stall-timeout, and a new viewer is served.
        """
        server, url = yield start_status_server(self, "--max-status-streams", "2", "--stall-timeout", "1",
                                                "--pad", "262144", "--log")
        port = int(url.rsplit(":", 1)[1].strip("/"))
        for _ in range(2):
            self.never_reading(port)
        code = yield self.status_of_stream(port)
        self.assertEqual(code, 503, "both slots should be held at first")
        yield server.waitFor(r"dropped \d+ status stream\(s\).*read nothing for over 1s \(--stall-timeout\)")
        code = yield self.status_of_stream(port)
        self.assertEqual(code, 200)
