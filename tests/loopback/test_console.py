# -*- test-case-name: tests.loopback.test_console -*-
"""
The controller console in a real browser: headless Chromium (driven by
Selenium and chromedriver, see L{tests.loopback.browser}) opens
C{/console/} on a real C{http/} end of a tunnel in this process, whose
out end reaches emulated controllers; the tests pick commands, fill their
fields, press Execute and read the decoded replies from the DOM.
"""

import datetime

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from tests.loopback.browser import Browser, axe_source, describe_violations, require_browser
from uhppoted_tunnel import emulator
from uhppoted_tunnel.app import config
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.app.tunnel import TunnelService
from uhppoted_tunnel.observe.web import CONTENT_SECURITY_POLICY

A, B = emulator.DEFAULT_SERIALS

#: The values each command is run with from the page (the controller is A
#: unless said; everything else keeps the form's defaults).
VALUES = {
    "get-card": {"card": "8165538"},
    "put-card": {"card": "8165538"},
    "delete-card": {"card": "8165538"},
    "get-event": {"index": "1"},
}

#: The commands whose reply says "not found" when run in the page's order
#: against a fresh emulator (get-card before put-card, no time profile).
MISSING = {"get-card", "get-card-by-index", "get-time-profile"}


class ConsoleTests(TestCase):
    """
    The console on an http/ end, against the emulator.
    """

    timeout = 300

    @inlineCallbacks
    def setUp(self):
        require_browser()
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.controllers = [emulator.Controller(A), emulator.Controller(B, address="127.0.0.2")]
        self.controllers[0].event(datetime.datetime.now())
        port = emulator.listen(reactor, self.controllers)
        self.addCleanup(port.stopListening)
        options = Options()
        options.parseOptions(["--in", "http/127.0.0.1:0", "--out",
                              "udp/broadcast:127.0.0.1:{}".format(port.getHost().port), "--udp-timeout", "1s",
                              "--rate-limit", "1000", "--html", self.mktemp()])
        service = TunnelService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        listening = yield service.in_.whenListening()
        self.url = "http://127.0.0.1:{}/console/".format(listening.getHost().port)
        self.browser = yield deferToThread(Browser)
        self.addCleanup(deferToThread, self.browser.quit)

    def call(self, method, *args, **kwargs):
        return deferToThread(method, *args, **kwargs)

    # what a user does, in the browser's thread

    def load(self):
        self.browser.open(self.url)
        self.browser.wait(lambda: self.browser.attribute("body", "data-loaded") == "true", "the console did not start")

    def choose(self, name):
        from selenium.webdriver.support.ui import Select

        Select(self.browser.driver.find_element("id", "command")).select_by_value(name)

    def fill(self, values):
        for name, value in values.items():
            field = self.browser.driver.find_element("id", "p-" + name)
            field.clear()
            field.send_keys(value)

    def execute(self, name, values=None, confirm=True):
        """
        Run a command from the page and wait for its result.

        :return: C{(state, status text, {field: value})}.
        """
        browser = self.browser
        self.choose(name)
        fields = {"controller": str(A)} if browser.js("return !!document.getElementById('p-controller');") else {}
        fields.update(values or {})
        self.fill(fields)
        browser.driver.find_element("id", "execute").click()
        if confirm and browser.js("return !document.getElementById('confirm').hidden;"):
            browser.driver.find_element("id", "confirm-yes").click()
        browser.wait(lambda: browser.attribute("#result-status", "data-state") not in ("waiting", "idle")
                     and browser.js("return document.getElementById('execute').disabled === false;"),
                     "{} got no result".format(name))
        return (browser.attribute("#result-status", "data-state"), browser.text("#result-status"),
                self.shown())

    def shown(self):
        return dict(zip(self.browser.texts("#reply dt"), self.browser.texts("#reply dd")))

    def assertClean(self):
        self.assertEqual(self.browser.csp_violations(), [])
        self.assertEqual(self.browser.console_errors(), [])

    @inlineCallbacks
    def test_everyCommand(self):
        """
        Each of the 34 commands round-trips from the page and shows its
        decoded reply (set-IP, which no controller answers, says so); no
        CSP violation or console error on the way, and the page came with
        the tunnel's CSP.
        """
        def run():
            self.load()
            names = self.browser.js("return UHPPOTE.COMMANDS.map(function (c) { return c.name; });")
            return {name: self.execute(name, VALUES.get(name)) for name in names}

        results = yield self.call(run)
        self.assertEqual(len(results), 34)
        for name, (state, text, fields) in results.items():
            if name == "set-IP":
                self.assertEqual(state, "ok", text)
                self.assertIn("Controllers do not answer set-IP", text)
                continue
            if name == "get-all-controllers":
                self.assertEqual((state, text), ("ok", "2 controllers answered within 2s."))
                continue
            self.assertEqual(state, "missing" if name in MISSING else "ok", (name, text))
            self.assertEqual(fields.get("Controller"), str(A), (name, fields))
            self.assertGreater(len(fields), 1, name)
        self.assertEqual(results["get-status"][2]["Event index"], "1")
        self.assertEqual(results["get-door-control"][2]["Mode"], "3 (controlled)")
        self.assertEqual((results["set-listener"][2]["Succeeded"], self.controllers[0].listener[1]), ("yes", 60001))
        self.assertEqual(results["delete-card"][2]["Deleted"], "yes")
        self.assertEqual(str(self.controllers[0].address), "192.168.1.100")  # set-IP reached it

        def headers():
            return self.browser.responses()

        responses = yield self.call(headers)
        status, page_headers, mime = responses[self.url]
        self.assertEqual((status, mime), (200, "text/html"))
        self.assertEqual(page_headers["content-security-policy"], CONTENT_SECURITY_POLICY.decode("ascii"))
        yield self.call(self.assertClean)

    @inlineCallbacks
    def test_putCardThenGetCard(self):
        """
        put-card then get-card shows the card, its dates, doors and PIN.
        """
        def run():
            self.load()
            put = self.execute("put-card", {"card": "10058400", "from": "2026-02-01", "until": "2026-11-30",
                                            "door3": "29", "pin": "7531"})
            got = self.execute("get-card", {"card": "10058400"})
            return put, got

        put, got = yield self.call(run)
        self.assertEqual((put[0], put[2]["Stored"]), ("ok", "yes"))
        state, _, fields = got
        self.assertEqual(state, "ok")
        self.assertEqual((fields["Card number"], fields["Valid from"], fields["Valid until"], fields["Door 1"],
                          fields["Door 3"], fields["PIN"]),
                         ("10058400", "2026-02-01", "2026-11-30", "access", "time profile 29", "7531"))

    @inlineCallbacks
    def test_setTimeThenGetTime(self):
        """
        set-time then get-time shows the time set (a second or two on).
        """
        def run():
            self.load()
            self.execute("set-time", {"datetime": "2031-02-03 04:05:06"})
            return self.execute("get-time")

        state, _, fields = yield self.call(run)
        self.assertEqual(state, "ok")
        self.assertRegex(fields["Date and time"], r"^2031-02-03 04:05:0[6-9]$")

    @inlineCallbacks
    def test_timeout(self):
        """
        A controller nobody answers shows a timeout, in words.
        """
        def run():
            self.load()
            return self.execute("get-time", {"controller": "12345"})

        state, text, fields = yield self.call(run)
        self.assertEqual(state, "timeout")
        self.assertEqual(text, "Timed out: controller 12345 did not answer get-time (no reply within 1s). Check the "
                               "serial number, and that the controller is on the network the tunnel reaches.")
        self.assertEqual(fields, {})

    @inlineCallbacks
    def test_discovery(self):
        """
        get-all-controllers lists the controllers that answered; picking one
        puts its serial number in the controller field, and the raw packets
        show on request.
        """
        browser = self.browser

        def run():
            self.load()
            self.execute("get-all-controllers")
            buttons = browser.texts("#discovered-list button")
            browser.driver.find_element("css selector", '#discovered-list button[data-serial="{}"]'.format(B)).click()
            picked = (browser.js("return document.getElementById('command').value;"),
                      browser.js("return document.getElementById('p-controller').value;"),
                      browser.js("return document.activeElement.id;"))
            self.assertTrue(browser.js("return document.getElementById('raw').hidden;"))
            browser.driver.find_element("id", "show-raw").click()
            raw = browser.text("#raw-request")
            return buttons, picked, raw

        buttons, picked, raw = yield self.call(run)
        self.assertEqual(sorted(buttons), sorted(["Use {} (127.0.0.1)".format(A), "Use {} (127.0.0.2)".format(B)]))
        self.assertEqual(picked, ("get-controller", str(B), "p-controller"))
        self.assertTrue(raw.startswith("0000  17 94 00 00 00 00 00 00"), raw)

    @inlineCallbacks
    def test_confirmation(self):
        """
        delete-all-cards asks first, in the page: cancelled, nothing is sent
        and the cards stay; confirmed, they are deleted.
        """
        browser = self.browser
        self.controllers[0].cards[1] = bytes(20)

        def run():
            self.load()
            self.choose("delete-all-cards")
            self.fill({"controller": str(A)})
            browser.driver.find_element("id", "execute").click()
            asked = (browser.text("#confirm-title"), browser.js("return document.activeElement.id;"))
            browser.driver.find_element("id", "confirm-no").click()
            cancelled = (browser.text("#result-status"),
                         browser.js("return document.getElementById('confirm').hidden;"))
            return asked, cancelled

        asked, cancelled = yield self.call(run)
        self.assertEqual(asked, ("Send delete-all-cards to controller {}?".format(A), "confirm-yes"))
        self.assertEqual(cancelled, ("Not sent.", True))
        self.assertEqual(len(self.controllers[0].cards), 1)
        state, _, fields = yield self.call(self.execute, "delete-all-cards")
        self.assertEqual((state, fields["Deleted"]), ("ok", "yes"))
        self.assertEqual(self.controllers[0].cards, {})

    @inlineCallbacks
    def test_badValue(self):
        """
        A value that is not valid is refused in words before anything is
        sent, and its field is marked invalid and focused.
        """
        browser = self.browser

        def run():
            self.load()
            self.choose("get-card")
            self.fill({"controller": str(A), "card": "abc"})
            browser.driver.find_element("id", "execute").click()
            return (browser.text("#form-error"), browser.attribute("#p-card", "aria-invalid"),
                    browser.js("return document.activeElement.id;"), browser.attribute("#result-status", "data-state"))

        shown = yield self.call(run)
        self.assertEqual(shown, ("Card number: enter a whole number from 1 to 4294967294.", "true", "p-card", "idle"))

    @inlineCallbacks
    def test_keyboard(self):
        """
        The console is used with the keyboard alone: Tab reaches the skip
        link, then the command list; a command is chosen with the arrow
        keys, and Enter in a field executes it.
        """
        browser = self.browser

        def run():
            from selenium.webdriver.common.action_chains import ActionChains
            from selenium.webdriver.common.keys import Keys

            self.load()
            keys = ActionChains(browser.driver)
            order = []
            for _ in range(2):
                ActionChains(browser.driver).send_keys(Keys.TAB).perform()
                order.append(browser.js("return document.activeElement.id || document.activeElement.textContent;"))
            keys.send_keys(Keys.ARROW_DOWN).perform()
            command = browser.js("return document.getElementById('command').value;")
            ActionChains(browser.driver).send_keys(Keys.TAB, str(A), Keys.ENTER).perform()
            browser.wait(lambda: browser.attribute("#result-status", "data-state") == "ok", "no reply")
            outline = browser.js("document.getElementById('p-controller').focus();"
                                 "return getComputedStyle(document.activeElement).outlineStyle;")
            return order, command, self.shown().get("IP address"), outline

        order, command, address, outline = yield self.call(run)
        self.assertEqual(order, ["Skip to the console", "command"])
        self.assertEqual((command, address), ("get-controller", "127.0.0.1"))
        self.assertEqual(outline, "solid")

    @inlineCallbacks
    def test_layoutAndAccessibility(self):
        """
        At 360 CSS pixels wide the page, with a long reply shown, has no
        horizontal scroll; axe-core finds nothing serious or critical in
        the light and dark schemes, with a reply and the confirmation
        showing; no CSP violation or console error.
        """
        source = yield self.call(axe_source)
        browser = self.browser

        def run():
            browser.emulate_phone(360, 740)
            found = {}
            for scheme in ("light", "dark"):
                browser.emulate_media(prefers_color_scheme=scheme)
                self.load()
                self.execute("get-status")
                browser.driver.find_element("id", "show-raw").click()
                self.choose("restore-default-parameters")
                browser.driver.find_element("id", "execute").click()
                found[scheme] = browser.axe(source)
            return found, browser.horizontal_overflow(), browser.js("return window.innerWidth;")

        found, overflow, width = yield self.call(run)
        self.assertEqual((width, overflow), (360, 0))
        serious = []
        for where, violations in found.items():
            if violations:
                print("axe-core ({}):\n{}".format(where, describe_violations(violations)))
            serious += [(where, v) for v in violations if v.get("impact") in ("serious", "critical")]
        self.assertEqual(serious, [], "\n".join("{}: {}".format(where, describe_violations([v]))
                                               for where, v in serious))
        yield self.call(self.assertClean)
