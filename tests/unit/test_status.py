"""
Tests for L{uhppoted_tunnel.observe.status}: the status page's resources, served
by a real C{Site} over a C{StringTransport}, with a C{Clock} for time.
"""

import json
import re
from html.parser import HTMLParser

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import server
from twisted.web.resource import Resource

from uhppoted_tunnel.observe import status
from uhppoted_tunnel.observe.status import ASSETS, StatusPage, asset, encode_event
from uhppoted_tunnel.observe.web import CONTENT_SECURITY_POLICY

SNAPSHOT = {
    "tunnel": {"version": "0.1.0", "started": 1764355200.0, "now": 1764355260.5, "ready": True},
    "ends": [
        {"role": "in", "connector": "udp/listen:127.0.0.1:60000", "state": "up", "since": 1764355200.1,
         "peers": []},
        {"role": "out", "connector": "tcp/server:127.0.0.1:4000", "state": "down", "since": 1764355201.0,
         "peers": [{"address": "127.0.0.1:54012", "since": 1764355201.0}]},
    ],
    "controllers": [{"serial": 405419896, "address": "127.0.0.1:60001", "last_reply": 1764355250.0,
                     "last_event": None}],
    "totals": {"requests": 10, "replies": 9, "timeouts": 1, "dropped": 0, "events": 3},
    "rates": {"interval": 1, "requests": [0] * 59 + [3], "events": [0] * 60},
    "events": [{"time": 1764355255.0, "serial": 405419896, "index": 17, "type": "swipe", "door": 1,
                "granted": True, "card": 10058400}],
    "warnings": [{"time": 1764355251.0, "level": "warn", "text": "<b>hostile</b>\nsecond line"}],
}

CLIENT = IPv4Address("TCP", "127.0.0.1", 54321)


class Response:
    """
    An HTTP/1.1 answer read from the bytes a transport received; a chunked
    body may be incomplete (a stream still open).
    """

    def __init__(self, data):
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        self.code = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers.setdefault(name.strip().lower(), []).append(value.strip())
        if self.header(b"transfer-encoding") == b"chunked":
            self.body, self.complete = self._dechunk(rest)
        else:
            self.body, self.complete = rest, True

    def header(self, name):
        values = self.headers.get(name.lower())
        return None if values is None else values[-1]

    @staticmethod
    def _dechunk(data):
        body = b""
        while data:
            size_line, sep, rest = data.partition(b"\r\n")
            if not sep:
                break
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                return body, True
            if len(rest) < size + 2:
                break
            body += rest[:size]
            data = rest[size + 2:]
        return body, False


class _Harness:
    """
    A site serving a L{StatusPage}, and requests made over
    C{StringTransport}s.
    """

    def makePage(self, snapshot=None, **kwargs):
        self.clock = Clock()
        self.snapshot = dict(SNAPSHOT) if snapshot is None else snapshot
        self.page = StatusPage(lambda: self.snapshot if not callable(self.snapshot) else self.snapshot(),
                               self.clock, **kwargs)
        self.site = server.Site(self.page, reactor=self.clock, timeout=None)
        return self.page

    def connect(self):
        channel = self.site.buildProtocol(CLIENT)
        transport = StringTransport(peerAddress=CLIENT,
                                    hostAddress=IPv4Address("TCP", "127.0.0.1", 9100))
        channel.makeConnection(transport)
        return channel, transport

    def get(self, path, method=b"GET", headers=b""):
        channel, transport = self.connect()
        channel.dataReceived(method + b" " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
        return Response(transport.value()), channel, transport

    def assertSecurityHeaders(self, response, hsts=False):
        self.assertEqual(response.header(b"content-security-policy"), CONTENT_SECURITY_POLICY)
        self.assertEqual(response.header(b"x-content-type-options"), b"nosniff")
        self.assertEqual(response.header(b"x-frame-options"), b"DENY")
        self.assertEqual(response.header(b"referrer-policy"), b"no-referrer")
        self.assertEqual(response.header(b"strict-transport-security") is not None, hsts)
        self.assertIsNone(response.header(b"server"))

    def assertNoTimers(self):
        self.assertEqual(self.clock.getDelayedCalls(), [])


class AssetTests(_Harness, SynchronousTestCase):
    """
    The page's static files.
    """

    def setUp(self):
        self.makePage()

    def test_assets(self):
        """
        Each file is served at its path with its content type, the security
        headers and the bytes shipped in the package.
        """
        for path, (name, content_type) in ASSETS.items():
            response, _, _ = self.get(b"/" + path)
            self.assertEqual(response.code, 200, path)
            self.assertEqual(response.header(b"content-type"), content_type, path)
            self.assertEqual(response.header(b"cache-control"), b"no-cache")
            self.assertEqual(response.body, asset(name), path)
            self.assertSecurityHeaders(response)
        self.assertNoTimers()

    def test_contentTypes(self):
        """
        The page is HTML, the style sheet CSS, the script JavaScript and the
        logo SVG, each as its file says.
        """
        self.assertEqual(self.get(b"/")[0].header(b"content-type"), b"text/html; charset=utf-8")
        self.assertEqual(self.get(b"/status.css")[0].header(b"content-type"), b"text/css; charset=utf-8")
        self.assertEqual(self.get(b"/status.js")[0].header(b"content-type"), b"text/javascript; charset=utf-8")
        self.assertEqual(self.get(b"/logo.svg")[0].header(b"content-type"), b"image/svg+xml")
        self.assertEqual(self.get(b"/favicon.svg")[0].header(b"content-type"), b"image/svg+xml")

    def test_hsts(self):
        """
        A page for an C{https/} end adds HSTS to every answer, errors too.
        """
        self.makePage(secure=True)
        self.assertSecurityHeaders(self.get(b"/")[0], hsts=True)
        self.assertSecurityHeaders(self.get(b"/nothing")[0], hsts=True)

    def test_notFound(self):
        """
        Other paths, and paths below a file, are 404 in plain text, with
        the security headers.
        """
        for path in (b"/nothing", b"/status.css/more", b"/status", b"/status/", b"/status/other",
                     b"/status/stream/more", b"/../etc/passwd", b"/.hidden"):
            response, _, _ = self.get(path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(response.header(b"content-type"), b"text/plain; charset=utf-8")
            self.assertSecurityHeaders(response)

    def test_methods(self):
        """
        Only GET and HEAD: anything else is 405 with C{Allow}.
        """
        for path in (b"/", b"/status.js", b"/status/stream"):
            response, _, _ = self.get(path, method=b"POST", headers=b"Content-Length: 0\r\n")
            self.assertEqual(response.code, 405, path)
            self.assertEqual(response.header(b"allow"), b"GET, HEAD")
            self.assertSecurityHeaders(response)
        self.assertEqual(self.page.streams, set())

    def test_head(self):
        """
        HEAD has the headers of GET and no body.
        """
        response, _, _ = self.get(b"/status.css", method=b"HEAD")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header(b"content-type"), b"text/css; charset=utf-8")
        self.assertEqual(response.header(b"content-length"), b"%d" % len(asset("status.css")))
        self.assertEqual(response.body, b"")
        response, _, _ = self.get(b"/status/stream", method=b"HEAD")
        self.assertEqual(response.header(b"content-type"), b"text/event-stream; charset=utf-8")
        self.assertEqual(self.page.streams, set())
        self.assertNoTimers()

    def test_etag(self):
        """
        A file the browser has is answered 304 without its body.
        """
        first, _, _ = self.get(b"/status.js")
        etag = first.header(b"etag")
        self.assertTrue(etag)
        again, _, _ = self.get(b"/status.js", headers=b"If-None-Match: " + etag + b"\r\n")
        self.assertEqual(again.code, 304)
        self.assertEqual(again.body, b"")

    def test_mountedBelow(self):
        """
        Mounted as a child of another resource, the page is served below
        it (its links are relative) and its bare path redirects to the
        folder.
        """
        root = Resource()
        root.putChild(b"tunnel", self.page)
        self.site = server.Site(root, reactor=self.clock, timeout=None)
        response, _, _ = self.get(b"/tunnel/")
        self.assertEqual(response.body, asset("status.html"))
        self.assertEqual(self.get(b"/tunnel/status.js")[0].body, asset("status.js"))
        response, _, _ = self.get(b"/tunnel")
        self.assertEqual(response.code, 301)
        self.assertEqual(response.header(b"location"), b"tunnel/")


class _Elements(HTMLParser):
    """
    Every start tag of a page with its attributes, and the text inside
    script and style elements.
    """

    def __init__(self):
        HTMLParser.__init__(self)
        self.tags = []
        self.inline = []
        self._in = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag in ("script", "style"):
            self._in = tag

    def handle_endtag(self, tag):
        self._in = None

    def handle_data(self, data):
        if self._in and data.strip():
            self.inline.append((self._in, data))


class PageContentTests(SynchronousTestCase):
    """
    What the page's files may hold, for the Content-Security-Policy and
    against markup injection.
    """

    def setUp(self):
        self.elements = _Elements()
        self.elements.feed(asset("status.html").decode("utf-8"))

    def test_noInlineScriptOrStyle(self):
        """
        No inline script, no style element, no style or event-handler
        attribute: C{script-src 'self'; style-src 'self'} allows none.
        """
        self.assertEqual(self.elements.inline, [])
        for tag, attrs in self.elements.tags:
            self.assertNotEqual(tag, "style")
            self.assertNotIn("style", attrs, tag)
            self.assertEqual([name for name in attrs if name.startswith("on")], [], tag)
            if tag == "script":
                self.assertIn("src", attrs)

    def test_onlyOwnAssets(self):
        """
        Every file the page loads is its own, by a relative path.
        """
        loaded = [attrs.get("src") or attrs.get("href") for tag, attrs in self.elements.tags
                  if tag in ("script", "link", "img")]
        self.assertEqual(sorted(loaded), ["favicon.svg", "logo.svg", "status.css", "status.js"])
        for path in loaded:
            self.assertEqual(path.encode("ascii"), path.encode("ascii").lstrip(b"/"))
            self.assertIn(path.encode("ascii"), ASSETS)
        for name in ("status.css", "status.js", "logo.svg"):
            # the SVG namespace is a name, not a place anything is loaded from
            text = asset(name).decode("utf-8").replace("http://www.w3.org/2000/svg", "")
            self.assertNotRegex(text, r"(?i)(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", name)
            self.assertNotIn("@import", text, name)

    def test_textOnly(self):
        """
        The script sets what it shows as text: no C{innerHTML}, no
        C{document.write}, no C{eval}, and no inline style either.
        """
        script = asset("status.js").decode("utf-8")
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(",
                          "new Function", ".style.", "setAttribute('style'"):
            self.assertNotIn(forbidden, script)

    def test_stableIdentifiers(self):
        """
        The ids the browser tests and scripts rely on are in the page.
        """
        ids = {attrs.get("id") for _, attrs in self.elements.tags}
        for expected in ("end-in-state", "end-out-state", "end-in-connector", "end-out-connector",
                         "end-in-peers", "end-out-peers", "total-requests", "total-replies",
                         "total-timeouts", "total-dropped", "total-events", "controllers", "events",
                         "warnings", "live", "link-summary", "chart-requests", "chart-events", "pause"):
            self.assertIn(expected, ids)

    def test_logo(self):
        """
        The logo is a self-contained SVG with a title: no script, no
        external reference.
        """
        logo = asset("logo.svg").decode("utf-8")
        self.assertTrue(logo.startswith("<svg"))
        self.assertIn("<title", logo)
        self.assertNotIn("<script", logo)
        self.assertNotRegex(logo, r"href=")


class StreamTests(_Harness, SynchronousTestCase):
    """
    C{/status/stream}: the snapshot as Server-Sent Events.
    """

    def setUp(self):
        self.makePage()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def events(self, transport):
        """
        The C{data:} events received so far, parsed.
        """
        body = Response(transport.value()).body.decode("utf-8")
        return [json.loads(line[len("data: "):]) for line in body.split("\n") if line.startswith("data: ")]

    def open(self):
        channel, transport = self.connect()
        channel.dataReceived(b"GET /status/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        return channel, transport

    def close(self, channel):
        channel.connectionLost(Failure(ConnectionDone()))

    def test_headers(self):
        """
        The stream is C{text/event-stream}, never cached, never buffered by
        a proxy, with the security headers.
        """
        channel, transport = self.open()
        response = Response(transport.value())
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header(b"content-type"), b"text/event-stream; charset=utf-8")
        self.assertEqual(response.header(b"cache-control"), b"no-store")
        self.assertEqual(response.header(b"x-accel-buffering"), b"no")
        self.assertSecurityHeaders(response)
        self.assertFalse(response.complete)
        self.close(channel)

    def test_framing(self):
        """
        The stream opens with a C{retry:} hint and the snapshot at once,
        each event a C{data:} line and a blank line.
        """
        channel, transport = self.open()
        body = Response(transport.value()).body
        self.assertEqual(body, b"retry: 3000\n\n" + encode_event(SNAPSHOT))
        self.assertEqual(self.events(transport), [SNAPSHOT])
        self.close(channel)

    def test_everySecond(self):
        """
        Then a snapshot every second from the clock, each as it is then.
        """
        channel, transport = self.open()
        for n in range(1, 4):
            self.snapshot = dict(SNAPSHOT, totals=dict(SNAPSHOT["totals"], requests=10 + n))
            self.clock.advance(1)
        self.assertEqual([event["totals"]["requests"] for event in self.events(transport)], [10, 11, 12, 13])
        self.close(channel)

    def test_heartbeat(self):
        """
        A comment every 15 seconds keeps proxies from closing the stream.
        """
        channel, transport = self.open()
        for _ in range(14):
            self.clock.advance(1)
        self.assertNotIn(b": keepalive\n\n", Response(transport.value()).body)
        self.clock.advance(1)
        self.assertEqual(Response(transport.value()).body.count(b": keepalive\n\n"), 1)
        for _ in range(15):
            self.clock.advance(1)
        self.assertEqual(Response(transport.value()).body.count(b": keepalive\n\n"), 2)
        self.close(channel)

    def test_clientGoes(self):
        """
        When the client goes the timer stops: nothing is left scheduled
        and nothing more is written.
        """
        channel, transport = self.open()
        self.assertEqual(len(self.page.streams), 1)
        self.assertTrue(self.clock.getDelayedCalls())
        self.close(channel)
        self.assertEqual(self.page.streams, set())
        self.assertNoTimers()
        written = transport.value()
        self.clock.advance(5)
        self.assertEqual(transport.value(), written)

    def test_stop(self):
        """
        L{StatusPage.stop} ends every stream (the answer is finished) and
        stops their timers.
        """
        streams = [self.open() for _ in range(3)]
        self.page.stop()
        self.assertEqual(self.page.streams, set())
        self.assertNoTimers()
        for channel, transport in streams:
            self.assertTrue(Response(transport.value()).complete)

    def test_slowClient(self):
        """
        While the client's connection is full (the producer is paused)
        nothing is written; when it drains, the latest snapshot at once.
        """
        channel, transport = self.open()
        self.assertIsNotNone(transport.producer)
        stream, = self.page.streams
        stream.pauseProducing()
        written = transport.value()
        self.clock.advance(30)
        self.assertEqual(transport.value(), written)
        self.snapshot = dict(SNAPSHOT, totals=dict(SNAPSHOT["totals"], requests=99))
        stream.resumeProducing()
        self.assertEqual(self.events(transport)[-1]["totals"]["requests"], 99)
        self.close(channel)
        self.assertNoTimers()

    def test_oneLine(self):
        """
        A snapshot is one C{data:} line whatever its strings hold.
        """
        event = encode_event(SNAPSHOT)
        self.assertTrue(event.endswith(b"\n\n"))
        self.assertEqual(event.count(b"\n"), 2)
        self.assertEqual(json.loads(event[len(b"data: "):]), SNAPSHOT)

    def test_snapshotFails(self):
        """
        A snapshot that cannot be had (an exception, or a value JSON cannot
        carry) sends no event, logs a throttled error, and the stream goes
        on.
        """
        def broken():
            raise RuntimeError("boom")

        self.snapshot = broken
        channel, transport = self.open()
        self.clock.advance(3)
        self.assertEqual(self.events(transport), [])
        errors = [event for event in self.logged if "status snapshot failed" in event["log_format"]]
        self.assertEqual(len(errors), 1)
        self.snapshot = dict(SNAPSHOT, tunnel=dict(SNAPSHOT["tunnel"], now=float("nan")))
        self.clock.advance(1)
        self.assertEqual(self.events(transport), [])
        self.snapshot = SNAPSHOT
        self.clock.advance(1)
        self.assertEqual(self.events(transport), [SNAPSHOT])
        self.close(channel)
        self.page.stop()
        self.assertNoTimers()


class StreamCapTests(_Harness, SynchronousTestCase):
    """
    At most C{max_streams} streams at once.
    """

    def setUp(self):
        self.makePage(max_streams=2)
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def warnings(self):
        return [event for event in self.logged if "status stream" in event["log_format"]]

    def test_default(self):
        """
        Sixteen by default.
        """
        self.assertEqual(status.DEFAULT_MAX_STREAMS, 16)
        self.assertEqual(StatusPage(dict, Clock()).max_streams, 16)

    def test_cap(self):
        """
        One stream over the cap is answered 503 with C{Retry-After}, at
        once, and its connection holds no timer; the open ones go on.
        """
        open_ = [self.get(b"/status/stream") for _ in range(2)]
        response, channel, _ = self.get(b"/status/stream")
        self.assertEqual(response.code, 503)
        self.assertEqual(response.header(b"retry-after"), b"3")
        self.assertIn(b"--max-status-streams", response.body)
        self.assertSecurityHeaders(response)
        self.assertEqual(len(self.page.streams), 2)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        for _, channel, _ in open_:
            channel.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.get(b"/status/stream")[0].code, 200)
        self.page.stop()
        self.assertNoTimers()

    def test_warning(self):
        """
        The cap biting is a warning naming the flag, the limit and the
        client; more refusals within a minute are one more warning with
        their count, when the minute is up.
        """
        for _ in range(2):
            self.get(b"/status/stream")
        for _ in range(5):
            self.assertEqual(self.get(b"/status/stream")[0].code, 503)
        warnings = self.warnings()
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["count"], 1)
        self.assertEqual(warnings[0]["limit"], 2)
        self.assertEqual(warnings[0]["peer"], "127.0.0.1:54321")
        self.assertIn("--max-status-streams", warnings[0]["log_format"])
        self.clock.advance(60)
        warnings = self.warnings()
        self.assertEqual([w["count"] for w in warnings], [1, 4])
        self.page.stop()
        self.assertNoTimers()


class ScriptTests(SynchronousTestCase):
    """
    The script reads the stream by the path the page serves it at.
    """

    def test_streamPath(self):
        script = asset("status.js").decode("utf-8")
        self.assertRegex(script, r"STREAM = 'status/stream'")
        self.assertIsNotNone(re.search(r"new EventSource\(STREAM\)", script))


class SettingsTests(SynchronousTestCase):
    """
    C{--max-status-streams} and its TOML key.
    """

    ARGS = ["--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:12345"]

    def setUp(self):
        from uhppoted_tunnel.app import config

        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def parse(self, *args):
        from uhppoted_tunnel.app.options import Options

        options = Options()
        options.parseOptions(self.ARGS + list(args))
        return options

    def test_default(self):
        """
        Sixteen, without flag or file.
        """
        self.assertEqual(self.parse()["max-status-streams"], 16)

    def test_flag(self):
        self.assertEqual(self.parse("--max-status-streams", "3")["max-status-streams"], 3)

    def test_toml(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("[host]\nmax-status-streams = 5\n")
        self.assertEqual(self.parse("--config", path + "#host")["max-status-streams"], 5)

    def test_bad(self):
        """
        Zero or a non-number is a usage error naming the flag.
        """
        from twisted.python import usage

        for value in ("0", "x"):
            e = self.assertRaises(usage.UsageError, self.parse, "--max-status-streams", value)
            self.assertIn("--max-status-streams", str(e))


class PackagingTests(SynchronousTestCase):
    """
    The page's files ship with the package, and the README's logo is the
    page's.
    """

    def test_packageData(self):
        """
        Every file in C{assets/} matches a C{package_data} pattern of
        C{setup.cfg}, so a non-editable install carries it.
        """
        import configparser
        import fnmatch
        import os

        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        setup = os.path.join(root, "setup.cfg")
        if not os.path.exists(setup):
            raise self.skipTest("no setup.cfg beside the tests")
        parser = configparser.ConfigParser()
        parser.read(setup)
        patterns = parser["options.package_data"]["uhppoted_tunnel.observe"].split()
        folder = os.path.join(root, "uhppoted_tunnel", "observe", "assets")
        for name in os.listdir(folder):
            self.assertTrue(any(fnmatch.fnmatch("assets/" + name, p) for p in patterns), name)
        logo = os.path.join(root, "docs", "logo.svg")
        with open(logo, "rb") as f:
            self.assertEqual(f.read(), asset("logo.svg"))


class StreamStallTests(_Harness, SynchronousTestCase):
    """
    A stream whose client never reads is dropped after the stall timeout
    (C{--stall-timeout}), so such clients cannot hold every stream slot
    (issue 25, item 7).
    """

    def setUp(self):
        self.makePage(max_streams=16, stall_timeout=30.0)
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def open(self):
        channel, transport = self.connect()
        channel.dataReceived(b"GET /status/stream HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        return channel, transport

    def test_neverReadingClientsDropped(self):
        """
        Sixteen clients whose connections stay full (the transport pauses
        its producer) hold every slot until the stall timeout; past it each
        is aborted, one throttled warning names the flag, and a new viewer
        is served.
        """
        stalled = [self.open() for _ in range(16)]
        for _, transport in stalled:
            transport.producer.pauseProducing()
        self.assertEqual(self.get(b"/status/stream")[0].code, 503)
        self.clock.advance(30)
        self.assertEqual(len(self.page.streams), 16, "dropped before the stall timeout")
        self.clock.advance(1)
        self.assertEqual(self.page.streams, set())
        for channel, transport in stalled:
            self.assertTrue(transport.disconnected)
            channel.connectionLost(Failure(ConnectionDone()))
        warnings = [e for e in self.logged if "read nothing" in e["log_format"]]
        self.assertEqual(len(warnings), 1)
        self.assertIn("--stall-timeout", warnings[0]["log_format"])
        response, channel, _ = self.get(b"/status/stream")
        self.assertEqual(response.code, 200)
        channel.connectionLost(Failure(ConnectionDone()))
        self.page.stop()
        self.assertNoTimers()

    def test_slowButReadingKept(self):
        """
        A client that reads now and then (its connection drains before the
        stall timeout) is kept.
        """
        channel, transport = self.open()
        for _ in range(5):
            transport.producer.pauseProducing()
            self.clock.advance(25)
            transport.producer.resumeProducing()
            self.clock.advance(1)
        self.assertEqual(len(self.page.streams), 1)
        self.assertFalse(transport.disconnected)
        channel.connectionLost(Failure(ConnectionDone()))
        self.page.stop()
        self.assertNoTimers()
