# -*- test-case-name: tests.unit.test_proxy,tests.loopback.test_proxy -*-
"""
Client ends through an HTTP proxy: C{CONNECT HOST:PORT} first, then the
end's own bytes (frames, or a TLS handshake and frames) through the
tunnel the proxy opens.

Which proxy, if any, follows curl: C{--proxy URL} (TOML C{proxy}), or
else the environment (C{https_proxy}/C{HTTPS_PROXY} for secure ends,
C{http_proxy} in lower case only for plain ones, then
C{all_proxy}/C{ALL_PROXY}); C{no_proxy}/C{NO_PROXY} names the hosts
dialled directly, whichever way the proxy was given; C{--proxy none}
turns proxies off. Only C{http://} proxies are supported (no TLS to the
proxy, no SOCKS).

L{ProxyEndpoint} is an C{IStreamClientEndpoint}: it dials the proxy with
the endpoint it is given, sends C{CONNECT}, reads the answer's head
(at most L{MAX_ANSWER} bytes, within the handshake timeout), and only on
a 2xx builds the wrapped factory's protocol and hands it the connection,
with whatever followed the head. Anything else fails the attempt with a
L{ProxyError} whose message is the one line the client end logs.

Twisted's web client has no CONNECT support (its C{ProxyAgent} sends
absolute URLs to the proxy, for C{http:} only) and no endpoint does it,
so the exchange is written here: one request, and the head of one answer.
"""

import base64
import dataclasses
import ipaddress
import re
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import NoProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel import __version__
from uhppoted_tunnel.core.addresses import go_address
from uhppoted_tunnel.transports import endpoints
from uhppoted_tunnel.transports.tls.certs import DEFAULT_HANDSHAKE_TIMEOUT

#: curl's port for an C{http://} proxy that names none.
DEFAULT_PORT = 1080

#: The longest answer head read from a proxy (status line and headers,
#: interim 1xx answers included); a longer one fails the attempt.
MAX_ANSWER = 16 * 1024

#: What turns proxies off (C{--proxy none}, or an empty value).
NONE = ("", "none")

log = Logger()


class ProxyError(Exception):
    """
    The proxy did not open the tunnel; C{str()} is one line saying why.
    """


class ProxyRefused(ProxyError):
    """
    The proxy answered CONNECT with a status other than 2xx.

    :ivar code: the status code.
    """

    def __init__(self, message, code):
        ProxyError.__init__(self, message)
        self.code = code


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
        return _host_port(self.host, self.port)

    @property
    def authorization(self):
        """
        The C{Proxy-Authorization} value, or C{None} without credentials.
        """
        if self.credentials is None:
            return None
        return b"Basic " + base64.b64encode(self.credentials)


def _host_port(host, port):
    return "[{}]:{}".format(host, port) if ":" in host else "{}:{}".format(host, port)


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
    C{USER} and C{PASS} are percent-decoded.

    :param text: the URL, or C{none} (or an empty text) for no proxy.
    :return: a L{Proxy}, or C{None} for no proxy.
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
    if scheme != "http":
        raise ValueError("{}: unsupported scheme '{}' (expected http://)".format(shown, scheme))
    if rest.endswith("/"):
        rest = rest[:-1]
    if any(c in rest for c in "/?#"):
        raise ValueError("{}: a proxy URL has no path, query or fragment (expected "
                         "http://[USER:PASS@]HOST[:PORT])".format(shown))
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
        raise ValueError("{}: no host (expected http://[USER:PASS@]HOST[:PORT])".format(shown))
    elif not _HOSTNAME.fullmatch(host):
        raise ValueError("{}: invalid host '{}'".format(shown, host))
    if port is None or port == "":
        port = DEFAULT_PORT
    elif not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError("{}: invalid port '{}' (expected 1..65535)".format(shown, port))
    else:
        port = int(port)
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


def check_proxy(value):
    """
    The TOML and C{--proxy} converter: the text, once it parses.

    :raise ValueError: for a value L{parse_proxy} refuses, or not a string.
    """
    if type(value) is not str:
        raise ValueError("expected a string such as \"http://proxy.example.com:3128\" or \"none\"")
    parse_proxy(value)
    return value


def _split_host(host):
    """
    :return: C{(kind, value)}: C{("ip", ip_address)} or C{("name", text)}.
    """
    try:
        return "ip", ipaddress.ip_address(host.split("%")[0].strip("[]"))
    except ValueError:
        return "name", host.rstrip(".").lower()


def no_proxy_matches(host, no_proxy):
    """
    Whether C{no_proxy} says to dial C{host} directly, as curl reads it: a
    list separated by commas (or blanks); C{*} alone matches every host; a
    name matches itself and the names under it (C{example.com} and
    C{.example.com} both match C{example.com} and C{www.example.com}, not
    C{notexample.com}), without regard to case or a final dot; an IP
    address matches itself, and an address with C{/BITS} the range (CIDR);
    names match names and addresses addresses (nothing is resolved).

    :param host: the host dialled (a name, or an IP address).
    :param no_proxy: the list, or C{None}.
    """
    if not no_proxy:
        return False
    if no_proxy.strip() == "*":
        return True
    kind, value = _split_host(host)
    for token in re.split(r"[\s,]+", no_proxy):
        if not token:
            continue
        if kind == "name":
            pattern = token.rstrip(".").lower()
            if pattern.startswith("."):
                pattern = pattern[1:]
            if pattern and (value == pattern or value.endswith("." + pattern)):
                return True
            continue
        address, slash, bits = token.strip("[]").partition("/")
        try:
            network = ipaddress.ip_network(address.split("%")[0] + (slash + bits if slash else ""), strict=False)
        except ValueError:
            continue
        if network.version == value.version and value in network:
            return True
    return False


#: The variables a proxy is read from, in curl's order: the scheme's own
#: (https_proxy for secure ends, http_proxy, lower case only, for plain
#: ones: CGI sets HTTP_PROXY from a request's "Proxy:" header), then
#: all_proxy.
SECURE_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
PLAIN_VARIABLES = ("http_proxy", "all_proxy", "ALL_PROXY")
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")


def _first(environ, names):
    """
    :return: C{(name, value)} of the first variable set to a non-empty
        value (curl takes an empty one as unset), or C{(None, None)}.
    """
    for name in names:
        value = environ.get(name)
        if value:
            return name, value
    return None, None


@dataclasses.dataclass(frozen=True)
class Choice:
    """
    What a client end dials through, and why.

    :ivar proxy: the L{Proxy}, or C{None} to dial directly.
    :ivar why: where the proxy (or its absence) came from, for the log
        line; C{None} when nothing asked for a proxy.
    """

    proxy: Proxy | None
    why: str | None = None


def choose(host, setting, source, environ, secure):
    """
    The proxy for a client end that dials C{host}, as curl chooses it.

    :param host: the host dialled.
    :param setting: C{--proxy} (or TOML C{proxy}) as given, or C{None}.
    :param source: how a message names where C{setting} came from.
    :param environ: the environment.
    :param secure: whether the end speaks TLS (C{https_proxy}) or not
        (C{http_proxy}).
    :raise ValueError: for an unusable proxy URL, naming where it came from.
    """
    if setting is not None and setting.strip().lower() in NONE:
        return Choice(None, "{} none".format(source) if setting.strip() else "{} is empty".format(source))
    name, no_proxy = _first(environ, NO_PROXY_VARIABLES)
    if setting is not None:
        where, text = source, setting
    else:
        where, text = _first(environ, SECURE_VARIABLES if secure else PLAIN_VARIABLES)
        if where is None:
            return Choice(None)
    if no_proxy_matches(host, no_proxy):
        return Choice(None, "{} matches {} (not {})".format(name, host, where))
    try:
        proxy = parse_proxy(text)
    except ValueError as e:
        hint = "" if setting is not None else " (--proxy none ignores the environment)"
        raise ValueError("{}: {}{}".format(where, e, hint)) from None
    if proxy is None:
        return Choice(None, where)
    return Choice(proxy, where)


def _safe(data, limit=120):
    """
    Bytes from the proxy, made fit for a log line.
    """
    text = data.decode("latin-1")
    text = "".join(c if " " <= c <= "~" else "?" for c in text)
    return text if len(text) <= limit else text[:limit - 3] + "..."


_STATUS = re.compile(rb"HTTP/\d\.\d[ \t]+(\d{3})(?:[ \t]+([^\r\n]*))?")


class _Connecting(Protocol):
    """
    Sends CONNECT on the connection to the proxy and reads the answer's
    head; on a 2xx, builds the wrapped factory's protocol and steps aside
    (what arrives goes straight to it).
    """

    wrapped = None
    timer = None
    transport = None
    _stopped = False

    def __init__(self, endpoint, factory, ready):
        self.endpoint = endpoint
        self.factory = factory
        self.ready = ready
        self.buffer = b""
        #: the bytes of the heads read so far (1xx answers)
        self.consumed = 0

    def connectionMade(self):
        if self.ready.called:
            # cancelled while the dial completed
            self.transport.abortConnection()
            return
        self.timer = self.endpoint.clock.callLater(self.endpoint.timeout, self._timedOut)
        self.transport.write(self.endpoint.request())

    def dataReceived(self, data):
        self.buffer += data
        while not self.ready.called:
            head, rest = self._head()
            if head is None:
                return
            self.buffer = rest
            match = _STATUS.match(head)
            if match is None:
                line = head.split(b"\n", 1)[0].rstrip(b"\r")
                self._fail(ProxyError("proxy {} gave a malformed answer to {}: {!r}".format(
                    self.endpoint.proxy, self.endpoint.what, _safe(line))))
                return
            code = int(match.group(1))
            if 100 <= code < 200:
                # an interim answer: the real one follows
                continue
            if 200 <= code < 300:
                self._switch()
            else:
                reason = _safe(match.group(2) or b"").strip()
                self._fail(ProxyRefused("proxy {} refused {}: {}{}".format(
                    self.endpoint.proxy, self.endpoint.what, code, " " + reason if reason else ""), code))
            return

    def _head(self):
        """
        :return: C{(head, rest)} once the buffer holds a whole head (its
            lines may end in CRLF or LF), else C{(None, None)}, failing
            the attempt when the bytes cannot be the head of an HTTP
            answer or when the heads read so far pass L{MAX_ANSWER}.
        """
        buffer = self.buffer
        prefix = buffer[:5]
        if prefix != b"HTTP/"[:len(prefix)]:
            self._fail(ProxyError("proxy {} gave a malformed answer to {}: {!r} (is it an HTTP proxy?)".format(
                self.endpoint.proxy, self.endpoint.what, _safe(buffer.split(b"\n", 1)[0][:60]))))
            return None, None
        limit = self.endpoint.max_answer - self.consumed
        ends = [(at, len(mark)) for mark in (b"\n\n", b"\n\r\n") for at in [buffer.find(mark, 0, limit)] if at >= 0]
        if ends:
            at, size = min(ends)
            self.consumed += at + size
            return buffer[:at].rstrip(b"\r"), buffer[at + size:]
        if len(buffer) >= limit:
            self._fail(ProxyError("proxy {} gave an answer to {} with a head over {} bytes".format(
                self.endpoint.proxy, self.endpoint.what, self.endpoint.max_answer)))
        return None, None

    def _switch(self):
        self._cancelTimer()
        rest, self.buffer = self.buffer, b""
        protocol = self.factory.buildProtocol(self.transport.getPeer())
        if protocol is None:
            self._fail(NoProtocol())
            return
        self.wrapped = protocol
        # from now on the connection delivers to the protocol itself
        self.dataReceived = protocol.dataReceived
        self.endpoint.log.info("proxy {proxy} opened a tunnel to {target}", proxy=str(self.endpoint.proxy),
                               target=self.endpoint.target)
        protocol.makeConnection(self.transport)
        self.ready.callback(protocol)
        if rest:
            protocol.dataReceived(rest)

    def _timedOut(self):
        self.timer = None
        self._fail(ProxyError("proxy {} did not answer {} within {:g}s (--handshake-timeout)".format(
            self.endpoint.proxy, self.endpoint.what, self.endpoint.timeout)))

    def _cancelTimer(self):
        if self.timer is not None:
            if self.timer.active():
                self.timer.cancel()
            self.timer = None

    def _fail(self, error):
        self._cancelTimer()
        self.buffer = b""
        if not self.ready.called:
            self.ready.errback(Failure(error))
        self.transport.abortConnection()

    def stopFactory(self):
        """
        Stop the wrapped factory, once: the attempt failed, or its
        connection has closed.
        """
        if not self._stopped:
            self._stopped = True
            self.factory.doStop()

    def connectionLost(self, reason):
        self._cancelTimer()
        if self.wrapped is not None:
            self.wrapped.connectionLost(reason)
        elif not self.ready.called:
            self.ready.errback(Failure(ProxyError("proxy {} closed the connection before answering {}".format(
                self.endpoint.proxy, self.endpoint.what))))
        self.stopFactory()


@implementer(IStreamClientEndpoint)
class ProxyEndpoint:
    """
    Reaches C{HOST:PORT} through an HTTP proxy: C{connect} fires with the
    wrapped factory's protocol once the proxy has answered CONNECT with a
    2xx, or fails with a L{ProxyError} (a refusal, a proxy that closes,
    a malformed or oversized answer, no answer in time) or with the reason
    the proxy could not be reached. Cancelling it drops the connection to
    the proxy.
    """

    log = Logger()

    def __init__(self, dial, proxy, host, port, clock, timeout, log_tag="TCP", max_answer=MAX_ANSWER):
        """
        :param dial: the endpoint that reaches the proxy.
        :param proxy: the L{Proxy}.
        :param host: the host to reach through it (a name or an IP address).
        :param port: the port to reach.
        :param clock: an C{IReactorTime}.
        :param timeout: seconds the proxy may take to answer, once reached.
        :param log_tag: the tag of the log lines.
        :param max_answer: the longest answer head read.
        """
        self.dial = dial
        self.proxy = proxy
        self.host = host
        self.port = port
        self.clock = clock
        self.timeout = timeout
        self.log_tag = log_tag
        self.max_answer = max_answer
        self.target = _host_port(host, port)
        self.what = "CONNECT " + self.target

    def request(self):
        """
        The CONNECT request's bytes.
        """
        target = self.target.encode("ascii")
        lines = [b"CONNECT " + target + b" HTTP/1.1", b"Host: " + target,
                 b"User-Agent: uhppoted-tunnel/" + __version__.encode("ascii")]
        authorization = self.proxy.authorization
        if authorization is not None:
            lines.append(b"Proxy-Authorization: " + authorization)
        return b"\r\n".join(lines) + b"\r\n\r\n"

    def connect(self, factory):
        def cancel(d):
            d.errback(Failure(CancelledError()))
            if protocol.transport is not None:
                protocol.transport.abortConnection()
            else:
                dialling.cancel()

        ready = Deferred(cancel)
        protocol = _Connecting(self, factory, ready)
        # as a direct endpoint does: the factory is started for the attempt
        # and stopped once it fails or its connection has closed
        factory.doStart()
        dialling = connectProtocol(self.dial, protocol)

        def unreachable(failure):
            protocol.stopFactory()
            if not ready.called:
                ready.errback(Failure(ProxyError("could not reach proxy {}: {}".format(
                    self.proxy, failure.getErrorMessage()))))

        dialling.addErrback(unreachable)
        return ready

    def __repr__(self):
        return "<ProxyEndpoint {} via {}>".format(self.target, self.proxy)


def choose_for(spec, settings, secure):
    """
    The proxy for a client end's connector, from its settings.

    :param spec: the connector spec.
    :param settings: the tunnel's options (C{proxy}, with C{sources} naming
        where it came from and the environment as C{environ}); a plain
        dict has no environment.
    :param secure: whether the end speaks TLS (C{https_proxy}).
    :return: C{(host, port, choice)}, or C{None} for an address that is not
        a Go C{HOST:PORT} (a Twisted endpoint description is used as
        given).
    :raise ValueError: for an unusable proxy URL.
    """
    address = go_address(spec.address)
    if address is None or not address[0]:
        return None
    host, port = address
    sources = getattr(settings, "sources", None) or {}
    environ = getattr(settings, "environ", None) or {}
    return host, port, choose(host, settings.get("proxy"), sources.get("proxy", "--proxy"), environ, secure)


def describe(spec, settings, secure):
    """
    What L{client_endpoint} will say about a client end's proxy, for
    C{uhppoted-tunnel check}, or C{None} when there is nothing to say.
    """
    chosen = choose_for(spec, settings, secure)
    if chosen is None or chosen[2].why is None:
        return None
    choice = chosen[2]
    if choice.proxy is None:
        return "{} dials {} directly ({})".format(spec.kind, spec.address, choice.why)
    return "{} dials {} through HTTP proxy {} ({})".format(spec.kind, spec.address, choice.proxy, choice.why)


def proxy_for(spec, settings, secure=False, log_tag="TCP"):
    """
    The proxy a client end dials through (L{choose}) when its address is
    a Go C{HOST:PORT}, and says in the log which and why: for the ends
    that dial through L{client_endpoint}, and for a transport that speaks
    to proxies itself (C{grpc/}).

    :param settings: the tunnel's options (C{proxy}, and the environment
        as their C{environ}; none for a plain dict).
    :param secure: whether the end speaks TLS (C{https_proxy}).
    :return: C{(proxy, host, port)}: the L{Proxy}, or C{None} to dial
        directly, and the host and port dialled (C{None} for a Twisted
        endpoint description).
    :raise ValueError: for an unusable address or proxy URL.
    """
    chosen = choose_for(spec, settings, secure)
    if chosen is None:
        return None, None, None
    host, port, choice = chosen
    if choice.proxy is None:
        if choice.why is not None:
            log.info("dialling {address} directly ({why})", address=spec.address, why=choice.why, log_tag=log_tag)
        return None, host, port
    if any(c <= " " or c == "\x7f" for c in host):
        raise ValueError("invalid host in '{}'".format(spec.text))
    log.info("dialling {address} through HTTP proxy {proxy} ({why})", address=spec.address, proxy=str(choice.proxy),
             why=choice.why, log_tag=log_tag)
    return choice.proxy, host, port


def client_endpoint(reactor, spec, settings, secure=False, log_tag="TCP"):
    """
    The endpoint a stream client end dials: through the proxy chosen for
    its host (L{proxy_for}), else as L{endpoints.client_endpoint} makes it
    (a Twisted endpoint description is used as given).

    :param settings: the tunnel's options (C{proxy}, C{handshake-timeout},
        and the environment as their C{environ}; none for a plain dict).
    :param secure: whether the end speaks TLS (C{https_proxy}).
    :raise ValueError: for an unusable address or proxy URL.
    """
    direct = endpoints.client_endpoint(reactor, spec)
    proxy, host, port = proxy_for(spec, settings, secure, log_tag)
    if proxy is None:
        return direct
    dial = endpoints.client_endpoint(reactor, dataclasses.replace(spec, address=str(proxy)))
    return ProxyEndpoint(dial, proxy, host, port, reactor, settings.get("handshake-timeout", DEFAULT_HANDSHAKE_TIMEOUT),
                         log_tag)
