# -*- test-case-name: tests.loopback.test_http,tests.unit.test_http -*-
"""
The HTTP ends: C{http/ADDRESS} and C{https/ADDRESS} (in only).

Browsers and scripts post UHPPOTE requests as JSON, as to the Go tunnel:

    POST /udp/send        {"ID": 1, "wait": true, "request": [23, 148, ...]}
                       -> {"ID": 1, "reply": [23, 148, ...]}
    POST /udp/broadcast   {"ID": 2, "wait": "5s", "request": [23, 148, ...]}
                       -> {"ID": 2, "replies": [[23, 148, ...], ...]}

C{request} is an array of numbers 0..255 or a base64 string. A send with
C{"wait": false} (set-ip, which no controller answers) is answered at once
with C{{"ID": n}}; otherwise with the first reply, or 504 when none comes
within C{--udp-timeout}. A broadcast collects replies for C{wait} (a Go
duration, default 5s, at most 30s). Answers over 16 KiB are gzipped for
clients that accept it (the Go rule). Everything else is served read-only
from the C{--html} folder: no directory listings, no path part starting
with a dot, nothing outside the folder; but C{/console/} is the controller
console (L{uhppoted_tunnel.observe.console}) unless C{--no-http-console}.

Errors are JSON C{{"error": "..."}}, with the C{ID} once it is known.
"""

import math
import os

from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.plugin import IPlugin
from twisted.web import server
from twisted.web.resource import Resource, getChildForRequest
from zope.interface import directlyProvides, implementer

from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.core.addresses import format_address, is_loopback
from uhppoted_tunnel.link.bind import check_interface
from uhppoted_tunnel.core.durations import format_duration
from uhppoted_tunnel.transports.endpoints import server_endpoint
from uhppoted_tunnel.transports.tls.secure import SecureServerEndpoint, watch_certificates
from uhppoted_tunnel.interfaces import IN, IConnectorMaker, IInEnd, ISecureEnd, ITally, ITelemetryServer
from uhppoted_tunnel.observe.jsonapi import (
    BadRequest,
    check_content_type,
    error,
    parse_body,
    respond,
)
from uhppoted_tunnel.link.lifecycle import EndLifecycle
from uhppoted_tunnel.core.packets import hexdump
from uhppoted_tunnel.link.limits import LISTEN_BACKLOG, limit_endpoint
from uhppoted_tunnel.observe.console import PREFIX as CONSOLE_PREFIX
from uhppoted_tunnel.observe.console import ConsolePage
from uhppoted_tunnel.observe.monitor import site_root
from uhppoted_tunnel.observe.status import DEFAULT_MAX_STREAMS, StatusPage
from uhppoted_tunnel.observe.web import (
    DEFAULT_REQUEST_TIMEOUT,
    MAX_BODY,
    ConnectionTracker,
    QuietSite,
    StaticFolder,
    add_security_headers,
    client_address,
)


#: The first path parts that are the status page's on an HTTP end (C{/}
#: too, unless C{--html} has an C{index.html}).
STATUS_PATHS = frozenset([b"status.html", b"status.css", b"status.js", b"logo.svg", b"favicon.svg", b"status"])


class _Exchange:
    """
    A C{/udp/*} request waiting for its answer.
    """

    __slots__ = ("end", "request", "ident", "replies", "timer", "done", "peer")

    def __init__(self, end, request, ident):
        self.end = end
        self.request = request
        self.ident = ident
        self.replies = []
        self.timer = None
        self.done = False
        self.peer = client_address(request) if end.trace else None
        end.pending.add(self)
        request.notifyFinish().addBoth(self._finished)

    def _finished(self, result):
        """
        The request was answered, or the client went away.
        """
        self.done = True
        self.end.pending.discard(self)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def first(self, packet):
        """
        A send's reply: the first is the answer.
        """
        if not self.done:
            self.end.traceReply(packet, self.peer)
            self.answer(200, {"ID": self.ident, "reply": list(packet)})

    def collect(self, packet):
        """
        A broadcast's reply: kept until the wait is over.
        """
        if not self.done:
            self.end.traceReply(packet, self.peer)
            self.replies.append(list(packet))

    def sendTimedOut(self):
        self.timer = None
        self.answer(504, {"ID": self.ident, "error": "no reply within " + format_duration(self.end.udp_timeout)})

    def broadcastDone(self):
        self.timer = None
        self.answer(200, {"ID": self.ident, "replies": self.replies})

    def answer(self, status, document, close=False):
        if self.done:
            return
        self._finished(None)
        respond(self.request, status, document, close)


class UDPResource(Resource):
    """
    C{POST /udp/send} and C{POST /udp/broadcast}.
    """

    isLeaf = True
    endpoints = {b"send": False, b"broadcast": True}

    def __init__(self, end):
        Resource.__init__(self)
        self.end = end

    def render(self, request):
        end = self.end
        path = request.postpath[1:]
        if len(path) != 1 or path[0] not in self.endpoints:
            return error(request, 404, "not found (use /udp/send or /udp/broadcast)")
        if request.method != b"POST":
            request.setHeader(b"Allow", b"POST")
            return error(request, 405, "method not allowed (use POST)")
        broadcast = self.endpoints[path[0]]
        content_type = request.getHeader(b"content-type")
        try:
            check_content_type(None if content_type is None else content_type.decode("latin-1"))
            parsed = parse_body(request.content.read(), broadcast, end.max_payload)
        except BadRequest as e:
            if end.trace:
                end.log.debug("refused a request from {peer}: {reason}", peer=client_address(request), reason=e.message)
            return error(request, e.status, e.message, e.ident)
        return end.forward(request, parsed, broadcast)


class Root(Resource):
    """
    Sends C{/udp/...} to L{UDPResource}; C{/console/...} to the console
    (when the end serves one); the monitoring paths and the
    status page's own (L{STATUS_PATHS}) to them, once the end serves
    telemetry; everything else to the folder. C{/} is the folder's
    C{index.html} when it has one (the Go tunnel's page), else the status
    page (which is also at C{/status.html} either way).
    """

    isLeaf = True

    def __init__(self, end):
        Resource.__init__(self)
        self.end = end
        self.udp = UDPResource(end)
        self.static = StaticFolder(end.html)

    def _showsStatus(self, path):
        """
        Whether a path is the status page's.
        """
        if path == [b""]:
            index = self.static._resolve([b"index.html"])
            return index is None or not os.path.isfile(index)
        return path[0] in STATUS_PATHS

    def render(self, request):
        request.responseHeaders.removeHeader(b"Server")
        add_security_headers(request, self.end.secure)
        if request.too_large:
            return error(request, 413, "request body over {} bytes".format(MAX_BODY), close=True)
        if request.postpath[:1] == [b"udp"]:
            return self.udp.render(request)
        console = self.end.console
        if console is not None and request.postpath[:1] == [CONSOLE_PREFIX]:
            request.prepath.append(request.postpath.pop(0))
            return getChildForRequest(console, request).render(request)
        monitor = self.end.monitor
        if monitor is not None:
            page = monitor.leaf(request)
            if page is not None:
                return page.render(request)
        status = self.end.status
        if status is not None and self._showsStatus(request.postpath):
            return getChildForRequest(status, request).render(request)
        return self.static.render(request)


class HTTPSite(QuietSite):
    """
    The site of an HTTP end: bodies in memory, no access log file.
    """

    def __init__(self, end, reactor):
        server.Site.__init__(self, Root(end), reactor=reactor)
        self.end = end

    @property
    def secure(self):
        """
        Whether the end is C{https/}.
        """
        return self.end.secure

    def log(self, request):
        if self.end.trace:
            self.end.log.debug("{method} {path} {code} for {peer}", method=request.method.decode("latin-1"),
                               path=request.path.decode("latin-1"), code=request.code, peer=client_address(request))


@implementer(IInEnd, ITally, ITelemetryServer)
class HTTPEnd(EndLifecycle, Service):
    """
    C{http/ADDRESS} or C{https/ADDRESS}: takes requests from browsers and
    scripts.

    :ivar pending: the C{/udp/*} requests waiting for their answers.
    """

    log = Logger()
    log_tag = "HTTP"
    role = IN
    events = False
    #: C{https/}: answers carry HSTS
    secure = False
    #: the L{limits.LimitedServerEndpoint} under the endpoint, if any
    limited = None
    #: the L{uhppoted_tunnel.observe.monitor.MonitorRoot} serving /metrics,
    #: /healthz, /readyz and /status.json beside the API, once the tunnel
    #: hands the end its telemetry
    monitor = None
    #: the L{uhppoted_tunnel.observe.status.StatusPage}, likewise
    status = None
    #: the L{uhppoted_tunnel.observe.console.ConsolePage} at /console/, or
    #: C{None} with C{--no-http-console}
    console = None

    def __init__(self, spec, endpoint, router, reactor, settings, secure=False, watch=None):
        """
        :param spec: the connector spec.
        :param endpoint: the L{IStreamServerEndpoint} to listen on (for
            C{https/}, one that wraps connections in TLS).
        :param router: the tunnel's router.
        :param reactor: the reactor (time and, through the endpoint, I/O).
        :param settings: the tunnel's options (C{udp-timeout},
            C{max-payload}, C{html}, C{debug}, C{http-request-timeout},
            C{handshake-timeout}, C{no-http-console}).
        :param secure: C{https/}: the TLS handshake has a deadline and
            answers carry HSTS.
        :param watch: the certificates' expiry watch of an C{https/} end,
            whose endpoint then reloads them (L{ISecureEnd}), or C{None}.
        """
        if watch is not None:
            self.watch = watch
            directlyProvides(self, ISecureEnd)
        self.spec = spec
        self.endpoint = endpoint
        self.router = router
        self.reactor = reactor
        self.udp_timeout = settings["udp-timeout"]
        self.max_payload = settings["max-payload"]
        self.html = settings["html"]
        self.max_status_streams = settings.get("max-status-streams", DEFAULT_MAX_STREAMS)
        self.stall_timeout = settings["stall-timeout"]
        self.trace = settings["debug"]
        if not settings.get("no-http-console", False):
            self.console = ConsolePage(secure=secure)
        self.pending = set()
        self.secure = secure
        if secure:
            self.log_tag = "HTTPS"
        # over TLS, the secure endpoint hands the site only connections
        # whose handshake is done (and times the handshake out itself)
        self.factory = ConnectionTracker(
            HTTPSite(self, reactor), clock=reactor,
            request_timeout=settings.get("http-request-timeout", DEFAULT_REQUEST_TIMEOUT), secure=secure)
        self.factory.log_tag = self.log_tag

    #: the certificate expiry watch of an https/ end, or C{None}
    watch = None

    def reloadCertificates(self):
        """
        Read an C{https/} end's certificates again (L{ISecureEnd}).

        :return: True if reloaded.
        """
        return self.endpoint.reloadCertificates()

    def startService(self):
        Service.startService(self)
        if self.watch is not None:
            self.watch.startService()
        if not os.path.isdir(self.html):
            self.log.warn("--html folder '{folder}' not found: static files will not be served", folder=self.html)
        self.listenOn(self.endpoint, self.factory)

    def announce(self, address):
        EndLifecycle.announce(self, address)
        if not self.secure and not is_loopback(address):
            self.log.warn("{address} serves the request API (anyone who can reach it can send requests to the "
                          "controllers) and the status page (controller serials, peer addresses), unencrypted, to "
                          "anyone who can reach it: bind it to a loopback or management address, or use https/",
                          address=format_address(address))

    def forward(self, request, parsed, broadcast):
        """
        Pass a parsed request to the router and answer it when its reply
        (or its replies, or its timeout) comes.
        """
        exchange = _Exchange(self, request, parsed.ident)
        if not self.running:
            exchange.answer(503, {"ID": parsed.ident, "error": "the tunnel is stopping"})
            return server.NOT_DONE_YET
        if self.trace:
            self.log.debug("request {id} ({n} bytes) from {peer}\n{dump}", id=parsed.ident, n=len(parsed.payload),
                           peer=exchange.peer, dump=hexdump(parsed.payload))
        if broadcast:
            reply, wait = exchange.collect, parsed.wait
        elif parsed.wait:
            reply, wait = exchange.first, self.udp_timeout
        else:
            reply, wait = None, None
        source = getattr(request.getClientAddress(), "host", None)
        if not self.router.request(parsed.payload, reply, source):
            limiter = getattr(self.router, "limiter", None)
            retry = 1 if limiter is None else max(1, math.ceil(1 / limiter.rate))
            request.setHeader(b"Retry-After", b"%d" % retry)
            exchange.answer(429, {"ID": parsed.ident, "error": "rate limit exceeded"})
        elif reply is None:
            exchange.answer(200, {"ID": parsed.ident})
        elif not exchange.done:
            exchange.timer = self.reactor.callLater(
                wait, exchange.broadcastDone if broadcast else exchange.sendTimedOut)
        return server.NOT_DONE_YET

    def serveTelemetry(self, telemetry):
        """
        Serve the tunnel's metrics, health and status beside the API.
        """
        self.monitor = site_root(telemetry)
        self.status = StatusPage(telemetry.snapshot, self.reactor, max_streams=self.max_status_streams,
                                 secure=self.secure, stall_timeout=self.stall_timeout)

    def tally(self, t):
        t.endpoint(self.endpoint)
        t.watch(self.watch)

    def traceReply(self, packet, peer):
        if self.trace:
            self.log.debug("reply ({n} bytes) for {peer}\n{dump}", n=len(packet), peer=peer, dump=hexdump(packet))

    def stopService(self):
        Service.stopService(self)
        if self.watch is not None:
            self.watch.stopService()
        port = self.cancelListen()
        for exchange in list(self.pending):
            exchange.answer(503, {"ID": exchange.ident, "error": "the tunnel is stopping"}, close=True)
        if self.status is not None:
            self.status.stop()
        self.factory.flush()
        if self.limited is not None and self.limited.factory is not None:
            self.limited.factory.flush()
        stopping = [self.factory.closeAll(self.reactor)]
        if port is not None:
            stopping.append(maybeDeferred(port.stopListening))
        return gatherResults(stopping, consumeErrors=True)


@implementer(IPlugin, IConnectorMaker)
class HTTPConnectorMaker:
    """
    Makes C{http/ADDRESS} and C{https/ADDRESS} in ends.
    """

    prefixes = ("http/", "https/")

    def roles(self, prefix):
        return frozenset([IN])

    def relaysEvents(self, prefix):
        return False

    def makeEnd(self, spec, role, settings, router, reactor):
        if settings.get("events"):
            raise ValueError("'{}': an HTTP end takes requests and cannot be part of an event tunnel".format(
                spec.text))
        if spec.interface is not None:
            check_interface(spec.interface)
        secure = spec.prefix == "https/"
        log_tag = "HTTPS" if secure else "HTTP"
        # caps outside TLS, so that a refused connection costs no handshake
        listening = server_endpoint(reactor, spec, backlog=LISTEN_BACKLOG, freebind=settings.get("freebind", False))
        limited = endpoint = limit_endpoint(listening, settings, reactor, log_tag)
        if secure:
            endpoint = SecureServerEndpoint(endpoint, lambda: tls.server_options(settings, protocols=[b"http/1.1"]),
                                            reactor, settings["handshake-timeout"], "HTTPS",
                                            "is the client using plain HTTP?")
        watch = watch_certificates(settings, "server", reactor, "HTTPS") if secure else None
        end = HTTPEnd(spec, endpoint, router, reactor, settings, secure=secure, watch=watch)
        end.limited = limited
        return end
