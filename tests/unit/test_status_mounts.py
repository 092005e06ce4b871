"""
Where a tunnel serves its status page (L{uhppoted_tunnel.observe.status}): at C{/}
of C{--metrics ADDR}, beside C{/metrics} and the health paths, and on an
C{http/} end beside its API and its C{--html} folder. No sockets: the
resources are rendered with C{DummyRequest}s.
"""

import os

from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from uhppoted_tunnel.app import config
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.observe.status import StatusPage, asset
from uhppoted_tunnel.testing import FakeReactor
from uhppoted_tunnel.app.tunnel import TunnelService
from uhppoted_tunnel.observe.web import CONTENT_SECURITY_POLICY


def tunnel(reactor, *args):
    options = Options()
    options.parseOptions(list(args))
    return TunnelService(options, reactor)


class Request(DummyRequest):
    """
    A C{DummyRequest} that keeps a push producer rather than looping on it.
    """

    producer = None

    def registerProducer(self, producer, streaming):
        self.producer = producer

    def unregisterProducer(self):
        self.producer = None


def get(root, path):
    """
    GET a path of a site's root resource, as C{Site} would.

    :return: C{(code, headers, body, request)}; C{body} is what was
        written so far.
    """
    request = Request(path.lstrip(b"/").split(b"/"))
    request.too_large = False
    child = root
    while request.postpath and not child.isLeaf:
        segment = request.postpath.pop(0)
        request.prepath.append(segment)
        child = child.getChildWithDefault(segment, request)
    result = child.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    return request.responseCode or 200, request.responseHeaders, b"".join(request.written), request


def header(headers, name):
    values = headers.getRawHeaders(name)
    return None if values is None else values[-1]


class MetricsSiteTests(SynchronousTestCase):
    """
    C{--metrics ADDR}: the page at C{/}.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.reactor = FakeReactor()
        self.tunnel = tunnel(self.reactor, "--in", "udp/listen:127.0.0.1:60000", "--out",
                             "udp/broadcast:127.0.0.1:60005", "--metrics", "127.0.0.1:0",
                             "--max-status-streams", "3")
        self.root = self.tunnel.monitor.factory.wrappedFactory.resource

    def test_page(self):
        """
        C{/} is the status page and its files are beside it; the health
        paths are still theirs.
        """
        self.assertEqual(get(self.root, b"/")[2], asset("status.html"))
        self.assertEqual(get(self.root, b"/status.js")[2], asset("status.js"))
        self.assertEqual(get(self.root, b"/favicon.svg")[2], asset("logo.svg"))
        self.assertEqual(get(self.root, b"/healthz")[2], b"ok\n")
        self.assertEqual(get(self.root, b"/nothing")[0], 404)

    def test_stream(self):
        """
        C{/status/stream} streams the tunnel's own snapshot, within
        C{--max-status-streams}; stopping the service ends the streams.
        """
        page = self.tunnel.monitor.page
        self.assertIsInstance(page, StatusPage)
        self.assertEqual(page.max_streams, 3)
        code, headers, body, request = get(self.root, b"/status/stream")
        self.assertEqual(header(headers, b"content-type"), b"text/event-stream; charset=utf-8")
        self.assertIn(b'"connector":"udp/broadcast:127.0.0.1:60005"', body)
        self.assertEqual(len(page.streams), 1)
        self.tunnel.monitor.stopService()
        self.assertEqual(page.streams, set())
        self.assertEqual(request.finished, 1)


class HTTPEndTests(SynchronousTestCase):
    """
    An C{http/} end: the page beside the API and C{--html}.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.html = self.mktemp()
        os.makedirs(self.html)
        with open(os.path.join(self.html, "other.html"), "w") as f:
            f.write("other")
        with open(os.path.join(self.html, "status.js"), "w") as f:
            f.write("not the page's")
        self.tunnel = tunnel(FakeReactor(), "--in", "http/127.0.0.1:0", "--out", "udp/broadcast:127.0.0.1:60005",
                             "--html", self.html, "--max-status-streams", "2")
        self.end = self.tunnel.in_
        self.root = self.end.factory.wrappedFactory.resource

    def test_root(self):
        """
        Without an C{index.html} in C{--html}, C{/} is the status page, with
        the security headers.
        """
        code, headers, body, _ = get(self.root, b"/")
        self.assertEqual((code, body), (200, asset("status.html")))
        self.assertEqual(header(headers, b"content-security-policy"), CONTENT_SECURITY_POLICY)
        self.assertIsNone(header(headers, b"strict-transport-security"))

    def test_index(self):
        """
        With one, C{/} is the folder's page (the Go tunnel's), and the
        status page is at C{/status.html}.
        """
        with open(os.path.join(self.html, "index.html"), "w") as f:
            f.write("mine")
        _, _, _, request = get(self.root, b"/")
        request.producer.resumeProducing()  # the file, as the connection would pull it
        self.assertEqual(b"".join(request.written), b"mine")
        self.assertEqual(get(self.root, b"/status.html")[2], asset("status.html"))

    def test_ownFiles(self):
        """
        The page's files are its own, before the folder's; the folder's
        other files are served as before.
        """
        self.assertEqual(get(self.root, b"/status.js")[2], asset("status.js"))
        self.assertEqual(get(self.root, b"/logo.svg")[2], asset("logo.svg"))
        self.assertEqual(get(self.root, b"/other.html")[0], 200)
        self.assertEqual(get(self.root, b"/missing.html")[0], 404)

    def test_stream(self):
        """
        The stream is capped by C{--max-status-streams} and ended when the
        end stops.
        """
        page = self.end.status
        self.assertEqual(page.max_streams, 2)
        streams = [get(self.root, b"/status/stream") for _ in range(2)]
        self.assertEqual(get(self.root, b"/status/stream")[0], 503)
        self.assertEqual(len(page.streams), 2)
        self.end.stopService()
        self.assertEqual(page.streams, set())
        self.assertEqual([request.finished for _, _, _, request in streams], [1, 1])
