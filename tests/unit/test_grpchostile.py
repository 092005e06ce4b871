"""
Tests for what a gRPC server end bounds against a hostile HTTP/2 peer
(L{uhppoted_tunnel.transports.grpc.bounds}, L{uhppoted_tunnel.transports.grpc.h2conn},
L{uhppoted_tunnel.transports.grpc.server}): a bare C{h2} client joined to a
server end's connection by iosim, sending what no tunnel sends. Each
bound ends the call or the connection with a warning in words, never a
traceback.
"""

from h2.errors import ErrorCodes
from h2.settings import SettingCodes, Settings
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.gh2pair import Raw
from uhppoted_tunnel.transports.grpc.bounds import (
    MAX_FRAME,
    PING_BURST,
    STREAM_BURST,
    STREAMS_PER_CONNECTION,
    FrameGuard,
    H2Failed,
)
from uhppoted_tunnel.core.throttle import TokenBucket
from uhppoted_tunnel.transports.grpc.messages import frames_bytes
from uhppoted_tunnel.transports.grpc.proto import tunnel_pb2


def warned(log):
    """
    :return: the warnings logged, formatted.
    """
    return [event["log_format"].format(**event) for event in log if event["log_level"].name == "warn"]


class HostileTests(SynchronousTestCase):
    """
    What a peer sends past a bound ends its call or connection.
    """

    def setUp(self):
        self.log = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.raw = Raw()
        self.raw.flush()

    def call(self, **kwargs):
        stream_id = self.raw.peer.call(**kwargs)
        self.raw.flush()
        return stream_id

    def send(self, stream_id, data):
        self.raw.peer.conn.send_data(stream_id, data)
        self.raw.flush()

    def trailers(self, stream_id):
        """
        :return: the headers of the trailers-only response or trailers of
            a stream, as a dict.
        """
        for event in self.raw.peer.events:
            if getattr(event, "stream_id", None) == stream_id and type(event).__name__ in (
                    "TrailersReceived", "ResponseReceived") and any(k == b"grpc-status" for k, _ in event.headers):
                return dict(event.headers)
        return None

    def goaway(self):
        [event] = self.raw.peer.of("ConnectionTerminated")
        return event.error_code

    def test_call(self):
        """
        A well-formed call is taken: a connection of the end, which relays
        what it sends.
        """
        stream_id = self.call()
        self.send(stream_id, frames_bytes([(1, b"x")]))
        self.assertEqual(self.raw.server_relay.frames(), [(1, b"x")])
        [response] = self.raw.peer.of("ResponseReceived")
        self.assertEqual(dict(response.headers)[b":status"], b"200")

    def test_oversizedLength(self):
        """
        A message prefix announcing more than --max-payload + 14 bytes ends
        the call from its 5 bytes (RESOURCE_EXHAUSTED), with the warning of
        impossible frames; nothing of it is held.
        """
        stream_id = self.call()
        self.send(stream_id, b"\x00\x7f\xff\xff\xff")
        self.assertEqual(self.trailers(stream_id)[b"grpc-status"], b"8")
        self.assertEqual(self.raw.server_factory.connections, [])
        self.assertTrue(any("a gRPC message of 2147483647 bytes, more than the 1038 allowed" in line
                            for line in warned(self.log)), warned(self.log))

    def test_compressed(self):
        """
        A message flagged compressed ends the call (INTERNAL), warned of.
        """
        stream_id = self.call()
        self.send(stream_id, b"\x01\x00\x00\x00\x00")
        self.assertEqual(self.trailers(stream_id)[b"grpc-status"], b"13")
        self.assertTrue(any("no compression was negotiated" in line for line in warned(self.log)))

    def test_tooManyFrames(self):
        """
        A Frames of 65 frames ends the call, warned of; none of them is
        relayed.
        """
        stream_id = self.call()
        body = tunnel_pb2.Frames(frames=[tunnel_pb2.Frame(id=i) for i in range(65)]).SerializeToString()
        self.send(stream_id, b"\x00" + len(body).to_bytes(4, "big") + body)
        self.assertEqual(self.trailers(stream_id)[b"grpc-status"], b"13")
        self.assertEqual(self.raw.server_relay.frames(), [])
        self.assertTrue(any("a message of 65 frames, more than the 64" in line for line in warned(self.log)))

    def test_rapidReset(self):
        """
        Streams opened and reset faster than any tunnel opens them (a
        rapid-reset flood, CVE-2023-44487) close the connection with
        ENHANCE_YOUR_CALM and a warning.
        """
        conn = self.raw.peer.conn
        for _ in range(STREAM_BURST + 1):
            stream_id = self.raw.peer.call(path=b"/nope")
            conn.reset_stream(stream_id)
            self.raw.flush()
        self.assertEqual(self.goaway(), ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertTrue(self.raw.server.closed)
        self.assertTrue(any("new streams too often" in line for line in warned(self.log)), warned(self.log))

    def test_streamsOverTime(self):
        """
        Streams opened at two a second are within the budget.
        """
        for _ in range(28):
            stream_id = self.raw.peer.call(path=b"/nope")
            self.raw.peer.conn.reset_stream(stream_id)
            self.raw.flush()
            self.raw.clock.advance(0.5)
        self.assertFalse(self.raw.server.closed)

    def test_pingFlood(self):
        """
        Pings far more often than once a second are answered up to the
        burst, then the connection is closed with ENHANCE_YOUR_CALM and a
        warning.
        """
        # the peer's SETTINGS count as a ping
        for i in range(PING_BURST):
            self.raw.peer.conn.ping(i.to_bytes(8, "big"))
            self.raw.flush()
        self.assertLessEqual(len(self.raw.peer.of("PingAckReceived")), PING_BURST)
        self.assertEqual(self.goaway(), ErrorCodes.ENHANCE_YOUR_CALM)
        self.assertTrue(any("PING frames too often" in line for line in warned(self.log)))

    def test_pingsOverTime(self):
        """
        A ping a second is answered, however long it goes on.
        """
        self.call()
        for i in range(3 * PING_BURST):
            self.raw.peer.conn.ping(i.to_bytes(8, "big"))
            self.raw.flush()
            self.raw.clock.advance(1)
        self.assertEqual(len(self.raw.peer.of("PingAckReceived")), 3 * PING_BURST)
        self.assertFalse(self.raw.server.closed)

    def test_garbagePreface(self):
        """
        A client that does not start with the HTTP/2 preface gets a GOAWAY
        and is closed, warned of in words, with no traceback.
        """
        raw = Raw()
        raw.peer.conn.data_to_send()
        raw.server.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(raw.server_transport.disconnecting)
        self.assertTrue(any("HTTP/2 protocol error" in line for line in warned(self.log)), warned(self.log))
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_afterGoAway(self):
        """
        Once this end has sent GOAWAY and is closing, what the peer still
        sends (over TLS the socket is read until the peer's close_notify)
        is not read: no warning of a protocol error for a connection ending
        as it should.
        """
        self.raw.server.goAway()
        self.raw.peer.conn.ping(b"12345678")
        self.raw.server.dataReceived(self.raw.peer.conn.data_to_send())
        self.assertEqual(warned(self.log), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_stateMachineInWords(self):
        """
        h2's refusal of a frame its state machine does not allow is warned
        of in words, not in the names of h2's own enumerations; its other
        messages are given as they are.
        """
        self.assertEqual(
            str(H2Failed("Invalid input ConnectionInputs.RECV_PING in state ConnectionState.CLOSED")),
            "HTTP/2 protocol error: a PING frame received while the connection is closed")
        self.assertEqual(
            str(H2Failed("Invalid input StreamInputs.SEND_WINDOW_UPDATE in state StreamState.HALF_CLOSED_REMOTE")),
            "HTTP/2 protocol error: a WINDOW UPDATE frame to send while the stream is half closed remote")
        self.assertEqual(str(H2Failed("Invalid HTTP/2 preamble.")), "HTTP/2 protocol error: Invalid HTTP/2 preamble.")

    def test_frameTooLong(self):
        """
        A frame announced longer than 16 KiB closes the connection from its
        header, before any of it is held.
        """
        self.raw.server.dataReceived(b"\x7f\xff\xff\x00\x00\x00\x00\x00\x01")
        self.assertTrue(self.raw.server.closed or self.raw.server_transport.disconnecting)
        self.assertTrue(any("a frame of 8388607 bytes, more than the 16384" in line for line in warned(self.log)))

    def test_headerList(self):
        """
        A header list over 8 KiB closes the connection.
        """
        stream_id = self.raw.peer.conn.get_next_available_stream_id()
        self.raw.peer.conn.send_headers(stream_id, [(b":method", b"POST"), (b":scheme", b"http"),
                                                   (b":path", b"/uhppoted.tunnel.Tunnel/Relays"),
                                                   (b":authority", b"x"), (b"x-big", b"y" * 9000)])
        self.raw.flush()
        self.assertTrue(self.raw.server.closed)
        self.assertEqual(self.raw.server_factory.connections, [])

    def test_concurrentStreams(self):
        """
        More calls at once than SETTINGS_MAX_CONCURRENT_STREAMS close the
        connection.
        """
        conn = self.raw.peer.conn
        # the peer ignores what the server announced
        conn.remote_settings = Settings(client=False, initial_values={SettingCodes.MAX_CONCURRENT_STREAMS: 100})
        for _ in range(STREAMS_PER_CONNECTION + 1):
            self.raw.peer.call()
        self.raw.flush()
        self.assertTrue(self.raw.server.closed)
        self.assertLessEqual(len(self.raw.server_factory.connections), STREAMS_PER_CONNECTION)

    def test_window(self):
        """
        A peer that sends past the window this end gave it is closed
        (FLOW_CONTROL_ERROR), so what one connection holds is bounded;
        data consumed is acknowledged, so a peer within it goes on.
        """
        stream_id = self.call()
        message = frames_bytes([(1, b"x" * 1000)])
        for _ in range(200):
            self.send(stream_id, message)
        self.assertEqual(len(self.raw.server_relay.frames()), 200)
        self.assertFalse(self.raw.server.closed)
        # now past the window: h2 on the peer's side is told it is larger
        conn = self.raw.peer.conn
        conn.outbound_flow_control_window = 1 << 20
        conn.streams[stream_id].outbound_flow_control_window = 1 << 20
        for _ in range(70):
            conn.send_data(stream_id, message)
        self.raw.flush()
        self.assertTrue(self.raw.server.closed)

    def test_badPath(self):
        """
        A call of another path is answered UNIMPLEMENTED; another content
        type HTTP 415; both warned of; no connection is made.
        """
        stream_id = self.call(path=b"/other.Service/Method")
        self.assertEqual(self.trailers(stream_id)[b"grpc-status"], b"12")
        stream_id = self.call(content_type=b"application/json")
        [refused] = [event for event in self.raw.peer.of("ResponseReceived") if event.stream_id == stream_id]
        self.assertEqual(dict(refused.headers)[b":status"], b"415")
        self.assertEqual(self.raw.server_factory.connections, [])
        self.assertTrue(any("refused a call" in line or "refused 2 calls" in line for line in warned(self.log)))

    def test_noCall(self):
        """
        A connection that starts no call within --handshake-timeout is
        closed, warned of.
        """
        self.raw.clock.advance(15)
        self.assertTrue(self.raw.server_transport.disconnecting)
        self.assertTrue(any("started no call within 15s" in line for line in warned(self.log)))


class BoundTests(SynchronousTestCase):
    """
    The bounds' own pieces.
    """

    def test_guardSplit(self):
        """
        The frame guard follows frames split anywhere, and refuses a long
        one once its 3 length bytes have come.
        """
        frame = (100).to_bytes(3, "big") + bytes(6) + bytes(100)
        data = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + frame * 3 + (MAX_FRAME + 1).to_bytes(3, "big") + bytes(6)
        for cut in (1, 7, 30, 40, len(data) - 2):
            guard = FrameGuard(server=True)
            guard.check(data[:cut]) if cut < len(data) - 9 else None
            self.assertRaises(H2Failed, lambda: (guard.check(data[:cut]) if cut >= len(data) - 9 else None,
                                                 guard.check(data[cut:])))

    def test_budget(self):
        """
        A budget (the project's token bucket, as the ends use it) takes its
        burst at once, then its rate.
        """
        from twisted.internet.task import Clock

        clock = Clock()
        budget = TokenBucket(1.0, 3, clock.seconds)
        self.assertEqual([budget.take() for _ in range(4)], [True, True, True, False])
        clock.advance(1)
        self.assertEqual([budget.take(), budget.take()], [True, False])
