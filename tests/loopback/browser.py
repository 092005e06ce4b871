# -*- test-case-name: tests.loopback.test_statuspage -*-
"""
Headless Chromium for the status page tests, driven by Selenium through
Debian's C{chromedriver}.

Why Selenium and chromedriver: both come from the ordinary registries
(PyPI, and the Debian package built from the same Chromium as
C{/usr/bin/chromium}, so their versions always match), the WebDriver API
waits, reads the DOM and takes screenshots without a line of protocol
code, and C{execute_cdp_cmd} still reaches the DevTools protocol for what
WebDriver lacks (the viewport of a phone, the colour scheme, CSP reports,
the response headers the browser saw). Talking DevTools over a pipe from
Python would need no driver, but its own client, which we would then
maintain.

Everything here blocks: the trial tests call it through C{deferToThread}.
A test that needs the browser calls L{require_browser} first: without
Chromium, chromedriver or Selenium it is skipped, naming what to install
(and fails under CI, which installs them all).
"""

import json
import os
import shutil
import subprocess
import tempfile
import time

from twisted.trial.unittest import SkipTest

from tests.tools import require, under_ci

#: The axe-core release the accessibility test runs (from npm).
AXE_VERSION = "4.10.3"

#: How long any one browser wait may take.
WAIT = 30.0

#: Recorded in each page before its own scripts run: every CSP violation.
RECORD_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__cspViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') +
                              ' at ' + e.sourceFile + ':' + e.lineNumber);
});
"""


def _missing(message):
    if under_ci():
        raise AssertionError(message + ": .ci/run should have installed it")
    raise SkipTest(message)


def require_browser():
    """
    :return: C{(chromium, chromedriver)} paths.
    :raise SkipTest: when one of them, or Selenium, is missing.
    """
    chromium = require("chromium", "chromium")
    chromedriver = require("chromedriver", "chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium is not installed (pip install '.[test]')")
    return chromium, chromedriver


def cache_directory():
    """
    Where downloaded test tools are kept between runs.
    """
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "uhppoted-tunnel-tests")


def axe_source():
    """
    The source of axe-core L{AXE_VERSION}, installed with npm into
    L{cache_directory} on first use.

    :raise SkipTest: without npm, or when the install fails (failing
        instead under CI).
    """
    prefix = os.path.join(cache_directory(), "axe-core-" + AXE_VERSION)
    path = os.path.join(prefix, "node_modules", "axe-core", "axe.min.js")
    if not os.path.exists(path):
        npm = require("npm", "npm")
        os.makedirs(prefix, exist_ok=True)
        try:
            result = subprocess.run([npm, "install", "--prefix", prefix, "--no-audit", "--no-fund",
                                     "--no-package-lock", "axe-core@" + AXE_VERSION],
                                    capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            _missing("npm install axe-core@{} took over 300s".format(AXE_VERSION))
        if result.returncode != 0 or not os.path.exists(path):
            _missing("npm install axe-core@{} failed: {}".format(AXE_VERSION, result.stderr.strip()[-500:]))
    with open(path, encoding="utf-8") as f:
        return f.read()


class Browser:
    """
    One headless Chromium, with the console log, network log and CSP
    violations recorded.
    """

    def __init__(self, width=1280, height=900):
        chromium, chromedriver = require_browser()
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="uhppoted-tunnel-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--disable-background-networking", "--disable-component-update",
                         "--disable-sync", "--disable-extensions", "--force-device-scale-factor=1",
                         "--user-data-dir=" + self.profile, "--window-size={},{}".format(width, height)):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        # no Selenium Manager: the driver is given, and nothing is fetched
        os.environ.setdefault("SE_OFFLINE", "true")
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
        self.driver.set_page_load_timeout(WAIT)
        self.driver.set_script_timeout(WAIT)
        self.cdp("Network.enable", {})
        self.cdp("Page.addScriptToEvaluateOnNewDocument", {"source": RECORD_CSP})
        self._console = []
        self._performance = []

    def cdp(self, command, parameters):
        return self.driver.execute_cdp_cmd(command, parameters)

    def quit(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # what the page shows

    def open(self, url):
        self.driver.get(url)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def text(self, selector):
        """
        The C{textContent} of the first element matching a CSS selector
        (C{None} if there is none).
        """
        return self.js("var e = document.querySelector(arguments[0]); return e && e.textContent;", selector)

    def texts(self, selector):
        return self.js("return Array.from(document.querySelectorAll(arguments[0]), function (e) "
                       "{ return e.textContent; });", selector)

    def attribute(self, selector, name):
        return self.js("var e = document.querySelector(arguments[0]); return e && e.getAttribute(arguments[1]);",
                       selector, name)

    def wait(self, condition, message, timeout=WAIT):
        """
        Wait until C{condition()} returns something true, and return it.

        :raise AssertionError: after C{timeout} seconds, with C{message}
            and what the condition returned last.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = condition()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("{} (within {}s; last: {!r})".format(message, timeout, value))
            time.sleep(0.1)

    def wait_text(self, selector, expected, timeout=WAIT):
        """
        Wait until an element's text is C{expected}.
        """
        last = []

        def check():
            last[:] = [self.text(selector)]
            return last[0] == expected

        self.wait(check, "{} never read {!r} (read {!r})".format(selector, expected, last), timeout)

    # what the browser said

    def console(self):
        """
        The console messages so far: C{(level, message)}.
        """
        self._console.extend((entry["level"], entry["message"]) for entry in self.driver.get_log("browser"))
        return list(self._console)

    def console_errors(self):
        return [message for level, message in self.console() if level in ("SEVERE", "WARNING")]

    def csp_violations(self):
        return self.js("return window.__cspViolations || [];")

    def responses(self):
        """
        The responses the browser received so far: C{{url: (status,
        headers, mimeType)}}, headers with lower-case names.
        """
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message.get("method") == "Network.responseReceived":
                self._performance.append(message["params"]["response"])
        return {response["url"]: (response["status"],
                                  {k.lower(): v for k, v in response.get("headers", {}).items()},
                                  response.get("mimeType"))
                for response in self._performance}

    # the screen

    def emulate_phone(self, width=360, height=740):
        self.cdp("Emulation.setDeviceMetricsOverride",
                 {"width": width, "height": height, "deviceScaleFactor": 2, "mobile": True})

    def emulate_media(self, **features):
        """
        Emulate media features, e.g. C{prefers_color_scheme="dark"}.
        """
        self.cdp("Emulation.setEmulatedMedia",
                 {"features": [{"name": name.replace("_", "-"), "value": value} for name, value in features.items()]})

    def horizontal_overflow(self):
        """
        How many CSS pixels the page is wider than its viewport (0: no
        horizontal scroll).
        """
        return self.js("return document.documentElement.scrollWidth - document.documentElement.clientWidth;")

    def screenshot(self, path, full_page=True):
        """
        Save a PNG of the page (all of it by default).
        """
        if full_page:
            height = self.js("return document.documentElement.scrollHeight;")
            width = self.js("return window.innerWidth;")
            self.cdp("Emulation.setDeviceMetricsOverride",
                     {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        try:
            self.driver.save_screenshot(path)
        finally:
            if full_page:
                self.cdp("Emulation.clearDeviceMetricsOverride", {})

    # accessibility

    def axe(self, source, tags=("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa", "best-practice")):
        """
        Run axe-core on the page.

        :return: its violations: dicts with C{id}, C{impact}, C{help},
            C{nodes}.
        """
        self.js(source + "\n;window.__axeLoaded = typeof axe;")
        result = self.driver.execute_async_script(
            "var done = arguments[arguments.length - 1];"
            "axe.run(document, {runOnly: {type: 'tag', values: arguments[0]}, resultTypes: ['violations']})"
            ".then(function (r) { done(JSON.stringify(r.violations)); },"
            "      function (e) { done(JSON.stringify({error: String(e)})); });", list(tags))
        violations = json.loads(result)
        if isinstance(violations, dict):
            raise AssertionError("axe-core failed: " + violations["error"])
        return violations


def describe_violations(violations):
    """
    axe-core's violations as text, one block each, for a failure message.
    """
    lines = []
    for violation in violations:
        lines.append("{} ({}): {}".format(violation["id"], violation.get("impact"), violation["help"]))
        for node in violation["nodes"][:5]:
            lines.append("    {}  {}".format(" ".join(node["target"]), node.get("failureSummary", "")
                                             .replace("\n", " ")))
    return "\n".join(lines)
