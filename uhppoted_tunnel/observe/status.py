# -*- test-case-name: tests.unit.test_status -*-
"""
The live status page: a C{twisted.web} resource tree that shows what a
tunnel is doing, in a browser, as it happens.

    /                 the page (HTML, after C{assets/head.html}; also
                      /status.html)
    /status.css       its style sheet (after the one it shares with the
                      console, C{assets/base.css})
    /status.js        its script
    /logo.svg         the project's logo (also /favicon.svg)
    /status/stream    the status snapshot as Server-Sent Events

Everything is a static file shipped in the package (C{assets/}): no
external asset, no inline script or style, so the page works under the
HTTP ends' Content-Security-Policy (L{web.CONTENT_SECURITY_POLICY}), which
every answer carries with the other L{web.SECURITY_HEADERS}.

The stream sends the snapshot (see L{StatusPage}) at once and then every
second while the client stays, a comment now and then as a heartbeat for
proxies, and a C{retry:} hint for the browser's reconnection. A client
that does not read is not written to (the stream is a streaming producer
of its connection) and gets the latest snapshot when it reads again. At
most C{max_streams} streams are open at once (C{--max-status-streams});
one more is answered 503, with a throttled warning.
"""

import hashlib
import json
from importlib import resources

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.web import http, server
from twisted.web.resource import Resource
from zope.interface import implementer

from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.observe.defaults import DEFAULT_MAX_STREAMS
from uhppoted_tunnel.observe.web import add_security_headers, client_address

#: Seconds between snapshots on a stream.
INTERVAL = 1.0

#: Seconds between heartbeat comments on a stream.
HEARTBEAT = 15.0

#: The browser's reconnection delay, in milliseconds (the C{retry:} field).
RETRY_MS = 3000

#: The files of the page, by the path they are served at: (file in
#: C{assets/}, content type).
ASSETS = {
    b"": ("status.html", b"text/html; charset=utf-8"),
    b"status.html": ("status.html", b"text/html; charset=utf-8"),
    b"status.css": ("status.css", b"text/css; charset=utf-8"),
    b"status.js": ("status.js", b"text/javascript; charset=utf-8"),
    b"logo.svg": ("logo.svg", b"image/svg+xml"),
    b"favicon.svg": ("logo.svg", b"image/svg+xml"),
}


#: What the status page and the console share, by the ending of the
#: files it begins: C{base.css} (the palette and the layout) at the head
#: of each page's style sheet, and C{head.html} (the doctype and the
#: document head's metadata) at the head of each page. One file a page,
#: as before: no new path for the Content-Security-Policy to allow.
SHARED = {".css": "base.css", ".html": "head.html"}


def _file(name):
    return resources.files("uhppoted_tunnel.observe").joinpath("assets", name).read_bytes()


def asset(name):
    """
    The bytes served for a file in the package's C{assets/} folder: the
    file's own, after the L{SHARED} file of its kind.
    """
    data = _file(name)
    shared = SHARED.get(name[name.rfind("."):])
    if shared is not None and shared != name:
        return _file(shared) + data
    return data


def encode_event(document):
    """
    A snapshot as one Server-Sent Event: C{data: <json>} and a blank line.
    JSON without indentation holds no line break (those in strings are
    escaped), so the event is one C{data:} line.

    :raise ValueError: for a value JSON cannot carry (NaN, infinity).
    """
    return b"data: " + json.dumps(document, separators=(",", ":"), allow_nan=False).encode("utf-8") + b"\n\n"


def _plain(request, code, text, allow=None):
    """
    Answer with a short text.
    """
    request.setResponseCode(code)
    request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
    request.setHeader(b"Cache-Control", b"no-store")
    if allow is not None:
        request.setHeader(b"Allow", allow)
    return text.encode("utf-8") + b"\n"


def _readable(request):
    """
    C{None} if the request is a GET or a HEAD, else the 405 answer.
    """
    if request.method in (b"GET", b"HEAD"):
        return None
    return _plain(request, 405, "method not allowed", allow=b"GET, HEAD")


class _NotFound(Resource):
    """
    404, as text.
    """

    isLeaf = True

    def render(self, request):
        return _plain(request, 404, "not found")


class StaticAsset(Resource):
    """
    One file of the page, from memory, with its content type. Browsers
    revalidate it (C{no-cache}) so that an upgrade shows at once; the
    ETag makes that cheap.
    """

    isLeaf = True

    def __init__(self, body, content_type):
        Resource.__init__(self)
        self.body = body
        self.content_type = content_type
        self.etag = b'"' + hashlib.sha256(body).hexdigest()[:16].encode("ascii") + b'"'

    def render(self, request):
        refused = _readable(request)
        if refused is not None:
            return refused
        if request.postpath:
            return _NotFound().render(request)
        request.setHeader(b"Content-Type", self.content_type)
        request.setHeader(b"Cache-Control", b"no-cache")
        if request.setETag(self.etag) == http.CACHED:
            return b""
        return self.body


#: How long a stream's client may read nothing before it is dropped, by
#: default: the default of C{--stall-timeout}, which sets it.
DEFAULT_STALL_TIMEOUT = 30.0


@implementer(IPushProducer)
class StatusStream:
    """
    One client's stream of snapshots: a timer while the client stays.

    A client whose connection stays full (the producer paused) for more
    than the page's C{stall_timeout} reads nothing: its connection is
    aborted, so that clients that never read cannot hold every stream.

    :ivar request: the request being answered.
    :ivar paused: the client's connection is not taking more just now.
    """

    def __init__(self, page, request):
        self.page = page
        self.request = request
        self.paused = False
        self.ended = False
        self._paused_at = None
        self._beat = page.clock.seconds()
        self._timer = LoopingCall(self._tick)
        self._timer.clock = page.clock

    def start(self):
        """
        Send the headers, the C{retry:} hint and the first snapshot, and
        start the timer; the request's end stops it.
        """
        request = self.request
        request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        # proxies such as nginx would buffer the stream otherwise
        request.setHeader(b"X-Accel-Buffering", b"no")
        request.registerProducer(self, True)
        request.write(b"retry: %d\n\n" % self.page.retry)
        request.notifyFinish().addBoth(self._finished)
        if not self.ended:
            self._timer.start(self.page.interval, now=True)

    def _tick(self):
        if self.paused:
            if (self._paused_at is not None and not self.ended
                    and self.page.clock.seconds() - self._paused_at > self.page.stall_timeout):
                self._stalled()
            return
        self._send()
        now = self.page.clock.seconds()
        if now - self._beat >= self.page.heartbeat and not self.ended:
            self._beat = now
            self.request.write(b": keepalive\n\n")

    def _send(self):
        event = self.page.event()
        if event is not None and not self.ended:
            self.request.write(event)

    def _stalled(self):
        """
        The client has read nothing for longer than the stall timeout:
        free its slot at once and abort its connection.
        """
        self.ended = True
        if self._timer.running:
            self._timer.stop()
        self.page.streamStalled(self, client_address(self.request))
        self.request.transport.abortConnection()

    def _finished(self, result):
        """
        The client went away (or the stream was ended): stop the timer.
        """
        self.ended = True
        if self._timer.running:
            self._timer.stop()
        self.page.streamEnded(self)

    def end(self):
        """
        Finish the answer (the page is stopping).
        """
        if not self.ended:
            self.request.unregisterProducer()
            self.request.finish()

    # IPushProducer: the connection says when the client is not reading

    def pauseProducing(self):
        if not self.paused:
            self._paused_at = self.page.clock.seconds()
        self.paused = True

    def resumeProducing(self):
        if self.paused and not self.ended:
            self.paused = False
            self._paused_at = None
            self._send()

    def stopProducing(self):
        self.paused = True


class StreamResource(Resource):
    """
    C{/status/stream}: Server-Sent Events.
    """

    isLeaf = True

    def __init__(self, page):
        Resource.__init__(self)
        self.page = page

    def render(self, request):
        refused = _readable(request)
        if refused is not None:
            return refused
        if request.postpath not in ([], [b""]):
            return _NotFound().render(request)
        return self.page.openStream(request)


class _Folder(Resource):
    """
    A path segment that only has children (C{/status/}).
    """

    def getChild(self, path, request):
        return _NotFound()

    def render(self, request):
        return _NotFound().render(request)


class StatusPage(Resource):
    """
    The status page's resource tree, to serve at the root of a site (or as
    a child of another resource: every path it links is relative).

    :param snapshot: a callable taking no argument that returns the
        tunnel's status as a dict that JSON can carry::

            {"tunnel": {"version", "started", "now", "ready"},
             "ends": [{"role", "connector", "state", "since",
                       "peers": [{"address", "since"}]}],
             "controllers": [{"serial", "address", "last_reply", "last_event"}],
             "totals": {"requests", "replies", "timeouts", "dropped", "events"},
             "rates": {"interval", "requests": [60 ints], "events": [60 ints]},
             "events": [{"time", "serial", "index", "type", "door", "granted", "card"}],
             "warnings": [{"time", "level", "text"}]}

        times in Unix seconds; C{state} one of C{up}, C{down},
        C{connecting}, C{failed}.
    :param clock: an C{IReactorTime}, for the streams' timers.
    :param max_streams: the concurrent streams allowed.
    :param secure: answers carry HSTS (an C{https/} end).
    :param interval: seconds between snapshots on a stream.
    :param heartbeat: seconds between heartbeat comments.
    :param retry: the browser's reconnection delay in milliseconds.
    :param stall_timeout: seconds a stream's client may read nothing
        before it is dropped (C{--stall-timeout}).

    :ivar streams: the open L{StatusStream}s.
    """

    log = Logger()
    log_tag = "HTTP"

    def __init__(self, snapshot, clock, max_streams=DEFAULT_MAX_STREAMS, secure=False, interval=INTERVAL,
                 heartbeat=HEARTBEAT, retry=RETRY_MS, stall_timeout=DEFAULT_STALL_TIMEOUT):
        Resource.__init__(self)
        self.snapshot = snapshot
        self.clock = clock
        self.max_streams = max_streams
        self.secure = secure
        self.interval = interval
        self.heartbeat = heartbeat
        self.retry = retry
        self.stall_timeout = stall_timeout
        self.streams = set()
        self._refused = Throttle(clock, self._warnRefused)
        self._failed = Throttle(clock, self._warnFailed)
        self._stalls = Throttle(clock, self._warnStalled)
        self._last_refused = None
        self._last_stalled = None
        self._last_error = None
        for path, (name, content_type) in ASSETS.items():
            self.putChild(path, StaticAsset(asset(name), content_type))
        folder = _Folder()
        folder.putChild(b"stream", StreamResource(self))
        self.putChild(b"status", folder)

    def getChildWithDefault(self, path, request):
        # every answer from the tree, errors included, has the headers
        request.responseHeaders.removeHeader(b"Server")
        add_security_headers(request, self.secure)
        return Resource.getChildWithDefault(self, path, request)

    def getChild(self, path, request):
        return _NotFound()

    def render(self, request):
        # the tree as a child reached without a trailing slash
        add_security_headers(request, self.secure)
        request.setResponseCode(301)
        request.setHeader(b"Location", request.prepath[-1] + b"/" if request.prepath else b"/")
        return b""

    def event(self):
        """
        The current snapshot as an event, or C{None} (with a throttled
        warning) when it cannot be had.
        """
        try:
            return encode_event(self.snapshot())
        except Exception as e:
            self._last_error = e
            self._failed.count()
            return None

    def openStream(self, request):
        """
        Answer C{request} with a stream, or 503 when C{max_streams} are
        open.
        """
        if len(self.streams) >= self.max_streams:
            self._last_refused = client_address(request)
            self._refused.count()
            request.setHeader(b"Retry-After", b"%d" % max(1, self.retry // 1000))
            return _plain(request, 503, "too many status streams open ({}, --max-status-streams)".format(
                self.max_streams))
        if request.method == b"HEAD":
            request.setHeader(b"Content-Type", b"text/event-stream; charset=utf-8")
            request.setHeader(b"Cache-Control", b"no-store")
            return b""
        stream = StatusStream(self, request)
        self.streams.add(stream)
        stream.start()
        return server.NOT_DONE_YET

    def streamEnded(self, stream):
        self.streams.discard(stream)

    def streamStalled(self, stream, peer):
        """
        A stream was dropped for its client reading nothing.
        """
        self.streams.discard(stream)
        self._last_stalled = peer
        self._stalls.count()

    def stop(self):
        """
        End every stream and report what is not yet reported: for the
        owner's C{stopService}.
        """
        for stream in list(self.streams):
            stream.end()
        self._refused.flush()
        self._failed.flush()
        self._stalls.flush()

    def _warnRefused(self, count):
        self.log.warn("refused {count} status stream(s), the last from {peer}: {limit} open already "
                      "(--max-status-streams)", count=count, peer=self._last_refused, limit=self.max_streams)

    def _warnStalled(self, count):
        self.log.warn("dropped {count} status stream(s), the last to {peer}: the client read nothing for over "
                      "{timeout:g}s (--stall-timeout)", count=count, peer=self._last_stalled,
                      timeout=self.stall_timeout)

    def _warnFailed(self, count):
        self.log.error("status snapshot failed {count} time(s): {error!r}", count=count, error=self._last_error)
