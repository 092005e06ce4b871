# -*- test-case-name: tests.unit.test_console,tests.loopback.test_console -*-
"""
The controller console: a page that sends UHPPOTE commands through an
HTTP end's own JSON API, as the Go tunnel's C{examples/html} does.

    /console/                 the page (HTML, C{assets/head.html} first)
    /console/console.css      its style sheet (C{assets/base.css} first)
    /console/console.js       its script (the form, the requests, the replies)
    /console/uhppote.js       the protocol: encoding requests, decoding replies
    /console/logo.svg         the project's logo (also favicon.svg)

The page posts to C{../udp/send} and C{../udp/broadcast}. Like the status
page, everything is a static file shipped in the package (C{assets/}),
with no inline script or style, served with the HTTP ends'
L{web.SECURITY_HEADERS} (Content-Security-Policy included).
"""

from twisted.web.resource import Resource

from uhppoted_tunnel.observe.status import StaticAsset, asset
from uhppoted_tunnel.observe.web import add_security_headers

#: The path segment the console is served under.
PREFIX = b"console"

#: The files of the console, by the path they are served at under
#: C{/console/}: (file in C{assets/}, content type).
ASSETS = {
    b"": ("console.html", b"text/html; charset=utf-8"),
    b"console.css": ("console.css", b"text/css; charset=utf-8"),
    b"console.js": ("console.js", b"text/javascript; charset=utf-8"),
    b"uhppote.js": ("uhppote.js", b"text/javascript; charset=utf-8"),
    b"logo.svg": ("logo.svg", b"image/svg+xml"),
    b"favicon.svg": ("logo.svg", b"image/svg+xml"),
}


class _NotFound(Resource):
    isLeaf = True

    def render(self, request):
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"not found\n"


class ConsolePage(Resource):
    """
    The console's resource tree, to serve as the child L{PREFIX} of a
    site's root; reached without its trailing slash, it redirects to it.

    :param secure: answers carry HSTS (an C{https/} end).
    """

    def __init__(self, secure=False):
        Resource.__init__(self)
        self.secure = secure
        for path, (name, content_type) in ASSETS.items():
            self.putChild(path, StaticAsset(asset(name), content_type))

    def getChildWithDefault(self, path, request):
        request.responseHeaders.removeHeader(b"Server")
        add_security_headers(request, self.secure)
        return Resource.getChildWithDefault(self, path, request)

    def getChild(self, path, request):
        return _NotFound()

    def render(self, request):
        add_security_headers(request, self.secure)
        request.setResponseCode(301)
        request.setHeader(b"Location", PREFIX + b"/")
        return b""
