# -*- test-case-name: tests.unit.test_grpch2,tests.unit.test_grpchostile -*-
"""
One HTTP/2 connection of a gRPC end, on the reactor's own thread:
L{H2Protocol} drives python-hyper's C{h2} state machine (the library
Twisted's own HTTP/2 server uses) over a TCP or TLS transport, and what
both sides share: the settings and bounds this end announces and holds
the peer to, writing what one reactor turn produced in one piece at the
turn's end, flow control out (what waits for the peer's window counts
against C{--max-send-queue}), keepalive pings (C{--dead-peer-timeout}),
and the end of the connection. The server and client sides
(L{uhppoted_tunnel.transports.grpc.server},
L{uhppoted_tunnel.transports.grpc.client}) add what a call is to each;
one call, one stream, is L{uhppoted_tunnel.transports.grpc.call.Call}.

What a peer sends is bounded: streams at once
(C{SETTINGS_MAX_CONCURRENT_STREAMS}), a header list (C{8 KiB}), the data
it may send before this end has consumed it (the windows, acknowledged
as the frames are relayed), streams opened over time (a rapid-reset
flood, CVE-2023-44487), pings and settings over time (a ping flood: closed
with C{ENHANCE_YOUR_CALM}, as grpc servers do), and anything C{h2} finds
against the protocol (a GOAWAY and the connection closed, with a
throttled warning, never a traceback).
"""

import itertools

from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import DataReceived
from h2.errors import ErrorCodes
from h2.exceptions import ProtocolError, StreamClosedError
from h2.settings import SettingCodes, Settings
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol
from zope.interface import implementer

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.core.throttle import TokenBucket
from uhppoted_tunnel.transports.grpc.bounds import (
    MAX_HEADER_LIST,
    PING_BURST,
    PING_RATE,
    STREAM_BURST,
    STREAM_RATE,
    STREAMS_PER_CONNECTION,
    WINDOW,
    Flood,
    FrameGuard,
    H2Failed,
    PingTimeout,
    keepalive,
)
from uhppoted_tunnel.link.framed import tune, underlying
from uhppoted_tunnel.link.writes import tcp_connection, turn_end, write_now

@implementer(IPushProducer)
class H2Protocol(Protocol):
    """
    The HTTP/2 side of a gRPC end's connection; its factory (the server's
    or the client's) gives it C{settings} (the tunnel's options), C{clock}
    and C{warnings} (an L{uhppoted_tunnel.transports.grpc.server.Warnings}).

    :ivar conn: the C{h2} connection.
    :ivar calls: the calls open on it, by stream id.
    :ivar paused: whether the transport's buffer is full (the peer is not
        reading what is written to its socket).
    """

    client_side = False
    conn = None
    paused = False
    closed = False
    #: whether this end has sent GOAWAY
    went_away = False
    peer = "?"
    #: where to write at once (a TCP connection), or None
    _direct = None

    def __init__(self, settings, clock, warnings):
        self.settings = settings
        self.clock = clock
        self.warnings = warnings
        self.max_payload = settings["max-payload"]
        self.max_send_queue = settings["max-send-queue"]
        self.stall_timeout = settings["stall-timeout"]
        self.calls = {}
        self._sending = []
        #: what h2 answered on its own while reading, to write at the turn's end
        self._answers = []
        #: the calls with bytes waiting for the peer's window
        self._blocked = set()
        self._scheduled = False
        self._turn_end = turn_end(clock)
        self._pings = TokenBucket(PING_RATE, PING_BURST, clock.seconds)
        self._streams = TokenBucket(STREAM_RATE, STREAM_BURST, clock.seconds)
        self._guard = FrameGuard(not self.client_side)
        #: the handler of each kind of h2 event, found once
        self._handlers = {}
        self._ping_ids = itertools.count(1)
        self._ping = self._ping_deadline = self._stall = None
        self._interval, self._ping_timeout = keepalive(settings["dead-peer-timeout"])

    # the transport

    def connectionMade(self):
        self.peer = format_address(self.transport.getPeer())
        socket = underlying(self.transport)
        tune(self.transport, self.max_send_queue, self.settings["dead-peer-timeout"])
        if hasattr(socket, "registerProducer"):
            socket.registerProducer(self, True)
        self._direct = tcp_connection(self.transport)
        config = H2Configuration(client_side=self.client_side, header_encoding=None)
        conn = self.conn = H2Connection(config)
        values = {
            SettingCodes.MAX_CONCURRENT_STREAMS: STREAMS_PER_CONNECTION,
            SettingCodes.MAX_HEADER_LIST_SIZE: MAX_HEADER_LIST,
            SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
        }
        if self.client_side:
            values[SettingCodes.ENABLE_PUSH] = 0
        # what initiate_connection announces
        conn.local_settings = Settings(client=self.client_side, initial_values=values)
        # before the peer acknowledges the settings too
        conn.decoder.max_header_list_size = MAX_HEADER_LIST
        conn.initiate_connection()
        self._ping = self.clock.callLater(self._interval, self._sendPing)
        self.flush()

    def dataReceived(self, data):
        if self.went_away:
            # this end sent GOAWAY and is closing (over TLS the socket is
            # read until the peer's close_notify): what the peer still
            # sends, its acknowledgements or its own GOAWAY, h2 would only
            # refuse, so it is not read
            return
        acks = {}
        try:
            self._guard.check(data)
            events = self.conn.receive_data(data)
            handlers = self._handlers
            calls = self.calls
            for event in events:
                kind = type(event)
                if kind is DataReceived:
                    # the hot path: straight to the call; the bytes are
                    # consumed at once, and acknowledged once a read
                    stream_id = event.stream_id
                    if event.flow_controlled_length:
                        acks[stream_id] = acks.get(stream_id, 0) + event.flow_controlled_length
                    call = calls.get(stream_id)
                    if call is not None:
                        call.dataReceived(event.data)
                    continue
                handler = handlers.get(kind, self)
                if handler is self:
                    handler = handlers[kind] = getattr(self, "on_" + kind.__name__, None)
                if handler is not None:
                    try:
                        handler(event)
                    except StreamClosedError:
                        # the peer reset the stream in the same read: what
                        # the handler would send it goes nowhere
                        pass
            for stream_id, size in acks.items():
                try:
                    self.conn.acknowledge_received_data(size, stream_id)
                except StreamClosedError:
                    pass
        except ProtocolError as e:
            self.fail(H2Failed(str(e) or type(e).__name__), getattr(e, "error_code", ErrorCodes.PROTOCOL_ERROR))
            return
        except Flood as e:
            self.fail(e, ErrorCodes.ENHANCE_YOUR_CALM)
            return
        except H2Failed as e:
            self.fail(e, ErrorCodes.FRAME_SIZE_ERROR)
            return
        # what h2 answered itself (settings and ping acknowledgements, window
        # updates), if anything, goes with the turn's writes
        answer = self.conn.data_to_send()
        if answer:
            self._answers.append(answer)
            self.schedule()

    def fail(self, reason, code=ErrorCodes.PROTOCOL_ERROR):
        """
        End the connection for what the peer did: GOAWAY with C{code},
        warned of (throttled), and closed.
        """
        if self.closed:
            return
        self.warnings.broke(self.peer, reason)
        self.goAway(code)
        self.endCalls(reason)
        self.transport.loseConnection()

    def goAway(self, code=ErrorCodes.NO_ERROR):
        """
        Send GOAWAY and everything before it, now.
        """
        if self.closed or self.conn is None:
            return
        try:
            self.conn.close_connection(code)
        except ProtocolError:
            pass
        self.went_away = True
        self.flush()

    def connectionLost(self, reason=None):
        self.closed = True
        for timer in (self._ping, self._ping_deadline, self._stall):
            if timer is not None and timer.active():
                timer.cancel()
        self._ping = self._ping_deadline = self._stall = None
        if reason is None or reason.check(ConnectionDone):
            why = ConnectionDone()
        else:
            why = reason.value
        self.endCalls(why)

    def endCalls(self, reason):
        """
        Every call open ends, with C{reason}.
        """
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.ended(reason)

    # writing, once a turn

    def schedule(self, call=None):
        """
        Have L{flush} run at the end of this reactor turn (C{call} has
        frames to send then).
        """
        if call is not None:
            self._sending.append(call)
        if not self._scheduled:
            self._scheduled = True
            self._turn_end(self.flush)

    def flush(self):
        """
        Hand C{h2} the messages the turn's frames make, and write what
        it has to send, in one piece.
        """
        self._scheduled = False
        sending, self._sending = self._sending, []
        for call in sending:
            call.pack()
            self.sendWaiting(call)
        if self.closed:
            return
        data = self.conn.data_to_send()
        if self._answers:
            data = b"".join(self._answers) + data
            self._answers = []
        if data:
            if self._direct is not None:
                write_now(self._direct, data)
            else:
                self.transport.write(data)
        self._checkStall()

    def sendWaiting(self, call):
        """
        Send as much of what C{call} has waiting as the peer's windows take.
        """
        waiting = call.waiting
        if not waiting or call.stream_id not in self.conn.streams:
            return
        conn = self.conn
        window = conn.local_flow_control_window(call.stream_id)
        size = conn.max_outbound_frame_size
        sent = 0
        while sent < len(waiting) and window > 0:
            chunk = min(size, window, len(waiting) - sent)
            conn.send_data(call.stream_id, waiting[sent:sent + chunk] if sent or chunk < len(waiting) else waiting)
            sent += chunk
            window -= chunk
        if sent < len(waiting):
            call.waiting = waiting[sent:]
            self._blocked.add(call)
        else:
            call.waiting = b""
            self._blocked.discard(call)
            call.drained()

    def on_WindowUpdated(self, event):
        calls = self.calls.values() if not event.stream_id else (
            [self.calls[event.stream_id]] if event.stream_id in self.calls else [])
        for call in calls:
            self.sendWaiting(call)

    def on_RemoteSettingsChanged(self, event):
        if not self._pings.take():
            raise Flood("SETTINGS too often")
        # a larger initial window may let waiting data go
        for call in self.calls.values():
            self.sendWaiting(call)

    def on_StreamReset(self, event):
        call = self.calls.pop(event.stream_id, None)
        if call is not None:
            call.ended(ConnectionLost("the peer reset the call (HTTP/2 error {})".format(
                _error_name(event.error_code))))
            self.callEnded()

    def on_ConnectionTerminated(self, event):
        if event.error_code:
            why = ConnectionLost("the peer closed the HTTP/2 connection (GOAWAY, {})".format(
                _error_name(event.error_code)))
        else:
            why = ConnectionDone()
        self.endCalls(why)
        self.transport.loseConnection()

    def openedStream(self):
        """
        The peer opened a stream: within the budget, or a flood.
        """
        if not self._streams.take():
            raise Flood("new streams too often (a rapid reset?)")

    def callEnded(self):
        """
        A call has ended: once none is left, the connection goes too
        (GOAWAY, then closed once written).
        """
        if not self.calls and not self.closed:
            self.goAway()
            self.transport.loseConnection()

    # flow control, and the stall timeout

    def pauseProducing(self):
        self.paused = True
        self._checkStall()

    def resumeProducing(self):
        self.paused = False
        self._checkStall()

    def stopProducing(self):
        pass

    def _checkStall(self):
        blocked = self._blocked
        if not (self.paused or blocked or self._stall):
            return
        for call in [call for call in blocked if not call.waiting]:
            # ended meanwhile
            blocked.discard(call)
        stalled = self.paused or bool(blocked)
        if stalled and self._stall is None and self.stall_timeout is not None and not self.closed:
            self._stall = self.clock.callLater(self.stall_timeout, self._stalledTooLong)
        elif not stalled and self._stall is not None:
            self._stall.cancel()
            self._stall = None

    def _stalledTooLong(self):
        self._stall = None
        for call in list(self.calls.values()):
            call.stalled(self.stall_timeout)
        self.transport.abortConnection()

    # keepalive

    def on_PingReceived(self, event):
        # h2 answers it
        if not self._pings.take():
            raise Flood("PING frames too often")

    def on_PingAckReceived(self, event):
        if self._ping_deadline is not None and self._ping_deadline.active():
            self._ping_deadline.cancel()
        self._ping_deadline = None

    def _sendPing(self):
        self._ping = self.clock.callLater(self._interval, self._sendPing)
        if self._ping_deadline is not None or self.closed:
            return
        self.conn.ping(next(self._ping_ids).to_bytes(8, "big"))
        self._ping_deadline = self.clock.callLater(self._ping_timeout, self._pingTimedOut)
        self.flush()

    def _pingTimedOut(self):
        self._ping_deadline = None
        self.endCalls(PingTimeout(self.settings["dead-peer-timeout"]))
        self.transport.abortConnection()


def _error_name(code):
    try:
        return ErrorCodes(code).name
    except ValueError:
        return str(code)
