# -*- test-case-name: tests.unit.test_websocket -*-
"""
What a WebSocket server end admits, and the reading of an HTTP head, as
plain logic testable without a reactor: the path, C{Origin}, the bearer
token and trusted proxies (L{UpgradePolicy}), the request and status
lines (L{parse_request}, L{parse_status}) and how a refusal is answered
(L{Refusal}, L{PHRASES}).
"""

import hmac
import ipaddress

from uhppoted_tunnel.core.addresses import format_address, normalize_origin

#: The path a server answers on, and a client asks for, when the
#: connector string names none.
DEFAULT_PATH = "/tunnel"

#: The longest HTTP head accepted in the upgrade (request or response).
MAX_HEAD = 8192

#: The reason phrase sent with each status the upgrade answers.
PHRASES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    426: "Upgrade Required", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}



def shown(text, limit=80):
    """
    Text from a peer, fit for one log line: non-printable characters
    escaped, cut past C{limit} characters.
    """
    text = "".join(c if " " <= c <= "~" else "\\x{:02x}".format(ord(c) & 0xFF) for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


class Request:
    """
    An HTTP request head.

    :ivar method: e.g. C{GET}.
    :ivar target: the request target, e.g. C{/tunnel?x=1}.
    :ivar version: e.g. C{HTTP/1.1}.
    :ivar headers: lower-case name to the list of values, in order.
    """

    def __init__(self, method, target, version, headers):
        self.method = method
        self.target = target
        self.version = version
        self.headers = headers

    @property
    def path(self):
        """
        The target's path, without the query: an origin-form target's
        (C{/tunnel?x=1}) or an absolute-form one's
        (C{http://host/tunnel}); C{None} for any other form.
        """
        target = self.target
        if not target.startswith("/"):
            scheme, sep, rest = target.partition("://")
            if not sep or not scheme.isalpha():
                return None
            target = "/" + rest.partition("/")[2]
        return target.partition("?")[0].partition("#")[0]

    def header(self, name):
        """
        :return: the one value of a header, C{None} when absent.
        :raise ValueError: when it is given more than once.
        """
        values = self.headers.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise ValueError("{} given {} times".format(name, len(values)))
        return values[0]

    def tokens(self, name):
        """
        :return: the lower-case comma-separated tokens of a header (all
            its lines), e.g. C{["keep-alive", "upgrade"]}.
        """
        return [part.strip().lower() for value in self.headers.get(name, ()) for part in value.split(",")]


def _lines(head):
    text = head.decode("latin-1")
    if "\n" in text.replace("\r\n", ""):
        raise ValueError("a bare line feed")
    return text.split("\r\n")


def parse_request(head):
    """
    Read an HTTP/1.1 request head.

    :param head: the bytes before the blank line.
    :return: a L{Request}.
    :raise ValueError: saying what is malformed.
    """
    lines = _lines(head)
    parts = lines[0].split(" ")
    if len(parts) != 3 or not all(parts):
        raise ValueError("request line {!r}".format(shown(lines[0], 40)))
    method, target, version = parts
    return Request(method, target, version, _headers(lines[1:]))


def parse_status(head):
    """
    Read an HTTP response head's status.

    :param head: the bytes before the blank line.
    :return: C{(version, code, phrase, headers)}.
    :raise ValueError: saying what is malformed.
    """
    lines = _lines(head)
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit() or len(parts[1]) != 3:
        raise ValueError("status line {!r}".format(shown(lines[0], 40)))
    return parts[0], int(parts[1]), parts[2] if len(parts) > 2 else "", _headers(lines[1:])


def _headers(lines):
    headers = {}
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip() or " " in name or "\t" in name:
            raise ValueError("header line {!r}".format(shown(line, 40)))
        headers.setdefault(name.lower(), []).append(value.strip(" \t"))
    return headers


class Refusal(Exception):
    """
    The server refuses an upgrade: an HTTP status and a one-line reason
    for the log.
    """

    def __init__(self, code, reason):
        Exception.__init__(self, code, reason)
        self.code = code
        self.reason = reason

    def __str__(self):
        return "{} {}: {}".format(self.code, PHRASES.get(self.code, ""), self.reason)


class ForwardedAddress:
    """
    The peer behind a trusted reverse proxy, as the proxy's
    C{X-Forwarded-For} names it, for the log: C{HOST (via PROXY)}.

    :ivar host: the forwarded address.
    :ivar proxy: the proxy's own address, as text.
    """

    port = None

    def __init__(self, host, proxy):
        self.host = host
        self.proxy = proxy

    def __str__(self):
        host = "[{}]".format(self.host) if ":" in self.host else self.host
        return "{} (via {})".format(host, self.proxy)


def forwarded_host(values):
    """
    The address in the last C{X-Forwarded-For} entry (the one the nearest
    proxy added): an IP address, with a port or not.

    :param values: the header's values.
    :return: the address as text, or C{None} when there is none or it is
        not an address.
    """
    if not values:
        return None
    entry = values[-1].split(",")[-1].strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        return str(ipaddress.ip_address(entry))
    except ValueError:
        return None


class UpgradePolicy:
    """
    What a WebSocket server end admits, decided on the request head alone:

    1. only C{GET} (405) on the end's path (404);
    2. only an upgrade to WebSocket: a plain request is answered 426;
    3. a request bearing an C{Origin} (what a browser sends) only from an
       allowed origin (C{--ws-origin}, none by default): 403;
    4. with C{--token-file}, only with C{Authorization: Bearer TOKEN},
       compared in constant time: 401.

    :ivar path: the path served.
    :ivar origins: the allowed origins, normalized.
    :ivar token: the bearer token required, or C{None}.
    :ivar trusted: the networks of trusted reverse proxies.
    """

    def __init__(self, path=DEFAULT_PATH, origins=(), token=None, trusted=()):
        self.path = path
        self.origins = frozenset(normalize_origin(origin) for origin in origins)
        self.token = None if token is None else token.encode("ascii")
        self.trusted = tuple(trusted)

    def peer(self, address, request):
        """
        The peer to name in the log.

        :param address: the connection's peer address (C{IAddress}).
        :param request: the L{Request}.
        :return: a L{ForwardedAddress} when the connection comes from a
            trusted proxy (C{--trusted-proxy}) that names the client in
            C{X-Forwarded-For}, else C{address}.
        """
        host = getattr(address, "host", None)
        if not self.trusted or host is None:
            return address
        try:
            ip = ipaddress.ip_address(host.split("%")[0])
        except ValueError:
            return address
        if not any(ip in network for network in self.trusted):
            return address
        forwarded = forwarded_host(request.headers.get("x-forwarded-for"))
        if forwarded is None:
            return address
        return ForwardedAddress(forwarded, format_address(address))

    def check(self, request):
        """
        :param request: the L{Request}.
        :raise Refusal: when the upgrade is refused.
        """
        if request.method != "GET":
            raise Refusal(405, "method {} (only GET upgrades)".format(shown(request.method, 20)))
        if request.version != "HTTP/1.1":
            raise Refusal(505 if request.version.startswith("HTTP/") else 400,
                          "version {} (only HTTP/1.1 upgrades)".format(shown(request.version, 20)))
        if request.path != self.path:
            raise Refusal(404, "GET {}: the tunnel is at {}".format(shown(request.target, 60), self.path))
        if "websocket" not in request.tokens("upgrade"):
            raise Refusal(426, "GET {} without 'Upgrade: websocket' (a plain HTTP request)".format(self.path))
        try:
            origin = request.header("origin")
            authorization = request.header("authorization")
        except ValueError as e:
            raise Refusal(400, str(e)) from None
        if origin is not None:
            try:
                allowed = normalize_origin(origin) in self.origins
            except ValueError:
                allowed = False
            if not allowed:
                raise Refusal(403, "Origin {} is not allowed (--ws-origin)".format(shown(origin, 60)))
        if self.token is not None:
            if authorization is None:
                raise Refusal(401, "no bearer token (--token-file)")
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("latin-1"), self.token):
                raise Refusal(401, "wrong bearer token (--token-file)")
