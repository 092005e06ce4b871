"""
Tests for the gRPC ends' HTTP/2 calls (L{uhppoted_tunnel.transports.grpc.h2conn},
L{uhppoted_tunnel.transports.grpc.call}, L{uhppoted_tunnel.transports.grpc.server},
L{uhppoted_tunnel.transports.grpc.client}): a server end's connection and a
client end's attempt joined by iosim on a fake clock, with no socket.
"""

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests.unit.gh2pair import CLIENT, Pair
from uhppoted_tunnel.interfaces import IFrameConnection
from uhppoted_tunnel.link.limits import limit_connections
from uhppoted_tunnel.transports.grpc.call import StallTimeout
from uhppoted_tunnel.transports.grpc.client import DialFailed, GRPCClientEndpoint, dial_error
from uhppoted_tunnel.transports.grpc.bounds import PingTimeout, keepalive
from uhppoted_tunnel.transports.grpc.messages import MessageDecoder
from uhppoted_tunnel.transports.grpc.server import PATHS, ServerProtocol, percent_encoded
from uhppoted_tunnel.transports.tls.handshake import HandshakeFailed

REQUEST = b"\x17\x94" + bytes(62)


def messages(data):
    """
    :return: how many gRPC messages C{data} holds.
    """
    count = at = 0
    while at < len(data):
        at += 5 + int.from_bytes(data[at + 1:at + 5], "big")
        count += 1
    return count


class LinkTests(SynchronousTestCase):
    """
    A call is a link: made once the server answers it, frames both ways,
    one message a turn, and a clean end.
    """

    def test_made(self):
        """
        The client's attempt fires with its connection once the server has
        taken the call (Relays); each side's connection is an
        L{IFrameConnection}, ready with its end's factory, named by its
        peer.
        """
        pair = Pair()
        pair.flush()
        [protocol] = pair.outcome
        server, client = pair.connections()
        self.assertIs(protocol, client)
        for connection in (server, client):
            verifyObject(IFrameConnection, connection)
        self.assertTrue(client.call.batched and server.call.batched)
        self.assertEqual((server.peer, client.peer), ("127.0.0.1:50000", "127.0.0.1:4000"))

    def test_frames(self):
        """
        Frames go both ways, each with its id, in order.
        """
        pair = Pair()
        pair.flush()
        server, client = pair.connections()
        self.assertTrue(client.sendFrame(1, REQUEST))
        self.assertTrue(client.sendFrame(2, b""))
        pair.flush()
        self.assertEqual(pair.server_relay.frames(), [(1, REQUEST), (2, b"")])
        server.sendFrame(1, b"reply")
        pair.flush()
        self.assertEqual(pair.client_relay.frames(), [(1, b"reply")])

    def test_oneMessageATurn(self):
        """
        The frames queued in one turn are packed as one Frames message (as
        many as fit in --max-payload + 14 bytes and 64 frames; more
        messages past that).
        """
        pair = Pair({"max-send-queue": 1 << 16})
        pair.flush()
        server, client = pair.connections()
        call = client.call
        for i in range(3):
            client.sendFrame(i, REQUEST)
        call.pack()
        decoder = MessageDecoder(1024, True)
        self.assertEqual(call.waiting[1:5], (len(call.waiting) - 5).to_bytes(4, "big"))
        self.assertEqual(len(decoder.feed(call.waiting)), 3)
        call.waiting = b""
        for i in range(20):
            client.sendFrame(i, REQUEST)
        call.pack()
        self.assertEqual(len(MessageDecoder(1024, True).feed(call.waiting)), 20)
        self.assertEqual(messages(call.waiting), 2)

    def test_sentAtTurnEnd(self):
        """
        Nothing is written until the turn ends; then one write carries
        the turn's frames.
        """
        pair = Pair()
        pair.flush()
        server, client = pair.connections()
        written = len(pair.client_transport.stream)
        client.sendFrame(1, REQUEST)
        client.sendFrame(2, REQUEST)
        self.assertEqual(len(pair.client_transport.stream), written)
        pair.clock.advance(0)
        self.assertEqual(len(pair.client_transport.stream), written + 1)

    def test_close(self):
        """
        A client end that closes its connection ends its side of the call;
        the server ends the call with status 0; both connections close
        cleanly and so does the HTTP/2 connection.
        """
        pair = Pair()
        pair.flush()
        server, client = pair.connections()
        closed = []
        client.whenClosed().addCallback(closed.append)
        server.whenClosed().addCallback(closed.append)
        client.sendFrame(1, REQUEST)
        client.close()
        pair.flush()
        self.assertEqual(pair.server_relay.frames(), [(1, REQUEST)])
        self.assertEqual(closed, [None, None])
        self.assertEqual((pair.server_factory.connections, pair.client_factory.connections), ([], []))
        self.assertTrue(pair.server.closed and pair.client.closed)

    def test_serverCloses(self):
        """
        A server end that closes the call ends it with status 0: the
        client's connection closes cleanly.
        """
        pair = Pair()
        pair.flush()
        server, client = pair.connections()
        reasons = []
        pair.client_factory.closed = lambda connection, reason: reasons.append(reason)
        server.close()
        pair.flush()
        self.assertEqual(len(reasons), 1)
        self.assertTrue(reasons[0].check(ConnectionDone))

    def test_relayFallback(self):
        """
        A server that answers Relays with UNIMPLEMENTED (one from before
        Relays) is called again with Relay: the link is made, and each
        message carries one Frame.
        """

        class OldServer(ServerProtocol):
            def on_RequestReceived(self, event):
                headers = dict(event.headers)
                if headers[b":path"].endswith(b"/Relays"):
                    self.openedStream()
                    self.refuse(event.stream_id, 12, "unknown method")
                    return
                ServerProtocol.on_RequestReceived(self, event)

        pair = Pair(server_class=OldServer)
        pair.flush()
        server, client = pair.connections()
        self.assertFalse(client.call.batched or server.call.batched)
        client.sendFrame(5, REQUEST)
        pair.flush()
        self.assertEqual(pair.server_relay.frames(), [(5, REQUEST)])


class RefusalTests(SynchronousTestCase):
    """
    An attempt that cannot have its link fails, saying why in the words
    the howto lists.
    """

    def test_tooMany(self):
        """
        A call over --max-connections is answered RESOURCE_EXHAUSTED: the
        client is told "the server refused the link: too many
        connections"; the server's caps warn.
        """
        pair = Pair()
        capped = limit_connections(pair.server_factory, dict(pair.settings, **{"max-connections": 0}), pair.clock,
                                   "GRPC")
        capped.limits.max_connections = 0
        pair.servers.wrapped = capped
        pair.flush()
        [failure] = pair.outcome
        self.assertEqual(failure.getErrorMessage(), "the server refused the link: too many connections")
        self.assertEqual(pair.server_factory.connections, [])

    def test_withoutRelay(self):
        """
        A gRPC server that serves neither method: "is a gRPC server without
        /uhppoted.tunnel.Tunnel/Relay".
        """
        paths = dict(PATHS)
        PATHS.clear()
        self.addCleanup(PATHS.update, paths)
        pair = Pair()
        pair.flush()
        [failure] = pair.outcome
        self.assertEqual(failure.getErrorMessage(), "127.0.0.1:4000 is a gRPC server without "
                                                    "/uhppoted.tunnel.Tunnel/Relay (is it a tunnel's grpc/ end?)")

    def test_closedSilently(self):
        """
        A server that closes the connection without a byte of HTTP/2 is no
        gRPC server, or wants TLS.
        """
        pair = Pair()
        # a tcp/ end, which says nothing and closes
        del pair.server_transport.stream[:]
        pair.server_transport.loseConnection()
        pair.flush()
        [failure] = pair.outcome
        self.assertTrue(failure.check(DialFailed))
        self.assertEqual(failure.getErrorMessage(), "the server closed the connection during the HTTP/2 handshake: "
                                                    "127.0.0.1:4000 is not a gRPC server (a tcp/ or tls/ end?), or "
                                                    "it wants TLS (grpcs/)")

    def test_noAnswer(self):
        """
        A server that says nothing within the dial timeout: the attempt
        fails, and its connection is dropped.
        """
        pair = Pair()
        pair.clock.advance(5)
        [failure] = pair.outcome
        self.assertEqual(failure.getErrorMessage(), "no answer within 5s: is 127.0.0.1:4000 a gRPC server?")
        self.assertTrue(pair.client_transport.disconnecting)

    def test_garbage(self):
        """
        A server that answers with something other than HTTP/2: "no HTTP/2
        answer", and no traceback.
        """
        pair = Pair()
        pair.client.dataReceived(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        pair.flush()
        [failure] = pair.outcome
        self.assertIn("no HTTP/2 answer from 127.0.0.1:4000: is it a gRPC server?", failure.getErrorMessage())
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_dialErrors(self):
        """
        A refused connection and a failed TLS handshake are said as the
        howto says them; anything else is left as it is.
        """
        from twisted.internet.error import ConnectionRefusedError

        self.assertEqual(dial_error(Failure(ConnectionRefusedError())).getErrorMessage(), "connection refused")
        self.assertEqual(dial_error(Failure(HandshakeFailed("certificate verify failed"))).getErrorMessage(),
                         "TLS handshake failed: certificate verify failed")
        other = Failure(ValueError("x"))
        self.assertIs(dial_error(other), other)

    def test_endpointInterfaces(self):
        """
        The client endpoint is a stream client endpoint.
        """
        from twisted.internet.interfaces import IStreamClientEndpoint

        from uhppoted_tunnel.interfaces import ICountingEndpoint

        endpoint = GRPCClientEndpoint(None, "::1", 4000, Pair().settings, None, "GRPC", 5.0)
        verifyObject(IStreamClientEndpoint, endpoint)
        verifyObject(ICountingEndpoint, endpoint)
        self.assertEqual(endpoint.address, "[::1]:4000")


class FlowTests(SynchronousTestCase):
    """
    Flow control out, the stall timeout and keepalive pings.
    """

    def test_paused(self):
        """
        While the socket's buffer is full, a frame is dropped and counted;
        once it drains, frames go again.
        """
        pair = Pair()
        pair.flush()
        server, client = pair.connections()
        pair.server.pauseProducing()
        self.assertFalse(server.sendFrame(1, REQUEST))
        self.assertEqual(pair.server_factory.dropped, 1)
        pair.server.resumeProducing()
        self.assertTrue(server.sendFrame(1, REQUEST))

    def test_sendQueue(self):
        """
        Frames past --max-send-queue (queued this turn and waiting for the
        peer's window) are dropped.
        """
        pair = Pair()
        pair.flush()
        server, client = pair.connections()
        sent = [server.sendFrame(i, REQUEST) for i in range(5)]
        self.assertEqual(sent, [True] * 4 + [False])
        self.assertEqual(pair.server_factory.dropped, 1)

    def test_windowWaits(self):
        """
        What the peer's window does not take waits, counted against
        --max-send-queue, and goes once the peer takes data.
        """
        pair = Pair({"max-send-queue": 1 << 20, "max-payload": 60000})
        pair.flush()
        server, client = pair.connections()
        # the client takes nothing: nothing it is sent is acknowledged
        pair.pump.clientIO.pauseProducing = None
        payload = b"x" * 50000
        for i in range(3):
            server.sendFrame(i, payload)
        pair.clock.advance(0)
        self.assertGreater(len(server.call.waiting), 0)
        pair.flush()
        self.assertEqual([frame_id for frame_id, _ in pair.client_relay.frames()], [0, 1, 2])
        self.assertEqual(server.call.waiting, b"")

    def test_stalled(self):
        """
        A peer that takes nothing for --stall-timeout has its call ended,
        with the stall warning.
        """
        pair = Pair({"stall-timeout": 2.0})
        pair.flush()
        server, client = pair.connections()
        reasons = []
        pair.server_factory.closed = lambda connection, reason: reasons.append(reason)
        pair.server.pauseProducing()
        pair.clock.advance(2)
        self.assertTrue(reasons[0].check(StallTimeout))
        self.assertTrue(pair.server_transport.disconnecting)

    def test_keepalive(self):
        """
        Pings go every 15 s (half --dead-peer-timeout if shorter, never
        more than once a second); one unanswered for the rest of the
        timeout ends the call.
        """
        self.assertEqual(keepalive(60), (15.0, 45.0))
        self.assertEqual(keepalive(4), (2.0, 2.0))
        self.assertEqual(keepalive(1)[0], 1.0)
        pair = Pair({"dead-peer-timeout": 4.0})
        pair.flush()
        server, client = pair.connections()
        reasons = []
        pair.client_factory.closed = lambda connection, reason: reasons.append(reason)
        pair.clock.advance(2)
        pair.flush()
        pair.clock.advance(2)
        self.assertEqual(reasons, [])
        # the server stops answering
        pair.server.dataReceived = lambda data: None
        pair.clock.advance(2)
        pair.clock.advance(2)
        self.assertTrue(reasons[0].check(PingTimeout))
        self.assertIn("no answer to a keepalive ping within 4s", reasons[0].getErrorMessage())


class StatusTests(SynchronousTestCase):
    """
    What the server's trailers say.
    """

    def test_percentEncoded(self):
        """
        grpc-message is percent-encoded outside printable ASCII, and % too.
        """
        self.assertEqual(percent_encoded("too many connections"), b"too many connections")
        self.assertEqual(percent_encoded("50% \u00e9\n"), b"50%25 %C3%A9%0A")

    def test_addresses(self):
        """
        A call's addresses are the connection's.
        """
        pair = Pair()
        pair.flush()
        server, client = pair.connections()
        self.assertEqual(server.call.getPeer(), CLIENT)


class VanishTests(SynchronousTestCase):
    """
    A peer that vanishes leaves nothing behind.
    """

    def test_midMessage(self):
        """
        A client that vanishes halfway through a message: the server's call
        ends, its connection closes, the half message is let go, and no
        timer is left (keepalive, stall, handshake).
        """
        pair = Pair()
        pair.flush()
        server, client = pair.connections()
        call = server.call
        message = b"\x00\x00\x00\x00\x50" + bytes(20)
        pair.client.conn.send_data(client.call.stream_id, message)
        pair.client_transport.write(pair.client.conn.data_to_send())
        pair.flush()
        self.assertEqual(call.decoder.buffered, 20)
        pair.client_transport.abortConnection()
        pair.flush()
        self.assertTrue(call.disconnected)
        self.assertEqual((pair.server_factory.connections, pair.client_factory.connections), ([], []))
        self.assertEqual(pair.server.calls, {})
        self.assertEqual(pair.servers.open, set())
        self.assertEqual(pair.clock.getDelayedCalls(), [])
