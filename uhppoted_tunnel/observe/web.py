# -*- test-case-name: tests.loopback.test_http,tests.unit.test_http -*-
"""
twisted.web plumbing for the HTTP ends: a request with a bounded body, a
read-only static folder, security headers on every answer, and connection
tracking so that stopping closes every connection.
"""

import os
from io import BytesIO
from urllib.parse import quote

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web import server
from twisted.web.resource import NoResource, Resource
from twisted.web.static import File


from uhppoted_tunnel.observe.jsonapi import encode_json
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.link.limits import prove
from uhppoted_tunnel.observe.defaults import DEFAULT_REQUEST_TIMEOUT  # noqa: F401 (monitor and ends.http import it from here)

#: The longest request body accepted.
MAX_BODY = 16384

#: A body declared or sent beyond this is refused at once and the
#: connection closed, rather than read to its end first.
DISCARD_LIMIT = 1 << 20

#: How long stopping waits for connections to close before aborting them.
STOP_GRACE = 5.0

#: The page served from C{--html} only talks to its own origin: scripts,
#: styles, images and C{fetch} from the tunnel itself, no plugins, no
#: framing by other sites, forms posted only here.
CONTENT_SECURITY_POLICY = (b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           b"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           b"frame-ancestors 'none'")

#: Sent with everything an HTTP end serves.
SECURITY_HEADERS = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Content-Security-Policy", CONTENT_SECURITY_POLICY),
    (b"X-Frame-Options", b"DENY"),
    (b"Referrer-Policy", b"no-referrer"),
)

#: Sent by C{https/} ends as well: browsers that have seen it use HTTPS
#: only, for a year.
HSTS = (b"Strict-Transport-Security", b"max-age=31536000")

#: Sent with every API answer (JSON), which must never be cached.
NO_STORE = (b"Cache-Control", b"no-store")

#: What twisted.web writes, and nothing else, for a request it cannot
#: parse (a bad request line or header); L{_Connection} writes
#: L{bad_request} instead.
TWISTED_BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\n\r\n"


def bad_request(secure):
    """
    A 400 answer to a request that cannot be parsed, with the headers
    every answer carries, closing the connection.
    """
    body = b"bad request\n"
    headers = b"".join(b"%s: %s\r\n" % header for header in security_headers(secure))
    return (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\n%s"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (headers, len(body), body))


def security_headers(secure):
    """
    The headers every answer carries.

    :param secure: whether the end is C{https/} (adds L{HSTS}).
    :return: C{(name, value)} pairs.
    """
    return SECURITY_HEADERS + ((HSTS,) if secure else ())


def add_security_headers(request, secure):
    """
    Set L{security_headers} on a request's answer.
    """
    for name, value in security_headers(secure):
        request.setHeader(name, value)


class StaticFolder(Resource):
    """
    Read-only files from a folder: no directory listings, no path part
    that starts with a dot, nothing that resolves (through C{..} or a
    symbolic link) outside the folder.
    """

    isLeaf = True

    def __init__(self, folder):
        Resource.__init__(self)
        self.folder = folder

    def render(self, request):
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"Allow", b"GET, HEAD")
            request.setResponseCode(405)
            request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
            return b"method not allowed\n"
        segments = request.postpath
        trailing = bool(segments) and segments[-1] == b""
        parts = segments[:-1] if trailing else segments
        target = self._resolve(parts)
        if target is not None and os.path.isdir(target):
            if parts and not trailing:
                # as Go does, so that relative links in its index work
                request.setResponseCode(301)
                request.setHeader(b"Location", quote(parts[-1], safe="").encode("ascii") + b"/")
                return b""
            target = self._resolve(parts + [b"index.html"])
        elif trailing and parts:
            target = None
        if target is None or not os.path.isfile(target):
            return NoResource().render(request)
        return File(target).render(request)

    def _resolve(self, parts):
        """
        The real path of the file named by C{parts}, or C{None} when the
        request may not have it.
        """
        names = []
        for part in parts:
            if not part or part.startswith(b".") or b"/" in part or b"\\" in part or b"\0" in part:
                return None
            try:
                names.append(part.decode("utf-8"))
            except UnicodeDecodeError:
                return None
        root = os.path.realpath(self.folder)
        target = os.path.realpath(os.path.join(root, *names))
        if target != root and not target.startswith(root.rstrip(os.sep) + os.sep):
            return None
        return target


class LimitedRequest(server.Request):
    """
    A request whose body may be at most L{MAX_BODY} bytes, by its
    Content-Length and by the bytes that arrive.

    A body over the limit is read and dropped, then answered 413 and the
    connection closed; one declared over L{DISCARD_LIMIT}, or announced with
    C{Expect: 100-continue}, is answered at once, before its body.
    """

    too_large = False
    refused = False
    discarded = 0

    @property
    def secure_end(self):
        """
        Whether the request came to an C{https/} end (its site says so).
        """
        return bool(getattr(self.channel.site, "secure", False))

    def gotLength(self, length):
        if length is not None and length > MAX_BODY:
            self.too_large = True
            if length > DISCARD_LIMIT or self.requestHeaders.hasHeader(b"expect"):
                # no "100 Continue": the body is not wanted
                self.requestHeaders.removeHeader(b"expect")
                self._refuse()
        server.Request.gotLength(self, length)

    def handleContentChunk(self, data):
        if self.refused:
            return
        if not self.too_large and self.content.tell() + len(data) > MAX_BODY:
            self.too_large = True
            self.content = BytesIO()
        if self.too_large:
            self.discarded += len(data)
            if self.discarded > DISCARD_LIMIT:
                self._refuse()
            return
        self.content.write(data)

    def requestReceived(self, command, path, version):
        connection = self._connection()
        if connection is not None:
            connection.requestRead()
        if not self.refused:
            server.Request.requestReceived(self, command, path, version)

    def finish(self):
        # before finishing, which may go straight on to a pipelined request
        connection = self._connection()
        if connection is not None and not self.finished:
            connection.responseDone()
        server.Request.finish(self)

    def _connection(self):
        """
        The L{_Connection} that carries this request (C{None} in tests
        that give a request some other transport).
        """
        transport = getattr(getattr(self, "channel", None), "transport", None)
        return transport if isinstance(transport, _Connection) else None

    def _refuse(self):
        """
        Answer 413 before the body has been read, and close.
        """
        self.refused = True
        body, _ = encode_json({"error": "request body over {} bytes".format(MAX_BODY)})
        headers = b"".join(b"%s: %s\r\n" % header for header in security_headers(self.secure_end) + (NO_STORE,))
        self.channel.transport.write(
            b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: application/json\r\n%s"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (headers, len(body), body))
        self.channel.loseConnection()


class _Connection(ProtocolWrapper):
    """
    An HTTP connection, with a Deferred that fires when it has closed, and
    its deadline: each request's head and body must have arrived within
    C{request_timeout} (nginx's C{client_header_timeout}, for the whole
    request rather than between bytes, so a client that drips one byte at
    a time is closed all the same). The first request's time starts when
    the connection is made (over TLS, when the handshake is done: the
    secure endpoint times the handshake); a later one's with its first
    byte once the previous answer has been sent. While a request is being
    answered no deadline runs.

    A connection past a deadline is closed, with a throttled warning.
    """

    _deadline = None
    _busy = False
    _early = False
    _expired = False

    def __init__(self, factory, wrapped):
        ProtocolWrapper.__init__(self, factory, wrapped)
        self.closed = Deferred()

    def connectionMade(self):
        self._armRequest()

    def dataReceived(self, data):
        if self._expired:
            return  # closing: nothing more is read or answered
        if self._busy:
            self._early = True
        elif self._deadline is None and not self._expired:
            self._armRequest()
        ProtocolWrapper.dataReceived(self, data)

    def write(self, data):
        if data == TWISTED_BAD_REQUEST:
            # twisted.web's own 400 carries no headers: these carry the
            # security headers like every other answer
            data = bad_request(self.factory.secure)
        ProtocolWrapper.write(self, data)

    def requestRead(self):
        """
        A request's head and body have all arrived: its deadline is met,
        and under a server end's caps the connection is no longer one that
        may be closed to make room for a newcomer.
        """
        self._disarm()
        prove(self.transport)
        self._busy = True
        self._early = False

    def responseDone(self):
        """
        A request has been answered: the next one's time starts with its
        first byte (now, if some has come already).
        """
        self._busy = False
        if self._early:
            self._early = False
            self._armRequest()

    def _armRequest(self):
        if self.factory.request_timeout is not None:
            self._arm(self.factory.request_timeout, self._requestTimedOut)

    def _arm(self, timeout, expired):
        self._disarm()
        self._deadline = self.factory.clock.callLater(timeout, expired)

    def _disarm(self):
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _requestTimedOut(self):
        self._deadline = None
        self._expired = True
        self.factory.timedOut(self.transport.getPeer())
        body = b"request not complete within the time allowed\n"
        headers = b"".join(b"%s: %s\r\n" % header for header in security_headers(self.factory.secure))
        self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; charset=utf-8\r\n%s"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (headers, len(body), body))
        self._close()

    def _close(self):
        """
        Close, and abort if the peer has not let it close within the
        grace period (it does not read what is written).
        """
        self.transport.loseConnection()
        self._deadline = self.factory.clock.callLater(self.factory.grace, self.transport.abortConnection)

    def connectionLost(self, reason):
        self._disarm()
        ProtocolWrapper.connectionLost(self, reason)
        self.closed.callback(None)


class ConnectionTracker(WrappingFactory):
    """
    Wraps the site to know its open connections, so that stopping closes
    them all (keep-alive connections included), and to put deadlines on
    their requests (see L{_Connection}).

    :ivar request_timeout: seconds a request's head and body may take, or
        C{None} for no deadline.
    :ivar secure: whether the end is C{https/} (for the headers).
    """

    noisy = False
    protocol = _Connection
    log = Logger()
    log_tag = "HTTP"
    secure = False

    def __init__(self, wrappedFactory, clock=None, request_timeout=None, secure=False, grace=STOP_GRACE):
        """
        :param wrappedFactory: the site.
        :param clock: an C{IReactorTime}, needed with a timeout.
        :param request_timeout: see L{request_timeout}.
        :param secure: see L{secure}.
        :param grace: how long a connection closed for a deadline may take
            to close before it is aborted.
        """
        WrappingFactory.__init__(self, wrappedFactory)
        self.clock = clock
        self.request_timeout = request_timeout
        self.secure = secure
        self.grace = grace
        self._last = None
        self._timeouts = None if clock is None else Throttle(clock, self._warnTimeouts)

    def timedOut(self, peer):
        """
        A connection was closed for missing its request deadline.
        """
        self._last = peer
        self._timeouts.count()

    def _warnTimeouts(self, count):
        self.log.warn("closed {count} connection(s), the last from {peer}: request head and body not received "
                      "within {timeout:g}s (--http-request-timeout)", count=count, peer=format_address(self._last),
                      timeout=self.request_timeout)

    def flush(self):
        """
        Report what is not yet reported (when the end stops).
        """
        if self._timeouts is not None:
            self._timeouts.flush()

    def closeAll(self, clock, grace=STOP_GRACE):
        """
        Close every connection, aborting those still open after C{grace}
        seconds.

        :return: a Deferred that fires when all are closed.
        """
        connections = list(self.protocols)
        if not connections:
            return succeed(None)
        for connection in connections:
            connection.transport.loseConnection()

        def abort():
            for connection in connections:
                if not connection.closed.called:
                    connection.transport.abortConnection()

        timer = clock.callLater(grace, abort)

        def done(result):
            if timer.active():
                timer.cancel()
            return result

        return gatherResults([c.closed for c in connections], consumeErrors=True).addBoth(done)


class QuietSite(server.Site):
    """
    A site for a tunnel's HTTP service: request bodies in memory and
    bounded (L{LimitedRequest}), and no "Starting factory" lines or access
    log unless a subclass writes one.
    """

    noisy = False
    requestFactory = LimitedRequest

    def getContentFile(self, length):
        return BytesIO()

    def startFactory(self):
        pass

    def stopFactory(self):
        pass

    def log(self, request):
        pass


def client_address(request):
    """
    The client of a request as C{host:port}.
    """
    return format_address(request.getClientAddress())
