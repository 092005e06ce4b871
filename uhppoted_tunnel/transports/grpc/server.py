# -*- test-case-name: tests.unit.test_grpch2,tests.unit.test_grpchostile,tests.loopback.test_grpc -*-
"""
The server side of the gRPC ends: every connection accepted on the
tunnel's own TCP (or TLS, ALPN C{h2}) endpoint speaks HTTP/2
(L{ServerProtocol}), and every call of C{uhppoted.tunnel.Tunnel/Relays}
or C{/Relay} on it is one connection of the end, built by the listening
factory, which may refuse it (the caps: the call is answered
C{RESOURCE_EXHAUSTED}, C{too many connections}).

A call is answered with the response headers as soon as it is taken;
what is refused is answered with a trailers-only response: another path
C{UNIMPLEMENTED}, another content type HTTP 415, another method HTTP
405, a compression this end does not speak C{UNIMPLEMENTED}. A
connection that has taken no call within C{--handshake-timeout} is
closed with a throttled warning. The call ends with the trailers
C{grpc-status: 0} (this end closed it, or the client ended its side), a
status naming what the peer sent that ended it, or a reset.
"""

from urllib.parse import quote

from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.interfaces import IStreamServerEndpoint
from twisted.internet.protocol import Factory
from zope.interface import implementer

from uhppoted_tunnel.interfaces import ICountingEndpoint
from uhppoted_tunnel.link.lifecycle import StoppingPort
from uhppoted_tunnel.link.limits import NOTHING, prove
from uhppoted_tunnel.transports.grpc.call import IMPOSSIBLE, Call
from uhppoted_tunnel.transports.grpc.h2conn import H2Protocol
from uhppoted_tunnel.transports.grpc.messages import (
    BATCH_METHOD,
    INTERNAL,
    METHOD,
    OK,
    RESOURCE_EXHAUSTED,
    UNIMPLEMENTED,
    MessageTooLong,
)
from uhppoted_tunnel.transports.grpc.throttled import Warnings
from uhppoted_tunnel.transports.tls.handshake import note_subject

#: What a call's path asks for: whether the messages are C{Frames}.
PATHS = {BATCH_METHOD.encode(): True, METHOD.encode(): False}


def percent_encoded(message):
    """
    :return: C{message} as a C{grpc-message} carries it (UTF-8,
        percent-encoded outside printable ASCII, and C{%} itself).
    """
    return quote(message, safe=" !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~").encode("ascii")


def trailers(status, message=""):
    """
    :return: the headers of a call's trailers.
    """
    headers = [(b"grpc-status", str(status).encode("ascii"))]
    if message:
        headers.append((b"grpc-message", percent_encoded(message)))
    return headers


RESPONSE = [(b":status", b"200"), (b"content-type", b"application/grpc")]


class ServerProtocol(H2Protocol):
    """
    One connection accepted by a gRPC server end.

    :ivar took: whether it has taken a call yet.
    """

    took = False
    _no_call = None
    #: under TLS, the subject of the client's certificate, which the
    #: handshake gate notes (note_identity) before the connection is made
    identity = None

    def __init__(self, factory):
        H2Protocol.__init__(self, factory.settings, factory.clock, factory.warnings)
        self.factory = factory

    def connectionMade(self):
        self.factory.open.add(self)
        H2Protocol.connectionMade(self)
        self._no_call = self.clock.callLater(self.settings["handshake-timeout"], self._noCall)

    def _noCall(self):
        self._no_call = None
        if not self.took and not self.closed:
            self.warnings.noCall(self.peer, self.settings["handshake-timeout"])
            self.goAway()
            self.transport.abortConnection()

    def connectionLost(self, reason=None):
        self.factory.open.discard(self)
        if self._no_call is not None and self._no_call.active():
            self._no_call.cancel()
        self._no_call = None
        H2Protocol.connectionLost(self, reason)

    def refuse(self, stream_id, status, message, http=b"200"):
        """
        Answer a call with a trailers-only response.
        """
        self.conn.send_headers(stream_id, [(b":status", http), (b"content-type", b"application/grpc")]
                               + trailers(status, message), end_stream=True)

    def on_RequestReceived(self, event):
        self.openedStream()
        headers = dict(event.headers)
        stream_id = event.stream_id
        path = headers.get(b":path", b"")
        why = None
        if headers.get(b":method") != b"POST":
            self.conn.send_headers(stream_id, [(b":status", b"405")], end_stream=True)
            why = "not a POST"
        elif not headers.get(b"content-type", b"").startswith(b"application/grpc"):
            self.conn.send_headers(stream_id, [(b":status", b"415")], end_stream=True)
            why = "content-type is not application/grpc"
        elif path not in PATHS:
            message = "unknown method {}: this server serves {} and {}".format(
                path.decode("ascii", "replace")[:100], METHOD, BATCH_METHOD)
            self.refuse(stream_id, UNIMPLEMENTED, message)
            why = "unknown method {}".format(path.decode("ascii", "replace")[:100])
        elif headers.get(b"grpc-encoding", b"identity") != b"identity":
            self.refuse(stream_id, UNIMPLEMENTED, "compression is not supported")
            why = "compressed messages"
        if why is not None:
            self.warnings.refusedCall(self.peer, why)
            return
        self.take(stream_id, PATHS[path])

    def take(self, stream_id, batched):
        """
        A call of the service: one connection of the end, if its factory
        takes it.
        """
        transport = self.transport
        call = Call(self, stream_id, batched, transport.getPeer(), transport.getHost())
        protocol = self.factory.wrapped.buildProtocol(call.peer_address)
        if protocol is None:
            self.refuse(stream_id, RESOURCE_EXHAUSTED, "too many connections")
            return
        if not self.took:
            self.took = True
            # a call: under the caps, no longer a connection that may be
            # closed to make room for a newcomer
            prove(transport)
        self.conn.send_headers(stream_id, RESPONSE)
        self.calls[stream_id] = call
        if self.identity is not None:
            note_subject(protocol, self.identity)
        call.protocol = protocol
        protocol.makeConnection(call)

    def on_StreamEnded(self, event):
        # the client has ended its side: so does this end
        call = self.calls.get(event.stream_id)
        if call is not None:
            call.disconnecting = True
            if not call.outgoing and not call.waiting:
                self.finishCall(call)

    def finishCall(self, call):
        """
        End a call cleanly: what was queued is sent; the trailers.
        """
        if self.calls.pop(call.stream_id, None) is None:
            return
        try:
            self.conn.send_headers(call.stream_id, trailers(OK), end_stream=True)
        except ProtocolError:
            pass
        call.ended(ConnectionDone())
        self.schedule()
        self.callEnded()

    def abortCall(self, call, reason):
        """
        End a call at once: for what the peer sent (a status saying so),
        or on this end's word (a reset).
        """
        if self.calls.pop(call.stream_id, None) is None:
            return
        try:
            if isinstance(reason, IMPOSSIBLE):
                status = RESOURCE_EXHAUSTED if isinstance(reason, MessageTooLong) else INTERNAL
                self.conn.send_headers(call.stream_id, trailers(status, str(reason)), end_stream=True)
            else:
                self.conn.reset_stream(call.stream_id, ErrorCodes.CANCEL)
        except ProtocolError:
            pass
        call.ended(reason)
        self.schedule()
        self.callEnded()


class ServerFactory(Factory):
    """
    Builds the HTTP/2 connections of one server end, whose calls are
    connections built by the end's listening factory (C{wrapped}).
    """

    noisy = False

    def __init__(self, wrapped, settings, clock, warnings):
        self.wrapped = wrapped
        self.settings = settings
        self.clock = clock
        self.warnings = warnings
        self.open = set()

    def buildProtocol(self, addr):
        return ServerProtocol(self)

    def closeAll(self):
        """
        Close every connection (the end is stopping), and report what is
        not yet reported.
        """
        self.warnings.flush()
        for protocol in list(self.open):
            protocol.goAway()
            if protocol.paused:
                protocol.transport.abortConnection()
            else:
                protocol.transport.loseConnection()


@implementer(IStreamServerEndpoint, ICountingEndpoint)
class GRPCServerEndpoint:
    """
    A stream server endpoint (the tunnel's TCP one under the connection
    caps, with TLS for C{grpcs/}) whose connections speak HTTP/2, and
    whose every call reaches the factory listened with.

    :ivar secure: the L{uhppoted_tunnel.transports.tls.secure.SecureServerEndpoint}
        under it, or C{None}.
    """

    #: the calls count none of it: the endpoints it wraps do
    handshake_failures = refused = dropped = NOTHING

    def __init__(self, endpoint, settings, clock, log_tag, secure=None):
        self.endpoint = endpoint
        self.settings = settings
        self.clock = clock
        self.log_tag = log_tag
        self.secure = secure

    def listen(self, factory):
        servers = ServerFactory(factory, self.settings, self.clock, Warnings(self.clock, self.log_tag))
        return self.endpoint.listen(servers).addCallbacks(StoppingPort, _cannotListen, (servers.closeAll,))


def _cannotListen(failure):
    """
    A listen failed: the system's reason alone (C{Address already in
    use}), as the end says which address.
    """
    if failure.check(CannotListenError) and isinstance(failure.value.socketError, OSError):
        raise OSError(failure.value.socketError.strerror or str(failure.value.socketError))
    return failure

