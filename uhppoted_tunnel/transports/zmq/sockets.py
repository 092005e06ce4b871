# -*- test-case-name: tests.unit.test_zmq,tests.unit.test_zmqbatch -*-
"""
ZeroMQ sockets driven by the reactor, for the C{zmq/} ends
(L{uhppoted_tunnel.transports.zmq.server},
L{uhppoted_tunnel.transports.zmq.client}).

A ZeroMQ socket is not a file descriptor: libzmq's I/O thread owns the
TCP connections, and the socket gives the reactor one descriptor
(C{ZMQ_FD}) that becomes readable when the socket's I{state} may have
changed, edge-triggered. Three rules keep a reader from stalling, and
L{SocketReader} follows them:

 1. the descriptor being readable says nothing: read C{ZMQ_EVENTS} and
    receive while it says C{POLLIN};
 2. a send (or reading C{ZMQ_EVENTS}) may consume the edge that announced
    incoming messages, so after every send the socket is checked again
    (L{SocketReader.sent}): at once if no drain is under way, and then
    received from on the next turn of the reactor only if a message is
    waiting (reading C{ZMQ_EVENTS} takes in every pending command, so
    the next message makes a new edge); a send made while draining
    needs nothing, as the drain checks again before it returns;
 3. a reader that stops early (a batch limit, so that one busy socket
    cannot starve the reactor) will get no new edge for what it left:
    it comes back on the next turn by itself.

txZMQ does the same with more machinery, and has been unmaintained since
2021; the rules are few enough to keep here, under our own tests.

L{ZAPHandler} is pyzmq's C{zmq.auth.base.Authenticator} driven the same
way (pyzmq ships thread and asyncio variants only): it answers the ZAP
requests libzmq makes for each connection a server end accepts, with
the CURVE key check, and the connection caps before it.
"""

import zmq
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReadDescriptor
from zmq.auth.base import Authenticator
from zope.interface import implementer

#: Messages received in one go before the reader yields to the reactor.
BATCH = 256

# pyzmq's constants are enums, and an enum's C{&} or C{|} runs Python code
# (enum.Flag): on the way of every message, plain ints
NOBLOCK = int(zmq.NOBLOCK)
NOBLOCK_SNDMORE = int(zmq.NOBLOCK | zmq.SNDMORE)
RCVMORE = int(zmq.RCVMORE)
EVENTS = int(zmq.EVENTS)
POLLIN = int(zmq.POLLIN)
POLLOUT = int(zmq.POLLOUT)

#: The monitor events the ends act on.
MONITORED = (zmq.EVENT_ACCEPTED | zmq.EVENT_CONNECTED | zmq.EVENT_CLOSED | zmq.EVENT_DISCONNECTED
             | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
             | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL | zmq.EVENT_HANDSHAKE_FAILED_AUTH)

#: ZAP status codes (RFC 27).
ZAP_OK = b"200"
ZAP_REFUSED = b"400"


@implementer(IReadDescriptor)
class SocketReader:
    """
    Receives every message of a ZeroMQ socket from the reactor, by its
    C{ZMQ_FD}, with the edge-triggered rules of the module docstring.

    :ivar socket: the C{zmq.Socket}.
    """

    def __init__(self, socket, receive, reactor, batch=BATCH):
        """
        :param socket: a C{zmq.Socket}.
        :param receive: called while the socket has a message waiting:
            receives one (non-blocking) and handles it; may raise
            C{zmq.Again}. L{messages} makes one that hands over whole
            messages.
        :param reactor: an C{IReactorFDSet} and C{IReactorTime}.
        :param batch: messages received before yielding to the reactor.
        """
        self.socket = socket
        self.receive = receive
        self.reactor = reactor
        self.batch = batch
        self._fd = socket.getsockopt(zmq.FD)
        self._check = None
        self._reading = False
        self._draining = False

    def fileno(self):
        return self._fd

    def logPrefix(self):
        return "ZMQ"

    def connectionLost(self, reason):
        pass

    def start(self):
        """
        Watch the socket, and receive what is already waiting (its edge
        may have come and gone before the reactor watched).
        """
        self._reading = True
        self.reactor.addReader(self)
        self.drain()

    def stop(self):
        """
        Stop watching (before the socket is closed: its descriptor dies
        with it).
        """
        if self._reading:
            self._reading = False
            self.reactor.removeReader(self)
        if self._check is not None:
            if self._check.active():
                self._check.cancel()
            self._check = None

    def doRead(self):
        self.drain()

    def sent(self):
        """
        Something was sent on the socket: check it again (rule 2), and if
        a message is waiting, receive on the next turn. One check per
        turn, however many sends; none while draining (the drain checks
        again itself).

        :return: the socket's C{ZMQ_EVENTS} if they were read, else
            C{None}.
        """
        if self._check is None and self._reading and not self._draining:
            events = self.socket.getsockopt(EVENTS)
            if events & POLLIN:
                self._later()
            return events
        return None

    def _later(self):
        self._check = self.reactor.callLater(0, self._checkAgain)

    def _checkAgain(self):
        self._check = None
        self.drain()

    def drain(self):
        """
        Receive while the socket says a message is waiting, at most
        C{batch}; if more may be waiting, come back on the next turn.
        """
        events = self.socket.getsockopt
        receive = self.receive
        self._draining = True
        try:
            for _ in range(self.batch):
                if not self._reading or not events(EVENTS) & POLLIN:
                    return
                try:
                    receive()
                except zmq.Again:
                    return
        finally:
            self._draining = False
        if self._check is None and self._reading:
            self._later()


class Writable:
    """
    Whether a socket takes a message now (C{POLLOUT} in C{ZMQ_EVENTS}):
    known from the events read after the last send when they were, read
    again when they were not or said no (the peer may have read since).
    """

    __slots__ = ("socket", "known")

    def __init__(self, socket):
        self.socket = socket
        self.known = False

    def sent(self, events):
        """
        A message was sent, and C{events} read after it (or C{None}).
        """
        self.known = events is not None and bool(events & POLLOUT)

    def __call__(self):
        if not self.known:
            self.known = bool(self.socket.getsockopt(EVENTS) & POLLOUT)
        return self.known


def messages(socket, handle):
    """
    A L{SocketReader}'s C{receive} that hands C{handle} each whole message
    (a list of C{bytes}).
    """
    recv = socket.recv_multipart

    def receive():
        handle(recv(NOBLOCK))

    return receive


class Monitor:
    """
    A socket's monitor (C{zmq_socket_monitor}) read from the reactor: each
    event goes to C{event(kind, value)} (C{value} is the descriptor for
    C{ACCEPTED}, C{CONNECTED}, C{CLOSED} and C{DISCONNECTED}, the ZAP status
    or protocol error for the handshake failures).
    """

    def __init__(self, socket, event, reactor):
        self.watched = socket
        self.socket = socket.get_monitor_socket(MONITORED)
        self.reader = SocketReader(self.socket, messages(self.socket, self._received), reactor)
        self.event = event

    def _received(self, message):
        if len(message) == 2 and len(message[0]) >= 6:
            kind = int.from_bytes(message[0][:2], "little")
            value = int.from_bytes(message[0][2:6], "little")
            self.event(kind, value)

    def start(self):
        self.reader.start()

    def drain(self):
        """
        Take in every event already reported (before acting on something
        the socket received, which the events may explain).
        """
        self.reader.drain()

    def close(self):
        self.reader.stop()
        try:
            self.watched.disable_monitor()
        except zmq.ZMQError:
            pass
        self.socket.close(0)


#: Why a dial failed, by the monitor event that said so.
_FAILED = {
    zmq.EVENT_CLOSED: "the connection failed (refused or unreachable)",
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL: "the ZeroMQ handshake failed (did it time out? --handshake-timeout)",
    zmq.EVENT_DISCONNECTED: "the peer closed the connection during the ZeroMQ handshake (is it a zmq/server end?)",
}


def failure_reason(kind, value, curve, peer="zmq/server"):
    """
    A one-line reason for a monitor event that ends a dial.

    :param kind: the event.
    :param value: its value (the ZAP status, or libzmq's protocol error).
    :param curve: whether this end uses CURVE.
    :param peer: what the peer should be, for the message.
    """
    if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return ("the server refused this client (ZAP {}): is its key in the server's --zmq-authorized-keys, and is "
                "the server below its --max-connections?".format(value))
    if kind == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return ("the ZeroMQ handshake failed: one side uses CURVE and the other not (--zmq-server-key on "
                    "both halves, or on neither)")
        if curve:
            return ("the CURVE handshake failed: is --zmq-server-key the server's public key? (protocol error "
                    "{:#x})".format(value))
        return "the ZeroMQ handshake failed (protocol error {:#x}): is the peer a {} end?".format(value, peer)
    return _FAILED.get(kind, "the connection failed (event {})".format(kind))


class ZAPHandler(Authenticator):
    """
    The ZAP handler of a server end's context, read from the reactor.

    Every connection the end accepts is put to it once its peer has said
    who it is: first C{admit(address)}, the connection caps (a refusal
    names the cap); then, for CURVE, the client's public key against the
    authorised keys (or any key, without C{--zmq-authorized-keys}). A
    refused peer's handshake fails (status 400), which its client end sees
    and backs off from. Refusals are told to C{refused(address, reason)}.
    """

    log_tag = "ZMQ"

    def __init__(self, context, reactor, admit, refused, authorized=None):
        """
        :param context: the end's C{zmq.Context}.
        :param reactor: the reactor.
        :param admit: C{address -> None or reason}: the caps.
        :param refused: called with C{(address, reason)} for each refusal.
        :param authorized: the authorised keys
            (L{uhppoted_tunnel.transports.zmq.curve.read_authorized}), or
            C{None} to accept any CURVE client.
        """
        Authenticator.__init__(self, context, log=_Quiet())
        self.reactor = reactor
        self.admit = admit
        self.refused = refused
        self.reader = None
        self._address = "?"
        if authorized is None:
            self.allow_any = True
        else:
            self.certs["*"] = authorized

    def start(self):
        Authenticator.start(self)
        self.zap_socket.linger = 0
        self.reader = SocketReader(self.zap_socket, messages(self.zap_socket, self._request), self.reactor)
        self.reader.start()

    def stop(self):
        if self.reader is not None:
            self.reader.stop()
            self.reader = None
        Authenticator.stop(self)

    def _request(self, message):
        # nothing in the CURVE check waits (no credentials provider), so
        # the coroutine finishes at once
        Deferred.fromCoroutine(self.handle_zap_message(message))

    async def handle_zap_message(self, msg):
        if len(msg) >= 6:
            address = self._address = msg[3].decode("utf-8", "replace")
            reason = self.admit(address)
            if reason is not None:
                self.refused(address, reason)
                self._send_zap_reply(msg[1], ZAP_REFUSED, b"too many connections")
                return
        await Authenticator.handle_zap_message(self, msg)

    def _send_zap_reply(self, request_id, status_code, status_text, user_id="anonymous"):
        Authenticator._send_zap_reply(self, request_id, status_code, status_text, user_id)
        self.reader.sent()

    async def _authenticate_curve(self, domain, client_key):
        allowed, reason = await Authenticator._authenticate_curve(self, "*", client_key)
        if not allowed:
            self.refused(self._address, "its key is not in --zmq-authorized-keys")
        return allowed, reason


class _Quiet:
    """
    The Authenticator's own logger (stdlib C{logging}, debug lines): the
    end logs what matters itself.
    """

    def debug(self, *args, **kwargs):
        pass

    info = warning = error = debug
