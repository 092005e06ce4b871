# -*- test-case-name: tests.unit.test_proxy -*-
"""
A proxy as the operator names it: L{Proxy} (host, port, credentials),
read from a URL by L{parse_proxy} (C{http://[USER[:PASS]@]HOST[:PORT][/]}),
or L{SSHProxy}, an SSH server that forwards (C{ssh://USER@HOST[:PORT]});
shown without its password by L{redacted}, and L{ProxyError}, what every
proxy endpoint fails an attempt with.

Only C{http://} and C{ssh://} proxies are supported (no TLS to the proxy,
no SOCKS).
"""

import base64
import dataclasses
import ipaddress
import re
from urllib.parse import unquote_to_bytes

from uhppoted_tunnel.core.addresses import host_port


#: curl's port for an C{http://} proxy that names none.
DEFAULT_PORT = 1080

#: The port of an C{ssh://} proxy that names none.
SSH_PORT = 22


#: What turns proxies off (C{--proxy none}, or an empty value).
NONE = ("", "none")


class ProxyError(Exception):
    """
    The proxy did not open the tunnel; C{str()} is one line saying why.
    """


@dataclasses.dataclass(frozen=True)
class Proxy:
    """
    An HTTP proxy. C{str()} is C{HOST:PORT}, never the credentials.

    :ivar host: a name or an IP address (no brackets).
    :ivar port: the port.
    :ivar credentials: C{USER:PASS} as bytes, percent-decoded, or C{None}.
    """

    host: str
    port: int
    credentials: bytes | None = dataclasses.field(default=None, repr=False)

    def __str__(self):
        return host_port(self.host, self.port)

    @property
    def authorization(self):
        """
        The C{Proxy-Authorization} value, or C{None} without credentials.
        """
        if self.credentials is None:
            return None
        return b"Basic " + base64.b64encode(self.credentials)


@dataclasses.dataclass(frozen=True)
class SSHProxy:
    """
    An SSH server that forwards connections (C{direct-tcpip}), as
    C{ssh -W} uses it. C{str()} is C{USER@HOST:PORT}.

    :ivar host: a name or an IP address (no brackets).
    :ivar port: the port.
    :ivar user: the user name to log in as.
    """

    host: str
    port: int
    user: str

    def __str__(self):
        return "{}@{}".format(self.user, host_port(self.host, self.port))

    @property
    def known_host(self):
        """
        How OpenSSH names the server in C{known_hosts}: C{HOST} on port 22,
        else C{[HOST]:PORT}.
        """
        return self.host if self.port == SSH_PORT else "[{}]:{}".format(self.host, self.port)


_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_HOST_PORT = re.compile(r"(\[[^\]]*\]|[^:\[\]]*)(?::([^:]*))?")
_HOSTNAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*\.?")


def _split_url(text):
    """
    :return: C{(scheme or None, userinfo or None, rest)}: the credentials
        end at the last C{@}, so that a password with C{@}, C{/} or C{:}
        not percent-encoded is still taken whole (and hidden whole).
    """
    match = _SCHEME.match(text)
    scheme, rest = (match.group(1), text[match.end():]) if match else (None, text)
    if "@" in rest:
        userinfo, rest = rest.rsplit("@", 1)
        return scheme, userinfo, rest
    return scheme, None, rest


def redacted(text):
    """
    A proxy URL for a message: its password, if any, replaced by C{***}.
    """
    scheme, userinfo, rest = _split_url(text)
    if userinfo is None or ":" not in userinfo:
        return text
    return (scheme + "://" if scheme else "") + userinfo.split(":", 1)[0] + ":***@" + rest


def parse_proxy(text):
    """
    Read a proxy URL: C{http://[USER[:PASS]@]HOST[:PORT][/]}. Without a
    scheme C{http://} is taken, and without a port 1080, as curl does;
    C{USER} and C{PASS} are percent-decoded. Or C{ssh://USER@HOST[:PORT]}
    (port 22 if none): an SSH server, logged in to with a key, never a
    password.

    :param text: the URL, or C{none} (or an empty text) for no proxy.
    :return: a L{Proxy} or an L{SSHProxy}, or C{None} for no proxy.
    :raise ValueError: one line saying what is wrong, the password hidden.
    """
    text = text.strip()
    if text.lower() in NONE:
        return None
    shown = repr(redacted(text))
    scheme, userinfo, rest = _split_url(text)
    scheme = (scheme or "http").lower()
    if scheme == "https":
        raise ValueError("{}: HTTPS proxies (TLS to the proxy) are not supported: give the proxy's "
                         "plain http:// address (what goes through it is still the end's own TLS)".format(shown))
    if scheme.startswith("socks"):
        raise ValueError("{}: SOCKS proxies are not supported: give an HTTP proxy (http://HOST:PORT) "
                         "that allows CONNECT".format(shown))
    if scheme not in ("http", "ssh"):
        raise ValueError("{}: unsupported scheme '{}' (expected http:// or ssh://)".format(shown, scheme))
    if scheme == "ssh":
        return _ssh_proxy(shown, userinfo, rest)
    host, port = _address(shown, rest, DEFAULT_PORT, "http://[USER:PASS@]HOST[:PORT]")
    credentials = None
    if userinfo is not None:
        user, _, password = userinfo.partition(":")
        user, password = unquote_to_bytes(user), unquote_to_bytes(password)
        if not user:
            raise ValueError("{}: no user name before '@'".format(shown))
        if b":" in user:
            raise ValueError("{}: a user name cannot contain ':' (Basic authentication)".format(shown))
        if any(c < 0x20 or c == 0x7F for c in user + password):
            raise ValueError("{}: control characters in the user name or password".format(shown))
        credentials = user + b":" + password
    return Proxy(host, port, credentials)


def _ssh_proxy(shown, userinfo, rest):
    """
    The L{SSHProxy} of an C{ssh://} URL, once its scheme is read.
    """
    expected = "ssh://USER@HOST[:PORT]"
    if userinfo is None or not userinfo:
        raise ValueError("{}: no user name (expected {})".format(shown, expected))
    if ":" in userinfo:
        raise ValueError("{}: an ssh:// proxy takes no password: log in with a key (--ssh-identity, "
                         "or ssh-agent)".format(shown))
    user = unquote_to_bytes(userinfo)
    if any(c <= 0x20 or c == 0x7F for c in user):
        raise ValueError("{}: blanks or control characters in the user name".format(shown))
    try:
        user = user.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("{}: the user name is not UTF-8".format(shown)) from None
    host, port = _address(shown, rest, SSH_PORT, expected)
    return SSHProxy(host, port, user)


def _address(shown, rest, default_port, expected):
    """
    :return: C{(host, port)} of the part of a proxy URL after its
        credentials.
    :raise ValueError: naming what is wrong.
    """
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(c in rest for c in "/?#"):
        raise ValueError("{}: a proxy URL has no path, query or fragment (expected "
                         "{})".format(shown, expected))
    match = _HOST_PORT.fullmatch(rest)
    if match is None:
        raise ValueError("{}: invalid address '{}' (expected HOST:PORT, [IPv6]:PORT)".format(shown, rest))
    host, port = match.groups()
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("{}: invalid IPv6 address '{}'".format(shown, host)) from None
    elif not host:
        raise ValueError("{}: no host (expected {})".format(shown, expected))
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError("{}: invalid host '{}'".format(shown, host))
    if port is None or port == "":
        return host, default_port
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError("{}: invalid port '{}' (expected 1..65535)".format(shown, port))
    return host, int(port)


def check_proxy(value):
    """
    The TOML and C{--proxy} converter: the text, once it parses.

    :raise ValueError: for a value L{parse_proxy} refuses, or not a string.
    """
    if type(value) is not str:
        raise ValueError("expected a string such as \"http://proxy.example.com:3128\", "
                         "\"ssh://tunnel@jump.example.com\" or \"none\"")
    parse_proxy(value)
    return value
