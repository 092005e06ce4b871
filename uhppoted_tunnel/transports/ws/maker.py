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

This module holds the maker and where the path is in a connector string;
the server's admission rules and the reading of an HTTP head are
L{uhppoted_tunnel.transports.ws.upgrade}.
"""

import ipaddress
import re
import stat
from dataclasses import replace

from twisted.logger import Logger

from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.core.addresses import go_address, parse_networks
from uhppoted_tunnel.core.bounded import read_bounded
from uhppoted_tunnel.core.frames import HEADER_SIZE
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports.tls.secure import SecureClientEndpoint, SecureServerEndpoint, watch_certificates
from uhppoted_tunnel.transports.ws.connection import WSConnection
from uhppoted_tunnel.transports.ws.options import DEFAULT_PING
from uhppoted_tunnel.transports.ws.upgrade import DEFAULT_PATH, UpgradePolicy

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


def split_path(spec):
    """
    Split the path from a WebSocket connector's address.

    :param spec: the parsed L{uhppoted_tunnel.core.spec.ConnectorSpec}, its
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
        data, mode = read_bounded(path, where, MAX_TOKEN_FILE, "a token file")
    except OSError as e:
        raise ValueError("{}: {}".format(where, e.strerror or e)) from None
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
    protocol = WSConnection

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
