# -*- test-case-name: tests.unit.test_proxy,tests.loopback.test_proxy -*-
"""
The HTTP proxy: L{ProxyEndpoint} reaches C{HOST:PORT} with
C{CONNECT HOST:PORT}, then carries the end's own bytes (frames, or a TLS
handshake and frames) through the tunnel the proxy opens.

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

import re

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import connectProtocol
from twisted.internet.error import NoProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel import __version__
from uhppoted_tunnel.core.addresses import host_port
from uhppoted_tunnel.transports.proxy.urls import ProxyError


#: The longest answer head read from a proxy (status line and headers,
#: interim 1xx answers included); a longer one fails the attempt.
MAX_ANSWER = 16 * 1024


class ProxyRefused(ProxyError):
    """
    The proxy answered CONNECT with a status other than 2xx.

    :ivar code: the status code.
    """

    def __init__(self, message, code):
        ProxyError.__init__(self, message)
        self.code = code


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
        self.target = host_port(host, port)
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
