# -*- test-case-name: tests.loopback.test_websocket -*-
"""
The WebSocket ends for real: C{ws/} and C{wss/} pairs of real
C{uhppoted-tunnel} processes on 127.0.0.1 carrying the C{uhppoted}
client's requests both ways, an event tunnel over C{wss/} across a restart
of the host half, the host behind a real reverse proxy terminating TLS
(Debian's haproxy), and what a ws/ server refuses, seen from a raw socket.

Every port is chosen by the system and read back from a log line; each
step waits, with a deadline, for a line, an exit or a reply.
"""

import datetime
import os
import struct

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectError
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from tests import certs
from tests.loopback.processes import (
    DEADLINE,
    LOOPBACK,
    Client,
    WaitTimeout,
    emulator_sent_line,
    free_port,
    listening_line,
    run_tunnel,
    spawn,
    start_emulator,
    start_event_emulator,
    stop,
    workdir,
)
from tests.loopback.eventpairs import COUNT, EventTunnels
from tests.tools import require
from uhppoted_tunnel.core.frames import encode

A = 405419896
B = 303986753
TOKEN = "6b1f0c3e9a7d4b2f8e5a1c0d7b3f9e2a"
KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def listening(kind):
    """
    :param kind: C{"ws"} or C{"wss"}.
    :return: a regex for the line a server end logs once it listens
        (group 1: the port).
    """
    return r"\b" + kind.upper() + r"\s+listening on 127\.0\.0\.1:(\d+)\s*$"


def connected(kind, peer=r"127\.0\.0\.1:\d+"):
    """
    :return: a regex for the line an end logs once the upgrade is done.
    """
    return r"\b" + kind.upper() + r"\s+connected to " + peer + r"\s*$"


def certificates(testcase):
    files = getattr(testcase, "_certs", None)
    if files is None:
        files = testcase._certs = certs.make(os.path.join(workdir(testcase), "certs"))
    return files


def tls_flags(testcase, role, client_auth=False):
    """
    The certificate flags of a half: C{role} is C{"server"} or C{"client"}.
    """
    files = certificates(testcase)
    cert, key = files[role]
    return ["--ca-cert", files["ca"][0], "--cert", cert, "--key", key] + (["--client-auth"] if client_auth else [])


def token_file(testcase, name, token=TOKEN):
    path = os.path.join(workdir(testcase), name)
    with open(path, "w") as f:
        f.write(token + "\n")
    os.chmod(path, 0o600)
    return path


def assertNoWarnings(testcase, *halves):
    for half in halves:
        testcase.assertNotRegex(half.output(), r"\b(WARN|ERROR)\s", half.recent())
        testcase.assertNotIn("Traceback", half.output())


class _Requests:
    """
    The uhppoted client's requests through a pair: discovery of both
    controllers, get-time from each, a card written to one and read back.
    """

    timeout = 120

    @inlineCallbacks
    def assertRequests(self, client):
        replies = yield client.get_all_controllers()
        self.assertEqual(sorted(reply.controller for reply in replies), sorted([A, B]))
        for serial in (A, B):
            now = yield client.get_time(serial)
            self.assertEqual(now.controller, serial)
            self.assertLess(abs((now.datetime - datetime.datetime.now()).total_seconds()), 60)
        start, end = datetime.date(2025, 1, 1), datetime.date(2026, 12, 31)
        stored = yield client.put_card(A, 10058400, start, end, (1, 1, 0, 0), 4321)
        self.assertEqual((stored.controller, stored.stored), (A, True))
        card = yield client.get_card(A, 10058400)
        self.assertEqual((card.controller, card.card_number, card.start_date, card.end_date, card.door_1,
                          card.pin), (A, 10058400, start, end, 1, 4321))
        other = yield client.get_card(B, 10058400)
        self.assertEqual(other.card_number, 0)


class PairTests(_Requests, TestCase):
    """
    ws/ and wss/ pairs, the site dialling the host (forward) or the host
    dialling the site (reverse), on a path of their own.
    """

    @inlineCallbacks
    def pair(self, kind, reverse):
        secure = kind == "wss"
        server_flags = tls_flags(self, "server", client_auth=True) if secure else []
        client_flags = tls_flags(self, "client") if secure else []
        emulator, emulator_port = yield start_emulator(self, A, B)
        broadcast = "udp/broadcast:127.0.0.1:{}".format(emulator_port)
        if not reverse:
            host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out",
                              kind + "/server:127.0.0.1:0/uhppote", *server_flags)
            port = int((yield host.waitFor(listening(kind))).group(1))
            site = run_tunnel(self, "site", "--in", "{}/client:127.0.0.1:{}/uhppote".format(kind, port),
                              "--out", broadcast, "--udp-timeout", "1s", *client_flags)
            dialler, server = site, host
        else:
            site = run_tunnel(self, "site", "--in", kind + "/server:127.0.0.1:0/uhppote", "--out", broadcast,
                              "--udp-timeout", "1s", *server_flags)
            port = int((yield site.waitFor(listening(kind))).group(1))
            host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out",
                              "{}/client:127.0.0.1:{}/uhppote".format(kind, port), *client_flags)
            dialler, server = host, site
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        yield dialler.waitFor(connected(kind, r"127\.0\.0\.1:{}".format(port)))
        yield server.waitFor(connected(kind))
        yield self.assertRequests(Client(udp_port))
        assertNoWarnings(self, host, site)
        for half in (site, host):
            self.assertEqual((yield stop(half)), 0, half.recent())

    def test_ws(self):
        """
        Over ws/, the site dialling the host: discovery finds both
        controllers, get-time and a card written and read back reach the
        controller named.
        """
        return self.pair("ws", reverse=False)

    def test_wsReverse(self):
        """
        Over ws/, the host dialling the site: the same requests.
        """
        return self.pair("ws", reverse=True)

    def test_wss(self):
        """
        Over wss/ with client certificates (--client-auth), the site
        dialling the host: the same requests.
        """
        return self.pair("wss", reverse=False)

    def test_wssReverse(self):
        """
        Over wss/ with client certificates, the host dialling the site: the
        same requests.
        """
        return self.pair("wss", reverse=True)


class EventRestartTests(EventTunnels, TestCase):
    """
    An event tunnel over wss/ loses nothing across a restart of the host.
    """


    @inlineCallbacks
    def test_hostKilled(self):
        """
        A wss/ host killed with SIGKILL mid-stream, with events sent to it
        and not acknowledged, and started again on the same port is
        redialled by the site, which sends again what was not acknowledged:
        every one of the 200 events arrives exactly once, those after the
        restart in order.
        """
        server_flags = tls_flags(self, "server", client_auth=True)
        host = self.host("wss/server:127.0.0.1:0", *server_flags)
        port = int((yield host.waitFor(listening("wss"))).group(1))
        site = self.site(0, "wss/client:127.0.0.1:{}".format(port), "--debug", *tls_flags(self, "client"))
        yield site.waitFor(connected("wss", r"127\.0\.0\.1:{}".format(port)))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "20ms", serials=[A])

        yield self.events.waitForCount(50)
        yield self.freeze(host, site)
        host.send_signal("KILL")
        yield host.exited()
        before = len(self.events.keys)
        self.assertLess(before, COUNT, "the stream ended before the host was killed")
        mark = site.mark()

        host = self.host("wss/server:127.0.0.1:{}".format(port), *server_flags)
        yield host.waitFor(listening("wss"))
        yield site.waitFor(connected("wss", r"127\.0\.0\.1:{}".format(port)), since=mark)
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield self.events.waitForKey((A, COUNT))
        yield self.finish(site_port)

        received = self.events.of(A)
        self.assertEqual(sorted(received), list(range(1, COUNT + 1)), "lost or duplicated events")
        after = [index for serial, index in self.events.keys[before:] if serial == A]
        self.assertEqual(after, sorted(after), "events after the restart out of order")
        self.assertNotIn("does not acknowledge", site.output())
        self.assertNotIn("Traceback", site.output() + host.output())


@inlineCallbacks
def wait_listening(port, deadline=DEADLINE):
    """
    Wait until something accepts TCP connections on 127.0.0.1:C{port} (a
    program that logs nothing when it listens).
    """
    end = reactor.seconds() + deadline
    while True:
        try:
            probe = yield connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=1), Protocol())
        except ConnectError:
            if reactor.seconds() > end:
                raise WaitTimeout("nothing listens on 127.0.0.1:{} after {}s".format(port, deadline))
            yield deferLater(reactor, 0.05, lambda: None)
        else:
            probe.transport.abortConnection()
            return


HAPROXY = """\
global
    maxconn 64

defaults
    mode http
    option forwardfor
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout tunnel 1h

frontend tunnel
    bind 127.0.0.1:{port} ssl crt {pem}
    default_backend tunnel

backend tunnel
    server host 127.0.0.1:{backend}
"""


class ReverseProxyTests(_Requests, TestCase):
    """
    The host behind haproxy, which terminates TLS and forwards the upgrade
    with X-Forwarded-For to a ws/ server on loopback that requires a bearer
    token: the wss/ site dials haproxy.
    """

    @inlineCallbacks
    def setUp(self):
        haproxy = require("haproxy", "haproxy")
        files = certificates(self)
        self.ca = files["ca"][0]
        folder = workdir(self)
        pem = os.path.join(folder, "haproxy.pem")
        with open(pem, "wb") as out:
            for path in files["server"]:
                with open(path, "rb") as f:
                    out.write(f.read())
        self.emulator, self.emulator_port = yield start_emulator(self, A, B)
        self.host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "ws/server:127.0.0.1:0/tunnel",
                               "--token-file", token_file(self, "host.token"), "--trusted-proxy", "127.0.0.1")
        backend = int((yield self.host.waitFor(listening("ws"))).group(1))
        self.udp_port = int((yield self.host.waitFor(listening_line("UDP"))).group(1))
        self.port = free_port()
        config = os.path.join(folder, "haproxy.cfg")
        with open(config, "w") as f:
            f.write(HAPROXY.format(port=self.port, pem=pem, backend=backend))
        self.haproxy = spawn(self, [haproxy, "-db", "-f", config], "haproxy")
        yield wait_listening(self.port)

    def site(self, name, token):
        return run_tunnel(self, name, "--in", "wss/client:127.0.0.1:{}/tunnel".format(self.port), "--out",
                          "udp/broadcast:127.0.0.1:{}".format(self.emulator_port), "--udp-timeout", "1s",
                          "--ca-cert", self.ca, "--token-file", token_file(self, name + ".token", token))

    @inlineCallbacks
    def test_goodToken(self):
        """
        A site with the host's token reaches it through the proxy and
        carries requests; the host names the client the proxy forwarded,
        and via which proxy.
        """
        site = self.site("site", TOKEN)
        yield site.waitFor(connected("wss", r"127\.0\.0\.1:{}".format(self.port)))
        yield self.host.waitFor(connected("ws", r"127\.0\.0\.1 \(via 127\.0\.0\.1:\d+\)"))
        yield self.assertRequests(Client(self.udp_port))
        assertNoWarnings(self, self.host, site)

    @inlineCallbacks
    def test_wrongToken(self):
        """
        A site with another token is refused with 401: one warning per
        attempt, saying so, and the backoff between attempts grows; the
        host warns of the refusal, naming the forwarded client.
        """
        site = self.site("intruder", "0" * 32)
        address = r"127\.0\.0\.1:{}/tunnel".format(self.port)
        yield site.waitFor(r"WARN\s+WSS\s+could not connect to " + address +
                           r" \(server refused the upgrade: 401 Unauthorized\): retrying in 5s$")
        yield site.waitFor(r"WARN\s+WSS\s+could not connect to " + address + r" \(.*401.*\): retrying in 10s$")
        warnings = [text for fd, text in site.lines if "WARN" in text]
        self.assertEqual(len(warnings), 2, site.recent())
        yield self.host.waitFor(r"WARN\s+WS\s+refused the WebSocket upgrade of 127\.0\.0\.1 \(via "
                                r"127\.0\.0\.1:\d+\) \(401 Unauthorized\): wrong bearer token")
        self.assertNotRegex(self.host.output(), r"\bWS\s+connected to")


class RawPeer(Protocol):
    """
    A raw TCP peer: what it writes is given, what comes back is kept.
    """

    def __init__(self, data=b""):
        self.data = data
        self.received = b""
        self.closed = Deferred()

    def connectionMade(self):
        if self.data:
            self.transport.write(self.data)

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.closed.callback(self.received)


def upgrade(path="/tunnel", websocket=True, **headers):
    """
    An upgrade request as a browser sends one (or a plain GET).
    """
    lines = ["GET {} HTTP/1.1".format(path), "Host: 127.0.0.1", "User-Agent: Mozilla/5.0"]
    if websocket:
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + KEY.decode(),
                  "Sec-WebSocket-Version: 13"]
    lines += ["{}: {}".format(name, value) for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def masked(payload, opcode):
    size = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, 0x80 | size) if size < 126 else \
        struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    return head + b"\0\0\0\0" + payload


class RefusalTests(TestCase):
    """
    What a ws/ server refuses, as a browser or a stray client would meet
    it: each refusal answered, the connection closed, the host warned.
    """

    timeout = 60

    @inlineCallbacks
    def setUp(self):
        self.host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "ws/server:127.0.0.1:0")
        self.port = int((yield self.host.waitFor(listening("ws"))).group(1))

    @inlineCallbacks
    def exchange(self, data):
        """
        :return: all the server sent until it closed the connection.
        """
        peer = yield connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, self.port), RawPeer(data))
        received = yield peer.closed
        return received

    @inlineCallbacks
    def test_foreignOrigin(self):
        """
        A browser's upgrade from a page of another origin is refused with
        403, and the host says why.
        """
        answer = yield self.exchange(upgrade(Origin="https://attacker.example.com"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 403 Forbidden\r\n"), answer)
        yield self.host.waitFor(r"WARN\s+WS\s+refused the WebSocket upgrade of 127\.0\.0\.1:\d+ \(403 Forbidden\): "
                                r"Origin https://attacker\.example\.com is not allowed")

    @inlineCallbacks
    def test_plainGet(self):
        """
        A plain GET on the path is answered 426 with the upgrade required.
        """
        answer = yield self.exchange(upgrade(websocket=False))
        self.assertTrue(answer.startswith(b"HTTP/1.1 426 Upgrade Required\r\n"), answer)
        self.assertIn(b"\r\nUpgrade: websocket\r\n", answer)

    @inlineCallbacks
    def test_otherPath(self):
        """
        Any other path is 404.
        """
        answer = yield self.exchange(upgrade("/"))
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 Not Found\r\n"), answer)

    @inlineCallbacks
    def test_textMessage(self):
        """
        A text message after the upgrade is answered with close code 1003
        and the connection closes.
        """
        answer = yield self.exchange(upgrade() + masked(b"hello", 0x1))
        self.assertTrue(answer.startswith(b"HTTP/1.1 101 "), answer)
        close = answer.split(b"\r\n\r\n", 1)[1]
        self.assertEqual(close[:4], b"\x88" + bytes([22]) + struct.pack("!H", 1003))
        yield self.host.waitFor(r"WARN\s+WS\s+closing connection from 127\.0\.0\.1:\d+: a text message")

    @inlineCallbacks
    def test_oversizeMessage(self):
        """
        A message longer than --max-payload plus the frame header drops the
        connection as soon as its length is read, with a warning.
        """
        yield self.exchange(upgrade() + masked(encode(1, bytes(2000)), 0x2))
        yield self.host.waitFor(r"WARN\s+WS\s+closing connection from 127\.0\.0\.1:\d+: a message of over 1030 bytes")
        self.assertNotIn("Traceback", self.host.output())

    @inlineCallbacks
    def test_stopsCleanly(self):
        """
        With a peer connected, SIGTERM stops the host cleanly: exit 0.
        """
        peer = yield connectProtocol(TCP4ClientEndpoint(reactor, LOOPBACK, self.port), RawPeer(upgrade()))
        yield self.host.waitFor(connected("ws"))
        code = yield stop(self.host, "TERM")
        self.assertEqual(code, 0, self.host.recent())
        yield peer.closed
        self.assertNotIn("Traceback", self.host.output())


class MismatchTests(TestCase):
    """
    Halves that do not speak the same transport, in this process on
    127.0.0.1: each side says what the other probably is, and a client
    counts a failed attempt.
    """

    timeout = 60

    def setUp(self):
        from uhppoted_tunnel.app import config
        from uhppoted_tunnel.testing import LogWatcher

        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.log = LogWatcher()
        self.addCleanup(self.log.stop)

    def tunnel(self, *args):
        from uhppoted_tunnel.app.options import Options
        from uhppoted_tunnel.app.tunnel import TunnelService

        options = Options()
        options.parseOptions(list(args) + ["--ca-cert", certificates(self)["ca"][0], "--lockfile",
                                           os.path.join(workdir(self), "{}.pid".format(id(args)))])
        service = TunnelService(options, reactor)
        service.failed = Deferred()
        service.on_failure = service.failed.callback
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @inlineCallbacks
    def server(self, out, *args):
        host = self.tunnel("--in", "udp/listen:127.0.0.1:0", "--out", out, *args)
        port = yield host.out.whenListening()
        return port.getHost().port

    def client(self, inbound, *args):
        return self.tunnel("--in", inbound, "--out", "udp/broadcast:127.0.0.1:{}".format(free_port()), *args)

    @inlineCallbacks
    def test_wsClientToTcpServer(self):
        """
        A ws/ client dialling a tcp/ server: the server says the peer
        speaks HTTP, the client that the server closed during the upgrade.
        """
        port = yield self.server("tcp/server:127.0.0.1:0")
        self.client("ws/client:127.0.0.1:{}".format(port))
        yield self.log.waitFor("is the peer an HTTP client?", reactor)
        yield self.log.waitFor("the server closed the connection during the WebSocket upgrade: is it a ws/ end?): "
                               "retrying in 5s", reactor)

    @inlineCallbacks
    def test_tcpClientToWsServer(self):
        """
        A tcp/ out end dialling a ws/ server sends frames, not a request:
        refused at once, named as a tcp/ connector.
        """
        port = yield self.server("ws/server:127.0.0.1:0")
        host = self.tunnel("--in", "udp/listen:127.0.0.1:0", "--out", "tcp/client:127.0.0.1:{}".format(port))
        yield self.log.waitFor("connected to 127.0.0.1:{}".format(port), reactor)
        # a request makes the tcp/ client write its first frame
        application = reactor.listenUDP(0, DatagramProtocol(), interface=LOOPBACK)
        self.addCleanup(application.stopListening)
        application.write(bytes([0x17, 0x94]) + bytes(62), (LOOPBACK, host.in_.port.getHost().port))
        yield self.log.waitFor("the data is not an HTTP request: is the peer a tcp/ connector?", reactor)

    @inlineCallbacks
    def test_wssClientToWsServer(self):
        """
        A wss/ client dialling a plain ws/ server: the server says the peer
        starts a TLS handshake; the client's attempt fails.
        """
        port = yield self.server("ws/server:127.0.0.1:0")
        self.client("wss/client:127.0.0.1:{}".format(port))
        yield self.log.waitFor("the data starts like a TLS handshake: is the peer a wss/ or tls/ client?", reactor)
        yield self.log.waitFor("retrying in 5s", reactor)

    @inlineCallbacks
    def test_otherPathOutOfRetries(self):
        """
        A client asking for another path than the server's is refused with
        404; with --max-retries 0 the tunnel stops saying so.
        """
        port = yield self.server("ws/server:127.0.0.1:0/uhppote")
        site = self.client("ws/client:127.0.0.1:{}/tunnel".format(port), "--max-retries", "0")
        message = yield site.failed
        self.assertEqual(message, "could not connect to 127.0.0.1:{}/tunnel after 1 attempt(s): server refused the "
                                  "upgrade: 404 Not Found".format(port))
