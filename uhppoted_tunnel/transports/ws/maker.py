# -*- test-case-name: tests.unit.test_websocket,tests.loopback.test_websocket -*-
"""
The WebSocket transport: C{ws/server:ADDR[/PATH]}, C{ws/client:HOST:PORT[/PATH]}
and, over TLS, C{wss/server} and C{wss/client} (and the C{/event/} forms
of each), in and out, for sites that may reach nothing but HTTPS, through
a corporate proxy or behind a reverse proxy.

One tunnel frame travels as one binary WebSocket message, with the same
bytes as on TCP (L{uhppoted_tunnel.core.frames.encode}), so the ends, relays,
flow control, reconnecting and logging are the stream ones
(L{uhppoted_tunnel.link.ends}). What is WebSocket's is the
upgrade, done with autobahn's Twisted API in
L{uhppoted_tunnel.transports.ws.protocol} and
L{uhppoted_tunnel.transports.ws.endpoints} (imported only when a WebSocket
end is made, so other tunnels do not pay for autobahn at start): a
connection reaches the end only once its upgrade has succeeded, and a
client's attempt fails, with the server's answer, when it does not.

This module holds the maker and the plain logic: where the path is in a
connector string, the server's admission rules (L{UpgradePolicy}: the
path, C{Origin}, the bearer token, trusted proxies) and the reading of an
HTTP head, all testable without a reactor.
"""

import hmac
import ipaddress
import os
import re
import stat
from dataclasses import replace

from twisted.logger import Logger

from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.core.addresses import format_address, go_address, normalize_origin, parse_networks
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports.tls.secure import SecureClientEndpoint, SecureServerEndpoint, watch_certificates

#: The path a server answers on, and a client asks for, when the
#: connector string names none.
DEFAULT_PATH = "/tunnel"

#: Seconds between pings (C{--ws-ping}); a pong must come within as long.
DEFAULT_PING = 30.0

#: The longest HTTP head accepted in the upgrade (request or response).
MAX_HEAD = 8192

#: The most bytes read from a C{--token-file}.
MAX_TOKEN_FILE = 4096

#: The shortest token accepted: anything shorter is guessable.
MIN_TOKEN = 16

#: A path as RFC 3986 writes one (no query, no fragment).
_PATH = re.compile(r"/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*")

#: What may stand before the path: C{HOST:PORT}, C{[IPV6]:PORT}, or a
#: socket systemd passes.
_WITH_PATH = re.compile(r"(\[[^\]/]*\]:\d+|[^/\[\]]*:\d+|systemd(?::[^/:=]+)?)(/.*)?", re.DOTALL)

#: RFC 6750's token68 characters, for a bearer token.
_TOKEN = re.compile(r"[A-Za-z0-9._~+/-]+=*")

#: The reason phrase sent with each status the upgrade answers.
PHRASES = {
    400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    426: "Upgrade Required", 431: "Request Header Fields Too Large", 500: "Internal Server Error",
    503: "Service Unavailable", 505: "HTTP Version Not Supported",
}


def split_path(spec):
    """
    Split the path from a WebSocket connector's address.

    :param spec: the parsed L{uhppoted_tunnel.app.spec.ConnectorSpec}, its
        address C{HOST:PORT[/PATH]} (or C{systemd[:N|:NAME][/PATH]}, or a
        Twisted endpoint description, which takes the default path).
    :return: C{(spec, path)}: the spec with the address alone, and the path.
    :raise ValueError: naming the connector for a malformed path.
    """
    match = _WITH_PATH.fullmatch(spec.address)
    if match is None or match.group(2) is None:
        return spec, DEFAULT_PATH
    address, path = match.groups()
    if not _PATH.fullmatch(path):
        raise ValueError("invalid path in '{}' (expected /PATH, e.g. {}, with no query or spaces)".format(
            spec.text, DEFAULT_PATH))
    return replace(spec, address=address), path


def read_token(path, log=None):
    """
    Read a bearer token from C{--token-file}: one word of RFC 6750
    characters, at least L{MIN_TOKEN} long, surrounding whitespace ignored.

    :param path: the file.
    :param log: a L{Logger} to warn with when others may read the file.
    :return: the token.
    :raise ValueError: naming the file for a missing, unreadable or
        unusable one.
    """
    where = "--token-file '{}'".format(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TOKEN_FILE + 1)
            mode = os.fstat(f.fileno()).st_mode
    except OSError as e:
        raise ValueError("{}: {}".format(where, e.strerror or e)) from None
    if len(data) > MAX_TOKEN_FILE:
        raise ValueError("{}: over {} bytes (is it a token file?)".format(where, MAX_TOKEN_FILE))
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise ValueError("{}: not ASCII text".format(where)) from None
    if not _TOKEN.fullmatch(token):
        raise ValueError("{}: expected one word of letters, digits and -._~+/ (e.g. the output of "
                         "'openssl rand -hex 32')".format(where))
    if len(token) < MIN_TOKEN:
        raise ValueError("{}: the token is {} characters long, too short to be a secret (at least {}; e.g. "
                         "'openssl rand -hex 32')".format(where, len(token), MIN_TOKEN))
    if log is not None and mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warn("{where}: other users may read the token (chmod 600 it)", where=where)
    return token


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


def _local(host):
    """
    Whether a host dialled is this machine (loopback).
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def ws_settings(settings):
    """
    What the WebSocket protocols take from the tunnel's options.

    :return: a dict: C{max-message} (the longest message: C{--max-payload}
        plus the frame header), C{ping} (C{--ws-ping}, 0 for none) and
        C{handshake-timeout}.
    """
    from uhppoted_tunnel.core.frames import HEADER_SIZE

    return {
        "max-message": settings["max-payload"] + HEADER_SIZE,
        "ping": settings.get("ws-ping", DEFAULT_PING),
        "handshake-timeout": settings["handshake-timeout"],
    }


class WSConnectorMaker(StreamConnectorMaker):
    """
    Makes C{ws/} (or, with C{kind="wss"}, C{wss/}) server and client ends:
    the stream ends, over endpoints whose connections reach them once the
    WebSocket upgrade has succeeded (and, for C{wss/}, the TLS handshake
    before it, exactly as C{tls/} does it).
    """

    log = Logger()

    def __init__(self, kind="ws"):
        StreamConnectorMaker.__init__(self, kind)
        self.secure = kind == "wss"
        self.log_tag = kind.upper()

    def certificates(self, settings, side, reactor, endpoint):
        if not self.secure:
            return None, None
        return watch_certificates(settings, side, reactor, self.log_tag), endpoint.secure

    def _token(self, settings):
        path = settings.get("token-file")
        return None if not path else read_token(path, self.log)

    def serverEndpoint(self, reactor, spec, settings):
        from uhppoted_tunnel.transports.ws.endpoints import WebSocketServerEndpoint

        address, path = split_path(spec)
        endpoint = secure = StreamConnectorMaker.serverEndpoint(self, reactor, address, settings)
        if self.secure:
            endpoint = secure = SecureServerEndpoint(endpoint, lambda: tls.server_options(settings), reactor,
                                                     settings["handshake-timeout"], self.log_tag,
                                                     "is the peer a plain ws/ or tcp/ connector?")
        policy = UpgradePolicy(path, settings.get("ws-origins") or (), self._token(settings),
                               parse_networks(settings.get("trusted-proxies") or ()))
        return WebSocketServerEndpoint(endpoint, policy, ws_settings(settings), reactor, self.log_tag,
                                       secure if self.secure else None)

    def clientEndpoint(self, reactor, spec, settings):
        from uhppoted_tunnel.transports.ws.endpoints import WebSocketClientEndpoint

        address, path = split_path(spec)
        parsed = go_address(address.address)
        if parsed is None or not parsed[0] or not parsed[1]:
            raise ValueError("'{}': a WebSocket client needs HOST:PORT[/PATH] (the server's name goes in the "
                             "request{})".format(spec.text, " and its certificate must name HOST" if self.secure
                                                 else ""))
        host, port = parsed
        endpoint = secure = StreamConnectorMaker.clientEndpoint(self, reactor, address, settings)
        if self.secure:
            endpoint = secure = SecureClientEndpoint(endpoint, lambda: tls.client_options(settings, host), reactor,
                                                     settings["handshake-timeout"], self.log_tag,
                                                     "is the server a plain ws/ or tcp/ connector?")
        token = self._token(settings)
        if token is not None and not self.secure and not _local(host):
            self.log.warn("'{connector}' sends its --token-file token in the clear to a network address: anyone "
                          "on the path can read it; use wss/", connector=spec.text)
        return WebSocketClientEndpoint(endpoint, host, port, path, token, ws_settings(settings), reactor,
                                       self.log_tag, secure if self.secure else None)
