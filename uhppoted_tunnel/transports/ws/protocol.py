# -*- test-case-name: tests.unit.test_websocket,tests.loopback.test_websocket -*-
"""
The WebSocket upgrade and messages of the C{ws/} and C{wss/} ends, with
autobahn's Twisted API (C{autobahn.twisted.websocket}).

A connection is an autobahn protocol until its upgrade succeeds; then, as
L{uhppoted_tunnel.transports.tls.handshake.HandshakeGate} does after a TLS
handshake, it builds the end's own connection (a
L{uhppoted_tunnel.transports.ws.connection.WSConnection}, inside
C{ClientService}'s proxy on a client) and connects it to itself: every
binary message that holds exactly one frame goes to it, and it writes
each frame as one binary message. Flow control, the stall timeout,
dropped frames, the relays and the reconnect loop are therefore the
stream ends' own. A client endpoint's C{connect} fires only once the upgrade has
succeeded and fails, with the server's answer, when it does not, so that
C{ClientService} counts a failed attempt.

The factories and endpoints (and the end's throttled warnings) are in
L{uhppoted_tunnel.transports.ws.endpoints}: every timer autobahn sets (the
opening and closing handshakes, pings) runs on the end's clock, and
autobahn's own log lines are kept at debug level: what matters the end
says itself, throttled. Everything received is autobahn's to parse, but
for whole final binary frames read while autobahn holds nothing half
parsed (L{_Frames._wholeFrames}), the tunnel's every frame.
"""

from autobahn.twisted.websocket import WebSocketClientProtocol, WebSocketServerProtocol
from autobahn.websocket.protocol import WebSocketProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.transports.tls.handshake import note_identity
from uhppoted_tunnel.link.ends import LinkRefused
from uhppoted_tunnel.link.framed import WhenClosed
from uhppoted_tunnel.transports.ws.upgrade import MAX_HEAD, PHRASES, Refusal, parse_request, parse_status, shown
from uhppoted_tunnel.core.frames import HEADER_SIZE

OPEN = WebSocketProtocol.STATE_OPEN
CLOSED = WebSocketProtocol.STATE_CLOSED

#: The close code for a text message: the tunnel speaks binary only.
UNSUPPORTED_DATA = 1003


class UpgradeFailed(Exception):
    """
    A client's WebSocket upgrade did not succeed; the message says why.
    """


class BadMessage(Exception):
    """
    A peer sent a message that is not one frame; the message says what.
    """


class AutobahnLog:
    """
    autobahn's own log calls: debug and trace dropped (txaio drops them by
    default), the rest kept at debug level. What matters (a refused
    upgrade, an impossible message, a missed ping) the end says itself, in
    its own words and throttled.
    """

    _log = Logger(namespace="uhppoted_tunnel.transports.ws.protocol.autobahn")

    def _drop(self, *args, **kwargs):
        pass

    def _demote(self, format="", *args, **kwargs):
        kwargs.pop("log_failure", None)
        self._log.debug("autobahn: " + str(format), **kwargs)

    debug = trace = _drop
    info = warn = error = critical = failure = _demote


AUTOBAHN_LOG = AutobahnLog()


class _Frames(WhenClosed):
    """
    What the server and client protocols share: the upgraded connection
    carries one frame per binary message to and from the end's protocol.

    :ivar frames: the end's protocol once upgraded, else C{None}.
    :ivar peer: the peer's address as text, for the log.
    """

    log = AUTOBAHN_LOG
    frames = None
    _deliver = None

    def connectionMade(self):
        self.address = self.transport.getPeer()
        self.factory.pending.add(self)
        super().connectionMade()
        self.peer = format_address(self.address)

    def upgraded(self):
        """
        The upgrade succeeded: build the end's connection and connect it
        to this protocol.

        :return: the end's protocol, or C{None} when the end refused it
            (the connection is then dropped).
        """
        self.factory.pending.discard(self)
        frames = self.factory.wrapped.buildProtocol(self.address)
        if frames is None:
            self.dropConnection(abort=True)
            return None
        self.frames = frames
        self._deliver = frames.messageReceived
        # wss/: the site is known by the certificate it proved
        note_identity(frames, self.transport)
        frames.makeConnection(self)
        return frames

    def loseConnection(self):
        """
        As the end's connection's transport: close once what is queued is
        sent (see L{closeGracefully}).
        """
        self.closeGracefully()

    def abortConnection(self):
        """
        As the end's connection's transport: drop the socket at once.
        """
        self.transport.abortConnection()

    def dataReceived(self, data):
        if self._deliver is not None and self.state == OPEN and not self.data and self.current_frame is None \
                and not self.inside_message:
            data = self._wholeFrames(data)
            if not data:
                return
        # autobahn's logs each read at debug level, formatting the log's
        # arguments (tens of microseconds) whether or not it is written
        self._dataReceived(data)

    def _wholeFrames(self, data):
        """
        The common case, read here rather than by autobahn's parser (whose
        generality costs as much as the rest of a frame's way through a
        half, as C{sendMessage} did): whole final binary frames at the
        start of C{data}, masked as the peer's side must mask, no longer
        than the limits, each handed to L{onMessage}. Read only while
        autobahn holds nothing half parsed; what is left (a control frame,
        a fragment, a frame cut short or anything else) is autobahn's.

        :return: what is left of C{data}.
        """
        masked = 0x80 if self.factory.isServer else 0
        limit = min(self.maxFramePayloadSize or 0x7FFFFFFF, self.maxMessagePayloadSize or 0x7FFFFFFF)
        end = len(data)
        i = 0
        while end - i >= 2 and data[i] == 0x82 and data[i + 1] & 0x80 == masked:
            size = data[i + 1] & 0x7F
            start = i + 2
            if size == 126:
                if end - i < 4:
                    break
                size = data[start] << 8 | data[start + 1]
                if size < 126:
                    break
                start += 2
            elif size == 127:
                break
            if size > limit:
                break
            if masked:
                key = data[start:start + 4]
                start += 4
            stop = start + size
            if stop > end:
                break
            payload = data[start:stop]
            if masked:
                payload = (int.from_bytes(payload, "big") ^ int.from_bytes((key * (size // 4 + 1))[:size], "big")
                           ).to_bytes(size, "big")
            i = stop
            self.onMessage(payload, True)
            if self.state != OPEN:
                return b""
        return data[i:] if i else data

    def sendData(self, data, sync=False, chopsize=None):
        # the same for each write; and no traffic statistics
        if sync or chopsize or self.send_queue:
            super().sendData(data, sync, chopsize)
        else:
            self.transport.write(data)

    def unregisterProducer(self):
        # autobahn calls this on every drop, for a producer registered
        # through it; the only one here is the end's protocol, registered
        # on the socket (see WSConnection), which lets go of it when
        # the connection is lost
        pass

    def onMessageEnd(self):
        # autobahn's also fires a "message" event for observers, with a
        # Deferred per message: nothing observes here
        if not self.failedByMe:
            self.onMessage(b"".join(self.message_data), self.message_is_binary)
        self.message_data = None

    def onMessage(self, payload, isBinary):
        size = len(payload)
        if isBinary and size >= HEADER_SIZE and (payload[0] << 8 | payload[1]) == size - HEADER_SIZE:
            self._deliver(payload)
            return
        if self.state != OPEN or self.frames is None:
            return
        if isBinary:
            self._badMessage("a message of {} bytes that is not one frame (its header announces {} bytes)".format(
                size, (payload[0] << 8 | payload[1]) if size >= 2 else "no"))
            self.dropConnection(abort=True)
        else:
            self._badMessage("a text message (the tunnel sends binary messages only)")
            self.sendCloseFrame(code=UNSUPPORTED_DATA, reasonUtf8=b"binary messages only", isReply=False)

    def _badMessage(self, what):
        frames = self.frames
        frames.factory.frameTooLong(frames, BadMessage(what))

    def closeGracefully(self):
        """
        Close with a close frame once what is queued is sent (the peer has
        L{uhppoted_tunnel.transports.ws.endpoints.CLOSE_TIMEOUT} to answer
        it).
        """
        if self.state == OPEN:
            self.sendCloseFrame(code=1000, isReply=False)
        elif self.state != CLOSED and self.state != WebSocketProtocol.STATE_CLOSING:
            self.dropConnection(abort=False)

    def onAutoPingTimeout(self):
        self.factory.pingTimedOut(self.peer)
        super().onAutoPingTimeout()

    def connectionLost(self, reason):
        super().connectionLost(reason)
        # autobahn leaves this one running
        if self.closeHandshakeTimeoutCall is not None:
            self.closeHandshakeTimeoutCall.cancel()
            self.closeHandshakeTimeoutCall = None
        self.factory.pending.discard(self)
        frames, self.frames = self.frames, None
        if frames is not None:
            if self.wasMaxMessagePayloadSizeExceeded or self.wasMaxFramePayloadSizeExceeded:
                frames.factory.frameTooLong(frames, BadMessage(
                    "a message of over {} bytes (--max-payload {} plus the {}-byte frame header)".format(
                        self.maxMessagePayloadSize, self.maxMessagePayloadSize - HEADER_SIZE, HEADER_SIZE)))
            frames.connectionLost(reason)
        else:
            self.notUpgraded(reason)
        for d in self._closedNow():
            d.callback(None)

    def notUpgraded(self, reason):
        """
        The connection closed before its upgrade succeeded.
        """


def stray_bytes(data):
    """
    What a peer that is not a WebSocket client sends first, said as soon
    as it shows (rather than when the upgrade times out).

    :param data: the first bytes received.
    :return: a reason, or C{None} while they may begin an HTTP request.
    """
    if data[:2] == b"\x16\x03":
        return "the data starts like a TLS handshake: is the peer a wss/ or tls/ client?"
    line = data.split(b"\r\n", 1)[0]
    if any(byte < 0x20 or byte > 0x7E for byte in line[:64]):
        return "the data is not an HTTP request: is the peer a tcp/ connector?"
    return None


class WSServerProtocol(_Frames, WebSocketServerProtocol):
    """
    A connection to a server end: its upgrade request is admitted by the
    end's L{uhppoted_tunnel.transports.ws.upgrade.UpgradePolicy} before
    autobahn checks the rest; every refusal is an HTTP status, no body,
    and a throttled warning naming the peer and the reason.
    """

    _admitted = False

    def processHandshake(self):
        data = self.data
        end = data.find(b"\r\n\r\n")
        if not self._admitted:
            stray = stray_bytes(data)
            if stray is not None:
                return self.failHandshake(stray, 400)
        if end < 0 and len(data) <= MAX_HEAD:
            return
        if end < 0 or end + 4 > MAX_HEAD:
            return self.failHandshake("a request head over {} bytes".format(MAX_HEAD), 431)
        if not self._admitted:
            try:
                request = parse_request(data[:end])
            except ValueError as e:
                return self.failHandshake("a malformed request: {}".format(e), 400)
            policy = self.factory.policy
            self.address = policy.peer(self.address, request)
            self.peer = format_address(self.address)
            try:
                policy.check(request)
            except Refusal as refusal:
                return self.failHandshake(refusal.reason, refusal.code)
            self._admitted = True
        try:
            WebSocketServerProtocol.processHandshake(self)
        except Exception as e:
            if self.state != CLOSED:
                self.failHandshake("a malformed upgrade request ({})".format(e), 400)

    def failHandshake(self, reason, code=400, responseHeaders=None):
        self.factory.warnings.refused(self.peer, code, reason)
        self.wasNotCleanReason = reason
        head = ["HTTP/1.1 {} {}".format(code, PHRASES.get(code, "Error"))]
        if code == 426:
            head += ["Upgrade: websocket", "Sec-WebSocket-Version: 13"]
        elif code == 401:
            head.append('WWW-Authenticate: Bearer realm="uhppoted-tunnel"')
        head += ["{}: {}".format(name, value) for name, value in responseHeaders or ()]
        head += ["Content-Length: 0", "Connection: close", "", ""]
        self.sendData("\r\n".join(head).encode("latin-1", "replace"))
        self.dropConnection(abort=False)

    def onOpen(self):
        self.upgraded()

    def notUpgraded(self, reason):
        if self.wasOpenHandshakeTimeout:
            self.factory.warnings.timedOut(self.peer, self.openHandshakeTimeout)


class WSClientProtocol(_Frames, WebSocketClientProtocol):
    """
    A client end's connection: it asks for the upgrade, and its endpoint's
    C{connect} fires once the server has granted it, or fails saying why.

    :ivar why: why the upgrade failed, once it has.
    """

    why = None

    def onConnecting(self, transport_details):
        return self.factory.request

    def processHandshake(self):
        data = self.data
        end = data.find(b"\r\n\r\n")
        if end < 0 and len(data) <= MAX_HEAD:
            return
        if end < 0 or end + 4 > MAX_HEAD:
            return self.failHandshake("the server's answer to the upgrade has a head over {} bytes: is it a "
                                      "WebSocket server?".format(MAX_HEAD))
        try:
            _, code, phrase, _ = parse_status(data[:end])
        except ValueError as e:
            return self.failHandshake("the server's answer to the upgrade is not HTTP ({}): is it a WebSocket "
                                      "server?".format(e))
        if code != 101:
            return self.failHandshake("server refused the upgrade: {} {}".format(code, shown(phrase, 60)))
        try:
            WebSocketClientProtocol.processHandshake(self)
        except Exception as e:
            if self.state != CLOSED:
                self.failHandshake("a malformed answer to the upgrade ({})".format(e))

    def failHandshake(self, reason):
        self.why = reason
        self.wasNotCleanReason = reason
        self.dropConnection(abort=True)

    def onOpen(self):
        frames = self.upgraded()
        if frames is not None:
            self.factory.settle(frames)

    def onCloseFrame(self, code, reasonRaw):
        result = WebSocketClientProtocol.onCloseFrame(self, code, reasonRaw)
        if self.state != CLOSED:
            # the close handshake is done on this side: close the TCP
            # connection (autobahn would wait for the server to, on a timer
            # of the global reactor's)
            self.dropConnection(abort=False)
        return result

    def notUpgraded(self, reason):
        why = self.why
        if why is None:
            if self.wasOpenHandshakeTimeout:
                why = "no answer to the WebSocket upgrade within {:g}s: is the server a {}/ end? " \
                      "(--handshake-timeout)".format(self.openHandshakeTimeout, self.factory.kind)
            elif reason.check(LinkRefused):
                why = reason.getErrorMessage()
            else:
                why = "the server closed the connection during the WebSocket upgrade: is it a {}/ end?".format(
                    self.factory.kind)
        self.factory.settle(Failure(UpgradeFailed(shown(why, 200))))
