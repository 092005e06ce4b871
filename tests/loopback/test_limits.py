# -*- test-case-name: tests.loopback.test_limits -*-
"""
Slow and greedy clients of the HTTP ends, for real: tunnels on 127.0.0.1 in
this process and raw TCP clients (some bound to 127.0.0.2, another
loopback source) that drip a request a byte at a time, never speak, never
finish a TLS handshake, or open more connections than the caps allow.

Nothing sleeps: a dripping client writes on a L{LoopingCall} (that is its
behaviour, not a wait), and every test waits for a close, an answer or a
log line, with a deadline.
"""

from twisted.internet import reactor
from twisted.internet.defer import (
    Deferred,
    DeferredList,
    gatherResults,
    inlineCallbacks,
)
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.logger import formatEvent
from twisted.trial.unittest import TestCase
from uhppoted import decode, encode

from tests.loopback.test_http import TunnelMixin
from tests.loopback.test_https import HTTPSTunnelMixin
from uhppoted_tunnel import emulator

SERIALS = emulator.DEFAULT_SERIALS

#: A whole request, for the drip.
REQUEST = (b"POST /udp/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           b"Content-Length: 40\r\n\r\n" + b'{"ID": 1, "wait": false, "request": [1]}')

#: Slack on top of a deadline for a busy 2-core machine.
SLACK = 3.0


class Client(Protocol):
    """
    A raw TCP client: writes what it is told, records what comes back and
    when the server closed.

    :ivar made: fires when connected.
    :ivar lost: fires with the seconds the connection lasted.
    """

    def __init__(self, drip=None, interval=0.2, first=b""):
        """
        :param drip: bytes to send one at a time, every C{interval}
            seconds, from the moment of connecting.
        :param first: bytes to send at once on connecting, before the drip.
        """
        self.first = first
        self.drip = drip
        self.interval = interval
        self.received = []
        self.made = Deferred()
        self.lost = Deferred()
        self.sent = 0
        self._loop = None

    def connectionMade(self):
        self.started = reactor.seconds()
        self.local = self.transport.getHost()
        if self.first:
            self.transport.write(self.first)
        if self.drip:
            self._loop = LoopingCall(self._dripOne)
            self._loop.start(self.interval)
        self.made.callback(self)

    def _dripOne(self):
        if self.sent < len(self.drip):
            self.transport.write(self.drip[self.sent:self.sent + 1])
            self.sent += 1

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self.lost.callback(reactor.seconds() - self.started)

    def text(self):
        return b"".join(self.received)


class LimitsMixin:
    """
    Opens raw clients against the end, closing them at cleanup.
    """

    @inlineCallbacks
    def connect(self, client=None, source="127.0.0.1"):
        client = client or Client()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=(source, 0))
        yield connectProtocol(endpoint, client)
        self.addCleanup(self.close, client)
        return client

    def close(self, client):
        if client.transport is not None and not client.lost.called:
            client.transport.abortConnection()
            return client.lost

    @inlineCallbacks
    def assertClosedWithin(self, client, seconds):
        """
        The server closes C{client} within C{seconds} (plus L{SLACK}).
        """
        timer = reactor.callLater(seconds + SLACK, client.transport.abortConnection)
        lasted = yield client.lost
        self.assertTrue(timer.active(), "the connection was still open after {}s".format(seconds + SLACK))
        timer.cancel()
        return lasted


class RequestDeadlineTests(LimitsMixin, TunnelMixin, TestCase):
    """
    C{--http-request-timeout} bounds the whole request head and body.
    """

    @inlineCallbacks
    def test_dripFedRequestClosed(self):
        """
        A request dripped one byte every 0.2 s (each byte would reset an
        idle timeout) is answered 408 and closed once 1 s has passed since
        the connection was made, with a warning naming the flag; the drip
        would have taken 40 s.
        """
        yield self.tunnel("--http-request-timeout", "1s")
        client = yield self.connect(Client(drip=REQUEST))
        lasted = yield self.assertClosedWithin(client, 1.0)
        self.assertGreaterEqual(lasted, 0.9)
        self.assertLess(client.sent, len(REQUEST))
        self.assertTrue(client.text().startswith(b"HTTP/1.1 408 "), client.text())
        self.assertIn(b"X-Content-Type-Options: nosniff", client.text())
        event = yield self.log.waitFor("--http-request-timeout", reactor)
        self.assertEqual(event["log_level"].name, "warn")
        self.assertIn("127.0.0.1:", event["peer"])

    @inlineCallbacks
    def test_dripFedBodyClosed(self):
        """
        The deadline covers the body too: a head sent at once and a body
        dripped is closed at the deadline.
        """
        yield self.tunnel("--http-request-timeout", "1s")
        head, body = REQUEST.split(b"\r\n\r\n")
        client = yield self.connect(Client(first=head + b"\r\n\r\n", drip=body, interval=0.2))
        yield self.assertClosedWithin(client, 1.0)
        self.assertLess(client.sent, len(body))
        self.assertTrue(client.text().startswith(b"HTTP/1.1 408 "), client.text())

    @inlineCallbacks
    def test_silentConnectionClosed(self):
        """
        A connection that never sends a byte is closed at the deadline.
        """
        yield self.tunnel("--http-request-timeout", "1s")
        client = yield self.connect()
        yield self.assertClosedWithin(client, 1.0)

    @inlineCallbacks
    def test_dripAfterKeepAlive(self):
        """
        On a keep-alive connection, a second request dripped after a good
        one is closed at its own deadline.
        """
        yield self.tunnel("--http-request-timeout", "1s")
        client = yield self.connect(Client(first=REQUEST, drip=REQUEST, interval=0.3))
        yield self.assertClosedWithin(client, 1.0)
        self.assertIn(b"HTTP/1.1 200 OK", client.text())
        self.assertIn(b"HTTP/1.1 408 ", client.text())

    @inlineCallbacks
    def test_slowAnswerNotCut(self):
        """
        The deadline is on receiving the request, not on answering it: a
        broadcast that collects replies for longer than the deadline is
        answered in full.
        """
        yield self.tunnel("--http-request-timeout", "1s")
        response, answer = yield self.post("/udp/broadcast", {"ID": 2, "wait": "1500ms", "request": list(
            encode.get_controller_request(0))})
        self.assertEqual(response.code, 200)
        self.assertEqual(sorted(decode.get_controller_response(bytes(r)).controller for r in answer["replies"]),
                         sorted(SERIALS))

    @inlineCallbacks
    def test_slowlorisDoesNotLockOut(self):
        """
        Forty dripping connections from one source, more than its cap
        allows, leave a normal client from another source served at once,
        and are all closed by the deadline.
        """
        yield self.tunnel("--http-request-timeout", "2s", "--max-connections-per-source", "20")
        clients = []
        for _ in range(40):
            clients.append((yield self.connect(Client(drip=REQUEST, interval=0.5))))
        good = yield self.connect(Client(drip=b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                         interval=0.0001), source="127.0.0.2")
        yield self.assertClosedWithin(good, 1.0)
        self.assertIn(b"HTTP/1.1 200 OK", good.text())
        self.assertTrue(good.text().endswith(b"hello"))
        yield gatherResults([self.assertClosedWithin(client, 2.0) for client in clients])
        yield self.log.waitFor("--max-connections-per-source", reactor)
        # twenty closed by the deadline, twenty refused: a line or two each
        for flag in ("--http-request-timeout", "--max-connections-per-source"):
            lines = [m for m in self.log.messages() if flag in m]
            self.assertTrue(1 <= len(lines) <= 2, lines)


class HandshakeDeadlineTests(LimitsMixin, HTTPSTunnelMixin, TestCase):
    """
    C{--handshake-timeout} covers the C{https/} handshake.
    """

    @inlineCallbacks
    def test_silentClientClosed(self):
        """
        A TCP client that never starts its TLS handshake is closed once
        C{--handshake-timeout} has passed, with a warning naming the flag.
        """
        yield self.tunnel("--handshake-timeout", "1s", "--http-request-timeout", "30s")
        client = yield self.connect()
        lasted = yield self.assertClosedWithin(client, 1.0)
        self.assertGreaterEqual(lasted, 0.9)
        event = yield self.log.waitFor("--handshake-timeout", reactor)
        self.assertEqual(event["log_level"].name, "warn")

    @inlineCallbacks
    def test_dripFedHandshakeClosed(self):
        """
        A ClientHello dripped a byte at a time is closed the same way.
        """
        yield self.tunnel("--handshake-timeout", "1s", "--http-request-timeout", "30s")
        hello = bytes.fromhex("16030100c4010000c00303") + bytes(200)
        client = yield self.connect(Client(drip=hello, interval=0.1))
        yield self.assertClosedWithin(client, 1.0)

    @inlineCallbacks
    def test_plainHTTPToHTTPSWarned(self):
        """
        A failed handshake (plain HTTP sent to https/) is logged as a
        warning saying why (it used to be silent).
        """
        yield self.tunnel()
        client = yield self.connect(Client(drip=b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", interval=0.0001))
        yield self.assertClosedWithin(client, 1.0)
        event = yield self.log.waitFor("TLS handshake with", reactor)
        self.assertIn("failed", formatEvent(event))
        self.assertEqual(event["log_level"].name, "warn")


class ConnectionCapTests(LimitsMixin, TunnelMixin, TestCase):
    """
    C{--max-connections} and C{--max-connections-per-source} refuse
    connections over the caps at once, and say so in a throttled warning.
    """

    @inlineCallbacks
    def test_maxConnections(self):
        """
        With three connections open, a fourth is closed at once without an
        answer and the warning names the cap and the peer; once one
        closes, a new connection is served.
        """
        yield self.tunnel("--max-connections", "3", "--http-request-timeout", "30s")
        held = []
        for _ in range(3):
            held.append((yield self.connect()))
        extra = yield self.connect()
        yield self.assertClosedWithin(extra, 0.0)
        self.assertEqual(extra.text(), b"")
        event = yield self.log.waitFor("--max-connections;", reactor)
        self.assertEqual(event["log_level"].name, "warn")
        self.assertEqual(event["peer"], "127.0.0.1:{}".format(extra.local.port))
        self.assertEqual(event["limit"], 3)
        held[0].transport.loseConnection()
        yield held[0].lost
        code, content = yield self.get("/hello.txt")
        self.assertEqual((code, content), (200, b"hello"))

    @inlineCallbacks
    def test_perSource(self):
        """
        With a source at its cap, another of its connections is refused
        while another source is served.
        """
        yield self.tunnel("--max-connections-per-source", "2", "--http-request-timeout", "30s")
        for _ in range(2):
            yield self.connect()
        extra = yield self.connect()
        yield self.assertClosedWithin(extra, 0.0)
        event = yield self.log.waitFor("--max-connections-per-source", reactor)
        self.assertIn("from 127.0.0.1", event["what"])
        other = yield self.connect(Client(drip=b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                          interval=0.0001), source="127.0.0.2")
        yield self.assertClosedWithin(other, 1.0)
        self.assertTrue(other.text().endswith(b"hello"), other.text())

    @inlineCallbacks
    def test_warningThrottled(self):
        """
        Fifty refused connections make one warning at once, and the rest
        are counted into at most one more.
        """
        yield self.tunnel("--max-connections", "1", "--http-request-timeout", "30s")
        yield self.connect()
        refused = []
        for _ in range(50):
            refused.append((yield self.connect()))
        yield DeferredList([client.lost for client in refused])
        warnings = [m for m in self.log.messages() if "--max-connections;" in m]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("refused 1 connection(s)", warnings[0])


class DripFeedMakeRoomTests(LimitsMixin, TunnelMixin, TestCase):
    """
    An end full of drip-feeding connections that never finish a request,
    reopened as they are closed, still serves normal requests: each makes
    room by closing the oldest connection past its probation, and the log
    says so.
    """

    @inlineCallbacks
    def test_dripFeedersDoNotStarve(self):
        """
        Drip-feeders from 5 addresses fill --max-connections 20 and are
        reopened as they close; nine of ten normal requests from another
        address, one every half second, are answered.
        """
        yield self.tunnel("--max-connections", "20", "--max-connections-per-source", "8",
                          "--http-request-timeout", "4s", "--connection-probation", "1s")
        sources = ["127.0.0.{}".format(n) for n in range(2, 7)]
        running = [True]
        later = []

        def stop():
            running[0] = False
            for call in later:
                if call.active():
                    call.cancel()

        self.addCleanup(stop)

        def reopen(_, source):
            # a moment later, as a flooder in another process would: a
            # refused one reopened at once would spin this process
            if running[0]:
                later.append(reactor.callLater(0.2, lambda: running[0] and dripper(source)))

        def dripper(source):
            client = Client(drip=REQUEST, interval=0.5)
            endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, bindAddress=(source, 0))
            connectProtocol(endpoint, client).addCallbacks(lambda _: client.lost.addCallback(reopen, source),
                                                           lambda _: reopen(None, source))
            self.addCleanup(self.close, client)

        for source in sources:
            for _ in range(8):
                dripper(source)
        yield self.log.waitFor("--max-connections;", reactor)
        yield deferLater(reactor, 1.5, lambda: None)
        answered = 0
        for _ in range(10):
            good = yield self.connect(Client(drip=b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                             interval=0.0001), source="127.0.0.9")
            timer = reactor.callLater(2.0, good.transport.abortConnection)
            yield good.lost
            if timer.active():
                timer.cancel()
            answered += good.text().endswith(b"hello")
            yield deferLater(reactor, 0.5, lambda: None)
        stop()
        self.assertGreaterEqual(answered, 9, "\n".join(m for m in self.log.messages() if "factory" not in m))
        yield self.log.waitFor("--connection-probation", reactor)


class HTTPSConnectionCapTests(LimitsMixin, HTTPSTunnelMixin, TestCase):
    """
    The caps apply to C{https/} before any TLS.
    """

    @inlineCallbacks
    def test_maxConnections(self):
        """
        Over the cap, a connection is closed before its handshake.
        """
        yield self.tunnel("--max-connections", "1")
        yield self.connect()
        extra = yield self.connect()
        yield self.assertClosedWithin(extra, 0.0)
        self.assertEqual(extra.text(), b"")
        yield self.log.waitFor("--max-connections;", reactor)
