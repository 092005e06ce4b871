# -*- test-case-name: tests.unit.test_grpch2,tests.loopback.test_grpc -*-
"""
The client side of the gRPC ends: L{GRPCClientEndpoint} dials with the
tunnel's own stream client endpoint (through the proxy C{--proxy} or the
environment names, as C{tcp/} does; TLS with ALPN C{h2} and the
server-name check for C{grpcs/}), sends the HTTP/2 preface and settings,
and opens one call, C{Relays}; if the server answers that with a
trailers-only C{UNIMPLEMENTED} (a tunnel from before C{Relays}), C{Relay}
on a new stream. The attempt has succeeded once the server has answered
the call with its headers (a server end sends them once it has taken the
link), and has failed when the call or the connection ends first, or
when nothing has answered within the dial timeout (and
C{--handshake-timeout} more over TLS); the reason names what the peer
probably is.
"""

from urllib.parse import unquote

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel import __version__
from uhppoted_tunnel.core.addresses import host_port, tcp_address
from uhppoted_tunnel.interfaces import ICountingEndpoint
from uhppoted_tunnel.link.ends import LinkRefused
from uhppoted_tunnel.link.limits import NOTHING
from uhppoted_tunnel.transports.grpc.call import Call
from uhppoted_tunnel.transports.grpc.bounds import CLOSE_TIMEOUT
from uhppoted_tunnel.transports.grpc.h2conn import H2Protocol
from uhppoted_tunnel.transports.grpc.messages import (
    BATCH_METHOD,
    METHOD,
    RESOURCE_EXHAUSTED,
    STATUS_NAMES,
    UNIMPLEMENTED,
)
from uhppoted_tunnel.transports.grpc.throttled import Warnings
from uhppoted_tunnel.transports.tls.handshake import HandshakeFailed

#: A client's C{user-agent}.
USER_AGENT = "uhppoted-tunnel/{} (h2)".format(__version__).encode("ascii")


class DialFailed(Exception):
    """
    An attempt to reach a gRPC server failed; the message says why.
    """


def status_of(headers):
    """
    :return: C{(code, message)} of a call's trailers (the message
        percent-decoded), or C{None} if they carry no C{grpc-status}.
    """
    status = headers.get(b"grpc-status")
    if status is None:
        return None
    try:
        code = int(status)
    except ValueError:
        code = 2
    return code, unquote(headers.get(b"grpc-message", b"").decode("ascii", "replace"))


def status_text(code, message):
    """
    :return: a status as the log shows it, C{NAME: message}.
    """
    name = STATUS_NAMES[code] if 0 <= code < len(STATUS_NAMES) else "status {}".format(code)
    return "{}: {}".format(name, message) if message else name


def dial_failure(code, message, address):
    """
    One line saying why a call was refused, naming what the peer probably
    is.
    """
    if code == UNIMPLEMENTED:
        return "{} is a gRPC server without {} (is it a tunnel's grpc/ end?)".format(address, METHOD)
    if code == RESOURCE_EXHAUSTED:
        return "the server refused the link: {}".format(message)
    return status_text(code, message)


def dial_error(failure):
    """
    What failed before HTTP/2 began, in the words the howto lists: a
    refused connection, a failed TLS handshake; anything else as it is.
    """
    if failure.check(ConnectionRefusedError):
        return Failure(DialFailed("connection refused"))
    if failure.check(HandshakeFailed):
        return Failure(DialFailed("TLS handshake failed: {}".format(failure.value)))
    return failure


class ClientProtocol(H2Protocol):
    """
    The HTTP/2 connection of one attempt of a client end.
    """

    client_side = True
    heard = False
    linked = False
    why = None
    _closing = None

    def __init__(self, attempt):
        H2Protocol.__init__(self, attempt.settings, attempt.clock, attempt.warnings)
        self.attempt = attempt

    def connectionMade(self):
        H2Protocol.connectionMade(self)
        self.attempt.protocol = self
        self.open(True)

    def open(self, batched):
        """
        Open the call: C{Relays} (C{batched}) or C{Relay}.
        """
        attempt = self.attempt
        self.batched = batched
        self.stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.stream_id, [
            (b":method", b"POST"), (b":scheme", attempt.scheme),
            (b":path", (BATCH_METHOD if batched else METHOD).encode()),
            (b":authority", attempt.authority), (b"content-type", b"application/grpc"), (b"te", b"trailers"),
            (b"user-agent", USER_AGENT), (b"grpc-accept-encoding", b"identity"),
        ])
        self.schedule()

    def dataReceived(self, data):
        self.heard = True
        H2Protocol.dataReceived(self, data)

    def fail(self, reason, code=ErrorCodes.PROTOCOL_ERROR):
        if not self.linked:
            self.why = "no HTTP/2 answer from {}: is it a gRPC server? ({})".format(self.attempt.address, reason)
            self.goAway(code)
            self.transport.abortConnection()
            return
        H2Protocol.fail(self, reason, code)

    def on_ResponseReceived(self, event):
        if event.stream_id != self.stream_id or self.linked:
            return
        headers = dict(event.headers)
        address = self.attempt.address
        status = status_of(headers)
        if headers.get(b":status") != b"200":
            self.refused("the server answered HTTP {}: is {} a gRPC server?".format(
                headers.get(b":status", b"?").decode("ascii", "replace"), address))
        elif status is not None:
            code, message = status
            if code == UNIMPLEMENTED and self.batched:
                # a server from before Relays
                self.open(False)
                return
            self.refused(dial_failure(code, message, address))
        else:
            self.take()

    def refused(self, why):
        """
        The attempt failed, for C{why}: the connection goes.
        """
        self.why = why
        self.goAway()
        self.transport.abortConnection()

    def take(self):
        """
        The server took the call: the link is made.
        """
        attempt = self.attempt
        call = Call(self, self.stream_id, self.batched, attempt.peer_address, self.transport.getHost())
        protocol = attempt.wrapped.buildProtocol(call.peer_address)
        if protocol is None or attempt.ready.called:
            self.refused("refused by the client end")
            return
        self.linked = True
        self.calls[self.stream_id] = call
        call.protocol = protocol
        protocol.makeConnection(call)
        attempt.settle(protocol)

    def on_TrailersReceived(self, event):
        call = self.calls.pop(event.stream_id, None)
        if call is None:
            return
        code, message = status_of(dict(event.headers)) or (0, "")
        call.ended(ConnectionDone() if code == 0 else ConnectionLost(status_text(code, message)))
        self.callEnded()

    def on_StreamEnded(self, event):
        call = self.calls.pop(event.stream_id, None)
        if call is not None:
            call.ended(ConnectionDone())
            self.callEnded()

    def finishCall(self, call):
        """
        End this side of the call (END_STREAM); the server ends it with
        its trailers, within L{CLOSE_TIMEOUT}.
        """
        try:
            self.conn.end_stream(call.stream_id)
        except ProtocolError:
            pass
        self.schedule()
        if self._closing is None:
            self._closing = self.clock.callLater(CLOSE_TIMEOUT, self.transport.abortConnection)

    def abortCall(self, call, reason):
        if self.calls.pop(call.stream_id, None) is None:
            return
        try:
            self.conn.reset_stream(call.stream_id, ErrorCodes.CANCEL)
        except ProtocolError:
            pass
        call.ended(reason)
        self.schedule()
        self.callEnded()

    def connectionLost(self, reason=None):
        if self._closing is not None and self._closing.active():
            self._closing.cancel()
        self._closing = None
        H2Protocol.connectionLost(self, reason)
        if not self.linked:
            self.attempt.settle(Failure(DialFailed(self.why or self.whyLost(reason))))

    def whyLost(self, reason):
        """
        Why the connection ended before the call was answered.
        """
        if reason is not None and reason.check(LinkRefused):
            return "the server refused this end's certificate during the TLS handshake: {}".format(
                reason.getErrorMessage())
        if not self.heard:
            return ("the server closed the connection during the HTTP/2 handshake: {} is not a gRPC server (a tcp/ "
                    "or tls/ end?), or it wants TLS (grpcs/)".format(self.attempt.address))
        return "the server closed the connection before answering the call"


class Attempt(Factory):
    """
    One attempt of a client end: builds its HTTP/2 connection and settles
    C{ready} with the end's connection once the link is made, or with a
    L{DialFailed} saying why it is not.
    """

    noisy = False
    protocol = None

    def __init__(self, wrapped, endpoint, ready):
        self.wrapped = wrapped
        self.settings = endpoint.settings
        self.clock = endpoint.clock
        self.warnings = endpoint.warnings
        self.address = endpoint.address
        self.authority = endpoint.address.encode("idna")
        self.scheme = b"https" if endpoint.secure is not None else b"http"
        self.peer_address = tcp_address(endpoint.host, endpoint.port)
        self.ready = ready
        self._timer = self.clock.callLater(endpoint.timeout, self._timedOut, endpoint.timeout)

    def buildProtocol(self, addr):
        return ClientProtocol(self)

    def _timedOut(self, timeout):
        self._timer = None
        self.settle(Failure(DialFailed("no answer within {:g}s: is {} a gRPC server?".format(timeout, self.address))))

    def settle(self, outcome):
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if self.ready.called:
            return
        if isinstance(outcome, Failure):
            if self.protocol is not None and not self.protocol.closed:
                self.protocol.transport.abortConnection()
            self.ready.errback(outcome)
        else:
            self.ready.callback(outcome)


@implementer(IStreamClientEndpoint, ICountingEndpoint)
class GRPCClientEndpoint:
    """
    Dials a gRPC server: C{connect} fires with the end's connection once
    the server has taken the call, and fails with L{DialFailed} (or the
    dial's or TLS handshake's failure) saying why if it does not.

    :ivar secure: the L{uhppoted_tunnel.transports.tls.secure.SecureClientEndpoint}
        under it, or C{None}.
    """

    handshake_failures = refused = dropped = NOTHING

    def __init__(self, endpoint, host, port, settings, clock, log_tag, timeout, secure=None):
        """
        :param endpoint: the stream endpoint dialled (TLS for C{grpcs/}).
        :param host: the server's name or address; C{port}: its port.
        :param timeout: seconds an attempt may take to be answered.
        """
        self.endpoint = endpoint
        self.host = host
        self.port = port
        self.address = host_port(host, port)
        self.settings = settings
        self.clock = clock
        self.log_tag = log_tag
        self.timeout = timeout
        self.secure = secure
        self.warnings = Warnings(clock, log_tag)

    def connect(self, factory):
        attempt = None

        def cancel(_):
            if attempt.protocol is not None and not attempt.protocol.closed:
                attempt.protocol.transport.abortConnection()
            connecting.cancel()

        ready = Deferred(cancel)
        attempt = Attempt(factory, self, ready)
        connecting = self.endpoint.connect(attempt)
        connecting.addErrback(lambda failure: None if failure.check(CancelledError) else
                              attempt.settle(dial_error(failure)))
        return ready
