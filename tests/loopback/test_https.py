# -*- test-case-name: tests.loopback.test_https -*-
"""
HTTPS for real clients, and the security headers of the HTTP ends: tunnels
on 127.0.0.1 in this process, driven by curl, openssl s_client and headless
Chromium as child processes (each skipped, naming its Debian package, when
missing; required under CI).

curl and every browser offer ALPN (C{h2,http/1.1}); the tunnel's TLS ends
used to abort such handshakes with alert 80 (see L{uhppoted_tunnel.transports.tls.certs}),
while the tests' own clients offered no ALPN and passed.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase
from uhppoted import decode, encode

from tests import certs
from tests.loopback.test_http import RawClient, TunnelMixin
from tests.tools import require
from uhppoted_tunnel import emulator
from uhppoted_tunnel.app import config
from uhppoted_tunnel.observe import web
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.testing import LogWatcher
from uhppoted_tunnel.app.tunnel import TunnelService

SERIALS = emulator.DEFAULT_SERIALS

#: What the security headers must say (names lower case).
EXPECTED = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}

#: Chromium flags for headless use as root in a container.
CHROMIUM = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage"]

#: How long a child (curl, openssl, chromium) may take.
CHILD_DEADLINE = 60


def run(command, *args, stdin=None):
    """
    Run a child process under the reactor, with a deadline.

    :return: a Deferred firing with C{(stdout, stderr, exit code)} as text.
    """
    argv = list(args)
    if stdin is not None:
        # getProcessOutputAndValue gives the child no stdin: let a shell
        # feed it
        argv = ["-c", 'printf "%s" "$1" | timeout {} "$0" "${{@:2}}"'.format(CHILD_DEADLINE), command, stdin] + argv
        command = "/bin/bash"
    else:
        argv = [str(CHILD_DEADLINE), command] + argv
        command = require("timeout", "coreutils")
    d = getProcessOutputAndValue(command, argv, env=dict(os.environ), reactor=reactor)
    return d.addCallback(lambda result: (result[0].decode("utf-8", "replace"), result[1].decode("utf-8", "replace"),
                                         result[2]))


def spki_hash(cert_path):
    """
    :return: the base64 SHA-256 of a certificate's public key, as
        Chromium's C{--ignore-certificate-errors-spki-list} takes it.
    """
    with open(cert_path, "rb") as f:
        certificate = x509.load_pem_x509_certificate(f.read())
    der = certificate.public_key().public_bytes(serialization.Encoding.DER,
                                                serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode("ascii")


class HTTPSTunnelMixin(TunnelMixin):
    """
    An C{https/} end with test-made certificates.
    """

    scheme = "https"
    timeout = 120

    def setUp(self):
        self.files = certs.make(self.mktemp())
        TunnelMixin.setUp(self)

    def policy(self):
        from twisted.internet import ssl

        from tests.loopback.test_http import TrustCA

        with open(self.files["ca"][0], "rb") as f:
            return TrustCA(ssl.Certificate.loadPEM(f.read()))

    def tunnel_args(self):
        cert, key = self.files["server"]
        return ["--ca-cert", self.files["ca"][0], "--cert", cert, "--key", key]


class CurlTests(HTTPSTunnelMixin, TestCase):
    """
    curl, offering ALPN as it does by default, is served by C{https/}.
    """

    def curl(self, *args):
        return run(require("curl", "curl"), "--silent", "--show-error", "--verbose", "--max-time", "30",
                   "--cacert", self.files["ca"][0], *args)

    @inlineCallbacks
    def test_getPage(self):
        """
        curl fetches a page over https/; the server picks http/1.1 from
        curl's ALPN offer (h2, http/1.1).
        """
        yield self.tunnel()
        out, err, code = yield self.curl(self.url + "/hello.txt")
        self.assertEqual((code, out), (0, "hello"), err)
        self.assertRegex(err, r"ALPN.*offers h2")
        self.assertRegex(err, r"ALPN.*server accepted.*http/1\.1")

    @inlineCallbacks
    def test_postSend(self):
        """
        curl POSTs a request to /udp/send over https/ and gets the
        controller's reply.
        """
        yield self.tunnel()
        body = json.dumps({"ID": 3, "request": list(encode.get_controller_request(SERIALS[0]))})
        out, err, code = yield self.curl("--header", "Content-Type: application/json", "--data", body,
                                         self.url + "/udp/send")
        self.assertEqual(code, 0, err)
        answer = json.loads(out)
        self.assertEqual(answer["ID"], 3)
        self.assertEqual(decode.get_controller_response(bytes(answer["reply"])).controller, SERIALS[0])

    @inlineCallbacks
    def test_onlyH2Offered(self):
        """
        A client offering only h2 is not refused in the handshake: ALPN is
        declined and it is served HTTP/1.1.
        """
        openssl = require("openssl", "openssl")
        yield self.tunnel()
        request = "GET /hello.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        out, err, code = yield run(openssl, "s_client", "-connect", "127.0.0.1:{}".format(self.port),
                                   "-alpn", "h2", "-CAfile", self.files["ca"][0], "-quiet", stdin=request)
        self.assertIn("HTTP/1.1 200 OK", out, err)
        self.assertNotIn("alert", err)


class ChromiumTests(HTTPSTunnelMixin, TestCase):
    """
    Headless Chromium loads a page from C{https/}, whose script POSTs to
    /udp/send under the end's Content-Security-Policy.

    The test CA is not in Chromium's trust store (an NSS database would be
    needed); Chromium is told to accept the test server's public key alone
    with C{--ignore-certificate-errors-spki-list}, which leaves every other
    certificate check on.
    """

    def setUp(self):
        HTTPSTunnelMixin.setUp(self)
        request = list(encode.get_controller_request(SERIALS[1]))
        with open(os.path.join(self.html, "page.html"), "w") as f:
            f.write('<!DOCTYPE html><html><head><title>tunnel</title><script src="app.js"></script></head>'
                    '<body><p id="out">waiting</p></body></html>')
        with open(os.path.join(self.html, "app.js"), "w") as f:
            f.write("""
window.addEventListener('load', function () {
  fetch('/udp/send', {method: 'POST', headers: {'Content-Type': 'application/json'},
                      body: JSON.stringify({ID: 7, request: %s})})
    .then(function (r) { return r.json(); })
    .then(function (j) { document.getElementById('out').textContent = 'answer ' + JSON.stringify(j); })
    .catch(function (e) { document.getElementById('out').textContent = 'failed ' + e; });
});
""" % (json.dumps(request),))

    @inlineCallbacks
    def test_pageAndSend(self):
        """
        Chromium fetches the page and its script over https/, and the
        script's POST to /udp/send is answered with the controller's reply.
        """
        chromium = require("chromium", "chromium")
        yield self.tunnel()
        profile = tempfile.mkdtemp()
        self.addCleanup(shutil.rmtree, profile, True)
        out, err, code = yield run(chromium, *CHROMIUM, "--user-data-dir=" + profile,
                                   "--ignore-certificate-errors-spki-list=" + spki_hash(self.files["server"][0]),
                                   "--virtual-time-budget=20000", "--dump-dom", self.url + "/page.html")
        self.assertEqual(code, 0, err[-3000:])
        match = re.search(r'<p id="out">answer (.*?)</p>', out)
        self.assertIsNotNone(match, "page did not get its answer:\n" + out[-2000:] + "\n" + err[-3000:])
        answer = json.loads(match.group(1).replace("&quot;", '"'))
        self.assertEqual(answer["ID"], 7)
        self.assertEqual(decode.get_controller_response(bytes(answer["reply"])).controller, SERIALS[1])


class TLSServerALPNTests(TestCase):
    """
    A C{tls/server} end completes the handshake with a client that offers
    ALPN, declining it (the frames are not an ALPN protocol).
    """

    timeout = 120

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.files = certs.make(self.mktemp())
        self.log = LogWatcher()
        self.addCleanup(self.log.stop)

    @inlineCallbacks
    def server(self):
        cert, key = self.files["server"]
        options = Options()
        options.parseOptions(["--in", "udp/listen:127.0.0.1:0", "--out", "tls/server:127.0.0.1:0",
                              "--ca-cert", self.files["ca"][0], "--cert", cert, "--key", key])
        service = TunnelService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        port = yield service.out.whenListening()
        return port.getHost().port

    @inlineCallbacks
    def test_opensslWithALPN(self):
        """
        C{openssl s_client -alpn h2,http/1.1} completes its handshake with
        a verified certificate and no ALPN protocol chosen.
        """
        openssl = require("openssl", "openssl")
        port = yield self.server()
        out, err, code = yield run(openssl, "s_client", "-connect", "127.0.0.1:{}".format(port), "-alpn",
                                   "h2,http/1.1", "-CAfile", self.files["ca"][0], stdin="")
        text = out + err
        self.assertIn("Verify return code: 0 (ok)", text)
        self.assertIn("No ALPN negotiated", text)
        self.assertNotIn("alert", text)
        self.assertRegex(text, r"New, TLSv1\.[23], Cipher is")

    @inlineCallbacks
    def test_curlWithALPN(self):
        """
        curl (ALPN h2, http/1.1) completes its handshake with a tls/server
        end; what it sends next is not a frame, so the end then closes.
        """
        curl = require("curl", "curl")
        port = yield self.server()
        out, err, code = yield run(curl, "--verbose", "--max-time", "20", "--cacert", self.files["ca"][0],
                                   "https://127.0.0.1:{}/".format(port))
        self.assertRegex(err, r"SSL connection using TLSv1\.[23]")
        self.assertNotIn("alert internal error", err)


class SecurityHeaderMixin:
    """
    Every answer of an HTTP end carries the security headers.
    """

    def assertSecurityHeaders(self, headers, api):
        """
        :param headers: a C{Headers} from an answer.
        :param api: whether it is an API answer (C{Cache-Control: no-store}).
        """
        for name, value in EXPECTED.items():
            self.assertEqual(headers.getRawHeaders(name), [value], name)
        [policy] = headers.getRawHeaders("content-security-policy")
        directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
        self.assertEqual(directives["default-src"], "'self'")
        self.assertEqual(directives["frame-ancestors"], "'none'")
        self.assertEqual(directives["object-src"], "'none'")
        if api:
            self.assertEqual(headers.getRawHeaders("cache-control"), ["no-store"])
        hsts = headers.getRawHeaders("strict-transport-security")
        if self.scheme == "https":
            self.assertEqual(hsts, ["max-age=31536000"])
        else:
            self.assertIsNone(hsts)

    @inlineCallbacks
    def test_static(self):
        """
        A static page, a missing page, a refused method and a redirect all
        carry the headers.
        """
        yield self.tunnel()
        for path, code in (("/hello.txt", 200), ("/", 200), ("/missing", 404), ("/sub", 301)):
            response = yield self.client.get(self.url + path, allow_redirects=False)
            yield response.content()
            self.assertEqual(response.code, code, path)
            self.assertSecurityHeaders(response.headers, api=False)
        response = yield self.client.delete(self.url + "/hello.txt")
        yield response.content()
        self.assertEqual(response.code, 405)
        self.assertSecurityHeaders(response.headers, api=False)

    @inlineCallbacks
    def test_api(self):
        """
        API answers, good and bad, carry the headers and C{Cache-Control:
        no-store}.
        """
        yield self.tunnel()
        response, answer = yield self.post("/udp/send", {"ID": 1, "request": list(
            encode.get_controller_request(SERIALS[0]))})
        self.assertEqual(response.code, 200)
        self.assertSecurityHeaders(response.headers, api=True)
        response, answer = yield self.post("/udp/send", body=b"not json")
        self.assertEqual(response.code, 400)
        self.assertSecurityHeaders(response.headers, api=True)
        response, answer = yield self.post("/udp/nowhere", {})
        self.assertEqual(response.code, 404)
        self.assertSecurityHeaders(response.headers, api=True)


class HTTPSecurityHeaderTests(SecurityHeaderMixin, TunnelMixin, TestCase):
    """
    The headers of C{http/}.
    """

    @inlineCallbacks
    def test_refusedBeforeBody(self):
        """
        The 413 written before a huge body is read carries them too.
        """
        yield self.tunnel()
        client = RawClient(b"POST /udp/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                           b"Content-Length: %d\r\n\r\n" % (web.DISCARD_LIMIT + 1))
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        received = yield client.done
        head = received.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
        self.assertIn("413", head.splitlines()[0])
        for name, value in EXPECTED.items():
            self.assertIn("{}: {}".format(name, value.lower()), head)
        self.assertIn("cache-control: no-store", head)
        self.assertIn("content-security-policy: default-src 'self'", head)


class HTTPSSecurityHeaderTests(SecurityHeaderMixin, HTTPSTunnelMixin, TestCase):
    """
    The headers of C{https/}, with HSTS.
    """
