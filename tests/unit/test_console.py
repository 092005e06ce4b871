"""
Tests for L{uhppoted_tunnel.observe.console}: the controller console is at
C{/console/} on http/ and https/ ends, beside C{--html}'s folder, unless
C{--no-http-console}; resources are rendered with C{DummyRequest}s.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from tests.unit.test_status_mounts import get, header, tunnel
from uhppoted_tunnel.app import config
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.observe.console import ASSETS, ConsolePage
from uhppoted_tunnel.observe.status import asset
from uhppoted_tunnel.observe.web import CONTENT_SECURITY_POLICY
from uhppoted_tunnel.testing import FakeReactor

OUT = "udp/broadcast:127.0.0.1:60005"


class ConsoleMountTests(SynchronousTestCase):
    """
    An C{http/} end serves the console at C{/console/}.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.html = self.mktemp()
        os.makedirs(os.path.join(self.html, "console"))
        for name in ("index.html", os.path.join("console", "console.js")):
            with open(os.path.join(self.html, name), "w") as f:
                f.write("mine")

    def root(self, *args):
        t = tunnel(FakeReactor(), "--in", "http/127.0.0.1:0", "--out", OUT, "--html", self.html, *args)
        return t.in_.factory.wrappedFactory.resource

    def test_page(self):
        """
        C{/console/} is the console page, with the security headers, and its
        files are beside it, before the folder's.
        """
        root = self.root()
        code, headers, body, _ = get(root, b"/console/")
        self.assertEqual((code, body), (200, asset("console.html")))
        self.assertEqual(header(headers, b"content-security-policy"), CONTENT_SECURITY_POLICY)
        self.assertEqual(header(headers, b"content-type"), b"text/html; charset=utf-8")
        for path, (name, content_type) in ASSETS.items():
            code, headers, body, _ = get(root, b"/console/" + path)
            self.assertEqual((code, body, header(headers, b"content-type")), (200, asset(name), content_type), path)

    def test_redirect(self):
        """
        C{/console} without its slash redirects to C{console/}; an unknown
        file under it is 404.
        """
        root = self.root()
        code, headers, _, _ = get(root, b"/console")
        self.assertEqual((code, header(headers, b"location")), (301, b"console/"))
        self.assertEqual(get(root, b"/console/nothing.js")[0], 404)

    def test_folderStaysAtRoot(self):
        """
        With C{--html}, C{/} is still the folder's page.
        """
        _, _, _, request = get(self.root(), b"/")
        request.producer.resumeProducing()
        self.assertEqual(b"".join(request.written), b"mine")

    def test_turnedOff(self):
        """
        C{--no-http-console}: the end has no console, and C{/console/} is
        the folder's again.
        """
        root = self.root("--no-http-console")
        self.assertIsNone(root.end.console)
        _, _, _, request = get(root, b"/console/console.js")
        request.producer.resumeProducing()
        self.assertEqual(b"".join(request.written), b"mine")

    def test_https(self):
        """
        On an C{https/} end the console's answers carry HSTS.
        """
        page = ConsolePage(secure=True)
        code, headers, _, _ = get(page, b"/console.css")
        self.assertEqual(code, 200)
        self.assertIsNotNone(header(headers, b"strict-transport-security"))


class ConsoleOptionTests(SynchronousTestCase):
    """
    C{--no-http-console} and the TOML key C{no-http-console}.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def parse(self, *args):
        options = Options()
        options.parseOptions(["--in", "http/127.0.0.1:0", "--out", OUT] + list(args))
        return options

    def test_default(self):
        """
        The console is on unless turned off.
        """
        self.assertFalse(self.parse()["no-http-console"])

    def test_flag(self):
        """
        C{--no-http-console} turns it off.
        """
        self.assertTrue(self.parse("--no-http-console")["no-http-console"])

    def test_file(self):
        """
        C{no-http-console = true} in the TOML file turns it off.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[defaults]\nno-http-console = true\n")
        self.assertTrue(self.parse("--config", path)["no-http-console"])
