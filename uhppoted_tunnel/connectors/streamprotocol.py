# -*- test-case-name: tests.unit.test_stream,tests.loopback.test_tls,tests.unit.test_tls -*-
"""
The connection of a stream end: frames over TCP with Go's keepalive and
Nagle off, and over TLS a connection that counts only once its handshake
has completed (or is dropped, saying why, when it fails or times out).
"""

import socket

from OpenSSL import SSL
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IHandshakeListener
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.spec import format_address
from uhppoted_tunnel.wire import FramedProtocol

#: Go: TCP keepalive every 15 s on stream sockets.
KEEPALIVE = 15


@implementer(IHandshakeListener)
class StreamProtocol(FramedProtocol):
    """
    A framed connection of a stream end: keepalive on, Nagle off.

    Over TLS the connection counts as made only once the handshake has
    completed; a handshake that fails or takes longer than the end's
    C{handshake_timeout} drops the connection with a warning that says what
    probably happened, and a client counts it as a failed attempt.

    :ivar closed: fires when the connection has closed.
    """

    _timer = None
    announced = False
    timed_out = False

    def connectionMade(self):
        _tune(self.transport)
        self.peer = format_address(self.transport.getPeer())
        self.closed = Deferred()
        end = self.factory.end
        end.protocols.add(self)
        if end.handshake_timeout is None:
            self._announce()
        else:
            self._timer = end.reactor.callLater(end.handshake_timeout, self._handshakeTimedOut)

    def handshakeCompleted(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._announce()

    def _announce(self):
        self.announced = True
        self.factory.connectionMade(self)

    def _handshakeTimedOut(self):
        self._timer = None
        self.timed_out = True
        timeout = self.factory.end.handshake_timeout
        self.log.warn("TLS handshake with {peer} timed out after {timeout:g}s: is the peer a plain TCP connector?",
                      peer=self.peer, timeout=timeout)
        self.factory.end.handshakeFailed(self, Failure(HandshakeTimeout(timeout)))
        self.transport.abortConnection()

    def connectionLost(self, reason):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        end = self.factory.end
        end.protocols.discard(self)
        if self.announced:
            FramedProtocol.connectionLost(self, reason)
            if reason.check(SSL.Error):
                # TLS 1.3: the server checks our certificate after our
                # handshake is done, and refuses it with an alert
                self.log.warn("TLS connection with {peer} failed: {reason}", peer=self.peer,
                              reason=_tls_reason(reason))
                end.handshakeFailed(self, reason)
        elif not self.timed_out:
            self.log.warn("TLS handshake with {peer} failed: {reason}", peer=self.peer, reason=_tls_reason(reason))
            end.handshakeFailed(self, reason)
        self.closed.callback(None)


class HandshakeTimeout(Exception):
    """
    A TLS handshake did not complete in time.
    """

    def __str__(self):
        return "TLS handshake timed out after {:g}s".format(self.args[0])


def _tune(transport):
    """
    Nagle off and Go's 15 s keepalive on the TCP connection under a
    (possibly TLS-wrapped) transport.
    """
    while not hasattr(transport, "setTcpNoDelay") and hasattr(transport, "transport"):
        transport = transport.transport
    if not hasattr(transport, "setTcpNoDelay"):
        return
    transport.setTcpNoDelay(True)
    transport.setTcpKeepAlive(True)
    handle = getattr(transport, "getHandle", lambda: None)()
    if hasattr(handle, "setsockopt") and hasattr(socket, "TCP_KEEPIDLE"):
        try:
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE)
            handle.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE)
        except OSError:
            pass


def _tls_reason(reason):
    """
    A one-line reason for a failed handshake, from OpenSSL's error stack.
    """
    value = reason.value
    errors = getattr(value, "args", [None])[0]
    if isinstance(errors, list) and errors and isinstance(errors[0], tuple):
        return "; ".join(str(e[-1]) for e in errors)
    return reason.getErrorMessage()
