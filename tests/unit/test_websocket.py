"""
Tests for L{uhppoted_tunnel.transports.ws.maker} and
L{uhppoted_tunnel.transports.ws.protocol}: the ws/ ends on fake sockets and
a fake clock, and the admission rules with neither.
"""

import base64
import hashlib
import os
import struct

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from tests import certs
from uhppoted_tunnel.core.addresses import normalize_origin, parse_networks
from uhppoted_tunnel.transports.ws.connection import WSConnection
from uhppoted_tunnel.transports.ws.maker import WSConnectorMaker, read_token, split_path
from uhppoted_tunnel.transports.ws.upgrade import (
    DEFAULT_PATH,
    ForwardedAddress,
    Refusal,
    UpgradePolicy,
    parse_request,
    parse_status,
)
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, ICountingEndpoint, IFrameConnection, ISecureEnd
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter, packet
from uhppoted_tunnel.core.frames import FrameDecoder, encode

SETTINGS = {"max-payload": 1024, "max-connections": 512, "max-connections-per-source": 128, "max-send-queue": 262144,
            "stall-timeout": 30.0, "dead-peer-timeout": 60.0, "udp-timeout": 5.0, "debug": False, "max-retries": -1,
            "max-retry-delay": 300.0, "events": False, "handshake-timeout": 15.0, "ws-ping": 30.0,
            "ws-origins": [], "token-file": None, "trusted-proxies": []}
MAKER = WSConnectorMaker("ws")
REQUEST = packet(0x94, 405419896)
REPLY = packet(0x94, 405419896, b"\xc0\xa8\x01\x64")
TOKEN = "0123456789abcdef0123456789abcdef"
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def spec_of(text, maker=MAKER):
    return parse(text, {prefix: maker for prefix in maker.prefixes})[1]


def make(text, role, router=None, reactor=None, **settings):
    reactor = reactor if reactor is not None else FakeReactor()
    return MAKER.makeEnd(spec_of(text), role, dict(SETTINGS, **settings), router, reactor), reactor


def upgrade(path=DEFAULT_PATH, method="GET", upgrade=True, **headers):
    """
    A client's upgrade request, with headers given as keywords
    (C{X_Forwarded_For="..."}).
    """
    lines = ["{} {} HTTP/1.1".format(method, path), "Host: tunnel.example.com"]
    if upgrade:
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: " + KEY,
                  "Sec-WebSocket-Version: 13"]
    lines += ["{}: {}".format(name.replace("_", "-"), value) for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def client_frame(payload, opcode=0x2):
    """
    A masked (all-zero mask) final frame, as clients send.
    """
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
    else:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
    return head + b"\0\0\0\0" + payload


def server_frames(data):
    """
    The frames a server wrote after its 101 answer: C{(opcode, payload)}.
    """
    data = data.split(b"\r\n\r\n", 1)[1]
    frames = []
    while data:
        opcode, size = data[0] & 0x0F, data[1] & 0x7F
        offset = 2
        if size == 126:
            size, offset = struct.unpack("!H", data[2:4])[0], 4
        frames.append((opcode, data[offset:offset + size]))
        data = data[offset + size:]
    return frames


def server_messages(transport):
    """
    The tunnel frames in the binary messages a server wrote.
    """
    return [frame for opcode, payload in server_frames(transport.value()) if opcode == 2
            for frame in FrameDecoder().feed(payload)]


class TCPTransport(StringTransport):
    """
    A string transport with a TCP socket's tuning.
    """

    bufferSize = 65536
    noDelay = keepAlive = False

    def setTcpNoDelay(self, enabled):
        self.noDelay = enabled

    def setTcpKeepAlive(self, enabled):
        self.keepAlive = enabled


def warnings(logged, text):
    return [formatEvent(e) for e in logged if e.get("log_level") is not None and e["log_level"].name == "warn"
            and text in formatEvent(e)]


class SplitPathTests(SynchronousTestCase):
    def test_default(self):
        """
        A connector with no path takes /tunnel, and its address is left as
        it was.
        """
        spec, path = split_path(spec_of("ws/server:0.0.0.0:8080"))
        self.assertEqual((spec.address, path), ("0.0.0.0:8080", "/tunnel"))

    def test_paths(self):
        """
        A path follows HOST:PORT, [IPV6]:PORT, :PORT or a systemd socket,
        and is taken off the address the endpoint is made from.
        """
        for text, address, path in [
            ("ws/server:0.0.0.0:443/uhppote/tunnel", "0.0.0.0:443", "/uhppote/tunnel"),
            ("ws/client:tunnel.example.com:443/t", "tunnel.example.com:443", "/t"),
            ("ws/server:[::1]:8080/x", "[::1]:8080", "/x"),
            ("ws/server::8080/", ":8080", "/"),
            ("ws/server:systemd:tunnel/ws", "systemd:tunnel", "/ws"),
            ("ws/server:systemd/ws", "systemd", "/ws"),
        ]:
            spec, found = split_path(spec_of(text))
            self.assertEqual((spec.address, found), (address, path), text)

    def test_interface(self):
        """
        An interface binding stays with the spec.
        """
        spec, path = split_path(spec_of("ws/client::eth0:192.0.2.1:443/t"))
        self.assertEqual((spec.interface, spec.address, path), ("eth0", "192.0.2.1:443", "/t"))

    def test_badPath(self):
        """
        A path with a space, a query or a fragment is refused, naming the
        connector.
        """
        for text in ("ws/server:0.0.0.0:80/a b", "ws/server:0.0.0.0:80/a?b", "ws/server:0.0.0.0:80/a#b"):
            e = self.assertRaises(ValueError, split_path, spec_of(text))
            self.assertIn("invalid path in '{}'".format(text), str(e))

    def test_description(self):
        """
        A Twisted endpoint description is left whole, on the default path.
        """
        for address in ("unix:/run/tunnel.sock", "systemd:domain=INET:index=0"):
            spec, path = split_path(spec_of("ws/server:" + address))
            self.assertEqual((spec.address, path), (address, "/tunnel"))


class TokenFileTests(SynchronousTestCase):
    def write(self, data, mode=0o600):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
        return path

    def test_read(self):
        """
        The token is the file's one word, its newline ignored.
        """
        self.assertEqual(read_token(self.write(TOKEN.encode() + b"\n")), TOKEN)

    def test_missing(self):
        """
        A missing file is a one-line error naming the flag and file.
        """
        e = self.assertRaises(ValueError, read_token, "/nonexistent/token")
        self.assertEqual(str(e), "--token-file '/nonexistent/token': No such file or directory")

    def test_unusable(self):
        """
        An empty file, two words, a short token and a binary file are
        refused, each saying why.
        """
        for data, why in [(b"", "one word"), (b"abc def", "one word"), (b"short-token\n", "too short"),
                          (b"\xff" * 20, "not ASCII"), (b"a" * 5000, "over 4096 bytes")]:
            e = self.assertRaises(ValueError, read_token, self.write(data))
            self.assertIn(why, str(e))

    def test_othersMayRead(self):
        """
        A token file others may read is warned of.
        """
        from twisted.logger import Logger

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        path = self.write(TOKEN.encode(), 0o644)
        self.assertEqual(read_token(path, Logger()), TOKEN)
        [warning] = warnings(logged, "other users may read the token")
        self.assertIn(path, warning)


class HeadTests(SynchronousTestCase):
    def test_request(self):
        """
        A request head gives its method, target, version and headers by
        lower-case name, repeated ones in order.
        """
        request = parse_request(b"GET /tunnel?x=1 HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n"
                                b"x-forwarded-for:  5.6.7.8 ")
        self.assertEqual((request.method, request.target, request.version, request.path),
                         ("GET", "/tunnel?x=1", "HTTP/1.1", "/tunnel"))
        self.assertEqual(request.headers["x-forwarded-for"], ["1.2.3.4", "5.6.7.8"])

    def test_absoluteTarget(self):
        """
        An absolute-form target's path is its path; an authority-form or
        asterisk target has none.
        """
        self.assertEqual(parse_request(b"GET http://h:80/tunnel HTTP/1.1").path, "/tunnel")
        self.assertIsNone(parse_request(b"GET * HTTP/1.1").path)

    def test_malformed(self):
        """
        A bad request line, a header line without a colon, a space before
        a colon and a bare line feed are refused.
        """
        for head in (b"GET /", b"GET  / HTTP/1.1", b"GET / HTTP/1.1\r\nNoColon",
                     b"GET / HTTP/1.1\r\nHost : a", b"GET / HTTP/1.1\nHost: a"):
            self.assertRaises(ValueError, parse_request, head)

    def test_status(self):
        """
        A response's status line gives the code and the phrase.
        """
        self.assertEqual(parse_status(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer")[:3],
                         ("HTTP/1.1", 401, "Unauthorized"))
        self.assertRaises(ValueError, parse_status, b"\x16\x03\x01 hello")


class OriginTests(SynchronousTestCase):
    def test_normalized(self):
        """
        Scheme and host are lower-cased and the scheme's default port left
        out, as browsers write an Origin.
        """
        self.assertEqual(normalize_origin("HTTPS://App.Example.COM:443"), "https://app.example.com")
        self.assertEqual(normalize_origin("http://a:8080/"), "http://a:8080")
        self.assertEqual(normalize_origin("http://[::1]:80"), "http://[::1]")

    def test_refused(self):
        """
        A path, null, another scheme or a bad port is not an origin.
        """
        for text in ("null", "https://a/b", "ftp://a", "a.example.com", "https://a:99999", "https://", 5):
            self.assertRaises(ValueError, normalize_origin, text)

    def test_networks(self):
        """
        Trusted proxies are addresses or CIDR blocks.
        """
        self.assertEqual([str(n) for n in parse_networks(["127.0.0.1", "10.0.0.0/8", "::1"])],
                         ["127.0.0.1/32", "10.0.0.0/8", "::1/128"])
        self.assertRaises(ValueError, parse_networks, ["proxy.example.com"])


class PolicyTests(SynchronousTestCase):
    def refusal(self, policy, head):
        try:
            policy.check(parse_request(head.split(b"\r\n\r\n")[0]))
        except Refusal as refusal:
            return refusal.code
        return None

    def test_admitted(self):
        """
        An upgrade on the path with no Origin and no token required is
        admitted.
        """
        self.assertIsNone(self.refusal(UpgradePolicy(), upgrade()))

    def test_refusals(self):
        """
        Another method 405, another path 404, a plain GET on the path 426,
        a foreign Origin 403.
        """
        policy = UpgradePolicy()
        self.assertEqual(self.refusal(policy, upgrade(method="POST")), 405)
        self.assertEqual(self.refusal(policy, upgrade("/other")), 404)
        self.assertEqual(self.refusal(policy, upgrade("/tunnel/")), 404)
        self.assertEqual(self.refusal(policy, upgrade(upgrade=False)), 426)
        self.assertEqual(self.refusal(policy, upgrade(upgrade=False, Upgrade="h2c")), 426)
        self.assertEqual(self.refusal(policy, upgrade(Origin="https://evil.example.com")), 403)
        self.assertEqual(self.refusal(policy, upgrade(Origin="null")), 403)

    def test_allowedOrigins(self):
        """
        An allowed origin is admitted however it is written; any other is
        not.
        """
        policy = UpgradePolicy(origins=["https://app.example.com"])
        self.assertIsNone(self.refusal(policy, upgrade(Origin="https://APP.example.com:443")))
        self.assertEqual(self.refusal(policy, upgrade(Origin="http://app.example.com")), 403)

    def test_token(self):
        """
        With a token, an upgrade needs 'Authorization: Bearer TOKEN'.
        """
        policy = UpgradePolicy(token=TOKEN)
        self.assertEqual(self.refusal(policy, upgrade()), 401)
        self.assertEqual(self.refusal(policy, upgrade(Authorization="Bearer " + TOKEN[:-1] + "0")), 401)
        self.assertEqual(self.refusal(policy, upgrade(Authorization="Basic " + TOKEN)), 401)
        self.assertIsNone(self.refusal(policy, upgrade(Authorization="Bearer " + TOKEN)))
        self.assertIsNone(self.refusal(policy, upgrade(Authorization="bearer  " + TOKEN)))

    def test_orderOfChecks(self):
        """
        The path is checked before the rest, the upgrade before the Origin
        and the token, the Origin before the token.
        """
        policy = UpgradePolicy(token=TOKEN)
        self.assertEqual(self.refusal(policy, upgrade("/other", upgrade=False)), 404)
        self.assertEqual(self.refusal(policy, upgrade(upgrade=False)), 426)
        self.assertEqual(self.refusal(policy, upgrade(Origin="https://evil.example.com")), 403)

    def test_forwarded(self):
        """
        From a trusted proxy the peer is the last X-Forwarded-For entry;
        from anyone else the header is ignored.
        """
        policy = UpgradePolicy(trusted=parse_networks(["127.0.0.0/8"]))
        request = parse_request(upgrade(X_Forwarded_For="203.0.113.9, 198.51.100.7").split(b"\r\n\r\n")[0])
        peer = policy.peer(IPv4Address("TCP", "127.0.0.1", 40000), request)
        self.assertIsInstance(peer, ForwardedAddress)
        self.assertEqual(str(peer), "198.51.100.7 (via 127.0.0.1:40000)")
        stranger = IPv4Address("TCP", "192.0.2.1", 40000)
        self.assertIs(policy.peer(stranger, request), stranger)
        self.assertIs(UpgradePolicy().peer(IPv4Address("TCP", "127.0.0.1", 1), request).host, "127.0.0.1")

    def test_forwardedUnreadable(self):
        """
        An X-Forwarded-For entry that is not an address names no peer; one
        with a port does.
        """
        policy = UpgradePolicy(trusted=parse_networks(["127.0.0.1"]))
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        for value, host in [("unknown", None), ("1.2.3.4:5678", "1.2.3.4"), ("[2001:db8::1]:5", "2001:db8::1")]:
            request = parse_request(upgrade(X_Forwarded_For=value).split(b"\r\n\r\n")[0])
            self.assertEqual(getattr(policy.peer(address, request), "proxy", None) and
                             policy.peer(address, request).host, host)


class MakerTests(SynchronousTestCase):
    def test_interface(self):
        """
        Both makers provide IConnectorMaker, with the tcp ones' kinds under
        their own names.
        """
        for kind in ("ws", "wss"):
            maker = WSConnectorMaker(kind)
            verifyObject(IConnectorMaker, maker)
            self.assertEqual(maker.prefixes, (kind + "/server:", kind + "/client:", kind + "/event/server:",
                                              kind + "/event/client:"))
            self.assertTrue(maker.relaysEvents(kind + "/event/client:"))
            self.assertEqual(maker.log_tag, kind.upper())

    def test_secure(self):
        """
        wss/ ends load their certificates when made, watch their expiry and
        read them again on SIGHUP, server and client alike.
        """
        from tests import certs
        from uhppoted_tunnel.transports.tls.secure import CertificateWatch

        files = certs.make(self.mktemp())
        maker = WSConnectorMaker("wss")
        for text, role, side in (("wss/server:127.0.0.1:0/t", IN, "server"), ("wss/client:localhost:443/t", OUT,
                                                                              "client")):
            cert, key = files[side]
            settings = dict(SETTINGS, **{"ca-cert": files["ca"][0], "cert": cert, "key": key, "client-auth": True})
            end = maker.makeEnd(spec_of(text, maker), role, settings, RecordingRouter(), FakeReactor())
            self.assertTrue([child for child in end if isinstance(child, CertificateWatch)])
            self.assertTrue(end.reloadCertificates())
            settings["cert"] = self.mktemp()
            e = self.assertRaises(ValueError, maker.makeEnd, spec_of(text, maker), role, settings, RecordingRouter(),
                                  FakeReactor())
            self.assertIn("--cert", str(e))

    def test_secureInterfaces(self):
        """
        A wss/ end provides L{ISecureEnd}; its endpoints, and those of a
        ws/ end, provide L{ICountingEndpoint}.
        """
        files = certs.make(self.mktemp())
        maker = WSConnectorMaker("wss")
        for text, role, side in (("wss/server:127.0.0.1:0/t", IN, "server"), ("wss/client:localhost:443/t", OUT,
                                                                              "client")):
            cert, key = files[side]
            settings = dict(SETTINGS, **{"ca-cert": files["ca"][0], "cert": cert, "key": key, "client-auth": True})
            end = maker.makeEnd(spec_of(text, maker), role, settings, RecordingRouter(), FakeReactor())
            verifyObject(ISecureEnd, end)
            verifyObject(ICountingEndpoint, end.endpoint)
            verifyObject(ICountingEndpoint, end.endpoint.secure)
        for text, role in (("ws/server:127.0.0.1:0/t", IN), ("ws/client:localhost:443/t", OUT)):
            end = make(text, role, RecordingRouter())[0]
            self.assertFalse(ISecureEnd.providedBy(end))
            verifyObject(ICountingEndpoint, end.endpoint)

    def test_clientNeedsHostPort(self):
        """
        A client needs HOST:PORT (the server's name goes in the request).
        """
        e = self.assertRaises(ValueError, make, "ws/client:unix:/run/x.sock", OUT)
        self.assertIn("needs HOST:PORT", str(e))

    def test_tokenInTheClear(self):
        """
        A ws/ client that would send its token in the clear across a
        network is warned of; over wss/ or to loopback it is not.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(TOKEN)
        os.chmod(path, 0o600)
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        make("ws/client:127.0.0.1:8080", OUT, **{"token-file": path})
        make("ws/client:192.0.2.1:8080", OUT, **{"token-file": path})
        [warning] = warnings(logged, "in the clear")
        self.assertIn("'ws/client:192.0.2.1:8080' sends its --token-file token in the clear", warning)

    def test_badTokenFile(self):
        """
        A --token-file that cannot be read stops the end being made.
        """
        e = self.assertRaises(ValueError, make, "ws/server:127.0.0.1:0", IN, RecordingRouter(),
                              **{"token-file": "/nonexistent"})
        self.assertIn("--token-file '/nonexistent'", str(e))

    def test_plainOnNetworkWarned(self):
        """
        A plain ws/ server on a network address is warned of, as a plain
        tcp/ one is.
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        end, reactor = make("ws/server:0.0.0.0:8080/t", IN, RecordingRouter())
        end.startService()
        self.addCleanup(end.stopService)
        [warning] = warnings(logged, "is a plain WS end on a network address")
        self.assertIn("0.0.0.0:8080", warning)


class _ServerTests:
    """
    A ws/server end on a fake reactor, with peers connected by hand.
    """

    role = IN
    settings = {}

    def setUp(self):
        self.router = RecordingRouter()
        self.end, self.reactor = make("ws/server:127.0.0.1:12345", self.role, self.router, **self.settings)
        self.end.startService()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def tearDown(self):
        if self.end.running:
            self.end.stopService()
        for protocol, transport in getattr(self, "peers", []):
            if not getattr(protocol, "lost", False):
                protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def connect(self, port=50000, host="127.0.0.1", transport=StringTransport):
        """
        Connect a fake peer through the end's listening factory (its caps
        included).
        """
        factory = self.reactor.tcpServers[-1][1]
        protocol = factory.buildProtocol(IPv4Address("TCP", host, port))
        transport = transport(peerAddress=IPv4Address("TCP", host, port))
        protocol.makeConnection(transport)
        self.peers = getattr(self, "peers", []) + [(protocol, transport)]
        return protocol, transport

    def lose(self, protocol):
        protocol.lost = True
        protocol.connectionLost(Failure(ConnectionDone()))

    def upgraded(self, port=50000, transport=StringTransport, **headers):
        protocol, transport = self.connect(port, transport=transport)
        protocol.dataReceived(upgrade(**headers))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "), transport.value())
        return protocol, transport


class ServerUpgradeTests(_ServerTests, SynchronousTestCase):
    def test_upgrade(self):
        """
        An upgrade on the path is answered 101 with the key's accept value,
        and the connection is then ready, named by its peer.
        """
        protocol, transport = self.upgraded()
        accept = base64.b64encode(hashlib.sha1(KEY.encode() + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        self.assertIn(b"Sec-WebSocket-Accept: " + accept, transport.value())
        self.assertNotIn(b"Server:", transport.value())
        [connection] = self.end.connections
        self.assertEqual(connection.peer, "127.0.0.1:50000")

    def test_connectionInterface(self):
        """
        Once upgraded, the end's connection is the WebSocket transport's
        own L{WSConnection}, providing L{IFrameConnection}.
        """
        self.upgraded()
        [connection] = self.end.connections
        self.assertIsInstance(connection, WSConnection)
        verifyObject(IFrameConnection, connection)

    def test_notReadyBeforeUpgrade(self):
        """
        A connection is not the relay's until its upgrade succeeds, and a
        request split across reads is read whole.
        """
        protocol, transport = self.connect()
        request = upgrade()
        protocol.dataReceived(request[:20])
        self.assertEqual(self.end.connections, [])
        protocol.dataReceived(request[20:])
        self.assertEqual(len(self.end.connections), 1)

    def test_frames(self):
        """
        Each binary message carries one frame: a request goes to the
        router, its reply comes back as one message with the same id.
        """
        protocol, transport = self.upgraded()
        protocol.dataReceived(client_frame(encode(7, REQUEST)) + client_frame(encode(8, REQUEST)))
        self.assertEqual([payload for payload, _ in self.router.requests], [REQUEST, REQUEST])
        self.router.requests[0][1](REPLY)
        self.assertEqual(server_messages(transport), [(7, REPLY)])

    def refused(self, data, code, port=50000):
        protocol, transport = self.connect(port)
        protocol.dataReceived(data)
        status = "HTTP/1.1 {} ".format(code).encode()
        self.assertTrue(transport.value().startswith(status), transport.value())
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.end.connections, [])
        self.lose(protocol)
        return transport.value()

    def test_otherPath(self):
        """
        Another path is 404, with a warning naming the peer and the path.
        """
        self.refused(upgrade("/admin"), 404)
        [warning] = warnings(self.logged, "refused the WebSocket upgrade")
        self.assertIn("127.0.0.1:50000 (404 Not Found): GET /admin: the tunnel is at /tunnel", warning)

    def test_plainGet(self):
        """
        A plain GET on the path is 426, saying which upgrade is required.
        """
        answer = self.refused(upgrade(upgrade=False), 426)
        self.assertIn(b"\r\nUpgrade: websocket\r\n", answer)
        self.assertIn(b"\r\nContent-Length: 0\r\n", answer)

    def test_foreignOrigin(self):
        """
        A browser's upgrade from a foreign Origin is 403.
        """
        self.refused(upgrade(Origin="https://evil.example.com"), 403)
        [warning] = warnings(self.logged, "refused the WebSocket upgrade")
        self.assertIn("Origin https://evil.example.com is not allowed", warning)

    def test_malformed(self):
        """
        Malformed requests are 400 (or 431 for a head too long), each with
        a warning and never a traceback.
        """
        self.refused(b"GET /tunnel HTTP/1.1\r\nno colon here\r\n\r\n", 400, 50001)
        self.refused(upgrade(Sec_WebSocket_Version="8"), 400, 50002)
        self.refused(upgrade().replace(KEY.encode(), b"short"), 400, 50003)
        self.refused(b"GET /tunnel HTTP/1.1\r\nX: " + b"y" * 9000, 431, 50004)
        self.refused(upgrade().replace(b"HTTP/1.1", b"HTTP/1.0", 1), 505, 50005)
        self.assertEqual(self.flushLoggedErrors(), [])
        self.assertTrue(warnings(self.logged, "431"))

    def test_refusalsThrottled(self):
        """
        Many refusals of one kind are one warning, then a count.
        """
        for port in range(50000, 50010):
            self.refused(upgrade("/scan"), 404, port)
        self.assertEqual(len(warnings(self.logged, "refused")), 1)
        self.reactor.advance(10)
        [later] = warnings(self.logged, "refused 9 WebSocket upgrades (404 Not Found)")
        self.assertIn("the last of 127.0.0.1:50009", later)

    def test_timeout(self):
        """
        A peer that completes no upgrade within --handshake-timeout (says
        nothing, or drips a request) is dropped, with a warning that names
        the likely cause.
        """
        silent, silent_transport = self.connect(50000)
        dripping, dripping_transport = self.connect(50001)
        dripping.dataReceived(b"GET /tunnel HTTP/1.1\r\n")
        self.reactor.advance(15)
        self.assertTrue(silent_transport.disconnected and dripping_transport.disconnected)
        self.lose(silent)
        self.lose(dripping)
        [warning] = warnings(self.logged, "no WebSocket upgrade from 127.0.0.1:50000 within 15s")
        self.assertIn("is the peer a plain tcp/ connector?", warning)

    def test_notHTTP(self):
        """
        A peer whose first bytes cannot begin an HTTP request (a tcp/
        client's frames, a TLS handshake) is refused at once, saying what
        it probably is.
        """
        self.refused(encode(1, REQUEST), 400, 50001)
        self.refused(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400, 50002)
        self.reactor.advance(10)
        first, second = warnings(self.logged, "refused the WebSocket upgrade")
        self.assertIn("the data is not an HTTP request: is the peer a tcp/ connector?", first)
        self.assertIn("the data starts like a TLS handshake: is the peer a wss/ or tls/ client?", second)

    def test_stop(self):
        """
        Stopping closes the upgraded connections with a close frame and
        drops those not yet upgraded; nothing is left on the clock.
        """
        waiting, waiting_transport = self.connect(50001)
        protocol, transport = self.upgraded()
        self.end.stopService()
        self.assertTrue(waiting_transport.disconnected)
        self.assertEqual(server_frames(transport.value()), [(0x8, struct.pack("!H", 1000))])
        self.lose(waiting)
        self.lose(protocol)


class ServerMessageTests(_ServerTests, SynchronousTestCase):
    def test_text(self):
        """
        A text message is refused with close code 1003 and a warning.
        """
        protocol, transport = self.upgraded()
        protocol.dataReceived(client_frame(b"hello", opcode=0x1))
        self.assertEqual(server_frames(transport.value()), [(0x8, struct.pack("!H", 1003) + b"binary messages only")])
        self.assertEqual(self.router.requests, [])
        [warning] = warnings(self.logged, "closing connection from 127.0.0.1:50000")
        self.assertIn("a text message", warning)
        self.reactor.advance(1)
        self.assertTrue(transport.disconnected)
        self.lose(protocol)

    def test_notOneFrame(self):
        """
        A binary message that is not exactly one frame (two frames, a
        frame cut short) closes the connection with a warning.
        """
        for port, message in [(50001, encode(1, REQUEST) * 2), (50002, encode(1, REQUEST)[:-1]), (50003, b"\0")]:
            protocol, transport = self.upgraded(port)
            protocol.dataReceived(client_frame(message))
            self.assertTrue(transport.disconnected)
            self.lose(protocol)
        self.assertEqual(self.router.requests, [])
        [warning] = warnings(self.logged, "closing connection from 127.0.0.1:50001")
        self.assertIn("a message of 140 bytes that is not one frame (its header announces 64 bytes)", warning)

    def test_tooLong(self):
        """
        A message longer than --max-payload plus the frame header closes the
        connection as soon as its length is known, with a warning.
        """
        protocol, transport = self.upgraded()
        message = encode(1, bytes(1025))
        protocol.dataReceived(client_frame(message)[:10])
        self.assertTrue(transport.disconnected)
        self.lose(protocol)
        [warning] = warnings(self.logged, "closing connection from 127.0.0.1:50000")
        self.assertIn("a message of over 1030 bytes (--max-payload 1024 plus the 6-byte frame header)", warning)
        self.assertEqual(self.router.requests, [])

    def test_longestAccepted(self):
        """
        A message of exactly --max-payload plus the header is relayed.
        """
        protocol, transport = self.upgraded()
        protocol.dataReceived(client_frame(encode(1, bytes(1024))))
        self.assertEqual(len(self.router.requests), 1)


def masked_frame(payload, key=b"\x9a\x01\xff\x37", opcode=0x2):
    """
    A final frame masked with C{key}, as clients send.
    """
    size = len(payload)
    head = struct.pack("!BB", 0x80 | opcode, 0x80 | size) if size < 126 else struct.pack(
        "!BBH", 0x80 | opcode, 0x80 | 126, size)
    return head + key + bytes(b ^ key[n % 4] for n, b in enumerate(payload))


class ServerWholeFrameTests(_ServerTests, SynchronousTestCase):
    """
    Whole final binary frames are read without autobahn's parser; the
    rest is autobahn's, in order.
    """

    def parsed(self, protocol):
        while not hasattr(protocol, "processData"):
            protocol = protocol.wrappedProtocol
        calls = []
        parse = protocol.processData

        def counted():
            calls.append(1)
            return parse()

        protocol.processData = counted
        return calls

    def test_wholeFrames(self):
        """
        Frames that arrive whole, masked with any key, short and long, are
        unmasked and relayed in order without autobahn's parser.
        """
        protocol, transport = self.upgraded()
        calls = self.parsed(protocol)
        long = REQUEST * 2
        protocol.dataReceived(masked_frame(encode(7, REQUEST)) + masked_frame(encode(8, long), key=b"\1\2\3\4"))
        protocol.dataReceived(masked_frame(encode(9, REQUEST)))
        self.assertEqual([payload for payload, _ in self.router.requests], [REQUEST, long, REQUEST])
        self.assertEqual(calls, [])

    def test_restToAutobahn(self):
        """
        A ping after whole frames, and a frame cut across reads, are
        autobahn's: the ping is answered, the cut frame relayed once whole,
        in order with the frames before and after it.
        """
        protocol, transport = self.upgraded()
        calls = self.parsed(protocol)
        cut = masked_frame(encode(2, REQUEST))
        protocol.dataReceived(masked_frame(encode(1, REQUEST)) + masked_frame(b"hi", opcode=0x9) + cut[:30])
        self.assertEqual(len(self.router.requests), 1)
        self.assertEqual(server_frames(transport.value())[-1], (0xA, b"hi"))
        protocol.dataReceived(cut[30:])
        protocol.dataReceived(masked_frame(encode(3, REQUEST)))
        self.assertEqual(len(self.router.requests), 3)
        self.assertNotEqual(calls, [])

    def test_unmaskedRefused(self):
        """
        An unmasked frame from a client is left to autobahn, which drops
        the connection: nothing is relayed.
        """
        protocol, transport = self.upgraded()
        data = encode(1, REQUEST)
        protocol.dataReceived(struct.pack("!BB", 0x82, len(data)) + data)
        self.assertEqual(self.router.requests, [])
        self.assertTrue(transport.disconnected)
        self.lose(protocol)


class ServerPingTests(_ServerTests, SynchronousTestCase):
    settings = {"ws-ping": 5.0}

    def test_pingUnanswered(self):
        """
        A peer that answers no ping within --ws-ping is dropped, with a
        warning.
        """
        protocol, transport = self.upgraded()
        self.reactor.advance(5)
        [(opcode, _)] = server_frames(transport.value())
        self.assertEqual(opcode, 0x9)
        self.reactor.advance(5)
        self.assertTrue(transport.disconnected)
        self.lose(protocol)
        [warning] = warnings(self.logged, "no answer from 127.0.0.1:50000 to a ping within 5s")
        self.assertIn("--ws-ping", warning)

    def test_pingAnswered(self):
        """
        A peer that answers its pings stays connected.
        """
        protocol, transport = self.upgraded()
        for _ in range(3):
            self.reactor.advance(5)
            opcode, payload = server_frames(transport.value())[-1]
            self.assertEqual(opcode, 0x9)
            protocol.dataReceived(client_frame(payload, opcode=0xA))
            self.reactor.advance(4)
        self.assertFalse(transport.disconnecting)

    def test_noPings(self):
        """
        --ws-ping 0 sends no pings.
        """
        self.end.stopService()
        self.end, self.reactor = make("ws/server:127.0.0.1:12345", IN, self.router, **{"ws-ping": 0})
        self.end.startService()
        protocol, transport = self.upgraded()
        self.reactor.advance(3600)
        self.assertEqual(server_frames(transport.value()), [])


class ServerPolicyTests(_ServerTests, SynchronousTestCase):
    def setUp(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(TOKEN + "\n")
        os.chmod(path, 0o600)
        self.settings = {"token-file": path, "trusted-proxies": ["127.0.0.1"],
                         "ws-origins": ["https://app.example.com"]}
        _ServerTests.setUp(self)

    def test_token(self):
        """
        With --token-file a request without the token is 401, with
        'WWW-Authenticate: Bearer'; with it the upgrade succeeds.
        """
        protocol, transport = self.connect(50001)
        protocol.dataReceived(upgrade(Authorization="Bearer wrong-token-0123456789"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 401 Unauthorized\r\n"))
        self.assertIn(b"\r\nWWW-Authenticate: Bearer", transport.value())
        self.lose(protocol)
        self.upgraded(Authorization="Bearer " + TOKEN, Origin="https://app.example.com")
        self.assertEqual(len(self.end.connections), 1)

    def test_forwardedPeer(self):
        """
        Behind a trusted proxy the connection is named by the client the
        proxy forwards, in every line about it.
        """
        protocol, transport = self.upgraded(Authorization="Bearer " + TOKEN, X_Forwarded_For="198.51.100.7")
        [connection] = self.end.connections
        self.assertEqual(connection.peer, "198.51.100.7 (via 127.0.0.1:50000)")
        refused, _ = self.connect(50001)
        refused.dataReceived(upgrade(X_Forwarded_For="198.51.100.8"))
        self.lose(refused)
        [warning] = warnings(self.logged, "refused the WebSocket upgrade")
        self.assertIn("198.51.100.8 (via 127.0.0.1:50001) (401 Unauthorized): no bearer token", warning)


class ServerFlowControlTests(_ServerTests, SynchronousTestCase):
    role = OUT
    settings = {"stall-timeout": 10.0}

    def test_stalledPeer(self):
        """
        While a peer reads nothing its frames are dropped and counted and
        nothing more is read from it; after --stall-timeout it is dropped:
        the stream ends' flow control, over the socket under the WebSocket.
        """
        protocol, transport = self.upgraded()
        [connection] = self.end.connections
        self.assertIs(transport.producer, connection)
        connection.pauseProducing()
        self.assertEqual(transport.producerState, "paused")
        before = transport.value()
        self.end.send(REQUEST, None)
        self.assertEqual(transport.value(), before)
        self.assertEqual(self.end.factory.dropped, 1)
        self.reactor.advance(10)
        self.assertTrue(transport.disconnected)
        self.lose(protocol)
        self.assertTrue(warnings(self.logged, "--stall-timeout"))

    def test_tuned(self):
        """
        The socket under the WebSocket is tuned as a stream end's: what may
        be queued for the peer is its buffer, set from --max-send-queue;
        Nagle off, keepalive on.
        """
        protocol, transport = self.upgraded(transport=TCPTransport)
        self.assertEqual((transport.bufferSize, transport.noDelay, transport.keepAlive), (262144, True, True))


class _ClientTests:
    """
    A ws/client end on a fake reactor, answered by hand.
    """

    settings = {}

    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.end, self.reactor = make("ws/client:127.0.0.1:12345/t", OUT, None, **self.settings)
        self.failures = []
        self.end.whenFailed().addCallback(self.failures.append)
        self.end.startService()
        self.lost = set()

    def tearDown(self):
        self.end.stopService()
        for protocol in getattr(self, "protocols", []):
            if protocol not in self.lost:
                protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def dialled(self, port=40000):
        """
        Complete the end's last dial: the protocol and its transport.
        """
        _, _, factory, _, _ = self.reactor.tcpClients.pop()
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 12345))
        transport = StringTransport(hostAddress=IPv4Address("TCP", "127.0.0.1", port),
                                    peerAddress=IPv4Address("TCP", "127.0.0.1", 12345))
        protocol.makeConnection(transport)
        self.protocols = getattr(self, "protocols", []) + [protocol]
        return protocol, transport

    def lose(self, protocol):
        self.lost.add(protocol)
        protocol.connectionLost(Failure(ConnectionDone()))

    def accept(self, protocol, transport):
        key = [line.split(b": ")[1] for line in transport.value().split(b"\r\n")
               if line.startswith(b"Sec-WebSocket-Key")]
        accept = base64.b64encode(hashlib.sha1(key[0] + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
        transport.clear()
        protocol.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")


class ClientTests(_ClientTests, SynchronousTestCase):
    def test_request(self):
        """
        The client asks for the upgrade on its path, naming the server, with
        no Origin and no token unless it has one.
        """
        protocol, transport = self.dialled()
        lines = transport.value().split(b"\r\n")
        self.assertEqual(lines[0], b"GET /t HTTP/1.1")
        self.assertIn(b"Host: 127.0.0.1:12345", lines)
        self.assertIn(b"User-Agent: uhppoted-tunnel", lines)
        self.assertFalse([line for line in lines if line.lower().startswith((b"origin", b"authorization"))])

    def test_upgraded(self):
        """
        Once the server grants the upgrade the connection is ready: queued
        requests go out, one masked binary message each.
        """
        self.end.send(REQUEST, None)
        protocol, transport = self.dialled()
        self.assertEqual(self.end.connections, [])
        self.accept(protocol, transport)
        [connection] = self.end.connections
        self.assertEqual(connection.peer, "127.0.0.1:12345")
        data = transport.value()
        self.assertEqual((data[0], data[1]), (0x82, 0x80 | 70))
        mask, payload = data[2:6], data[6:]
        self.assertEqual(bytes(b ^ mask[i % 4] for i, b in enumerate(payload)), encode(1, REQUEST))

    def test_refused(self):
        """
        A refused upgrade fails the attempt: one warning with the server's
        answer, and the next dial after the backoff.
        """
        protocol, transport = self.dialled()
        protocol.dataReceived(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(transport.disconnected)
        self.lose(protocol)
        [warning] = warnings(self.logged, "could not connect")
        self.assertEqual(warning, "could not connect to 127.0.0.1:12345/t (server refused the upgrade: 401 "
                                  "Unauthorized): retrying in 5s")
        self.assertEqual(self.end.connections, [])
        self.reactor.advance(4.9)
        self.assertEqual(self.reactor.tcpClients, [])
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_notWebSocket(self):
        """
        A server that answers with something else than HTTP, or closes the
        connection, fails the attempt saying so.
        """
        protocol, transport = self.dialled()
        protocol.dataReceived(encode(1, REQUEST) + b"\r\n\r\n")
        self.lose(protocol)
        self.reactor.advance(5)
        protocol, transport = self.dialled()
        self.lose(protocol)
        found = warnings(self.logged, "could not connect")
        self.assertIn("is not HTTP", found[0])
        self.assertIn("closed the connection during the WebSocket upgrade: is it a ws/ end?", found[1])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_timeout(self):
        """
        A server that never answers the upgrade fails the attempt after
        --handshake-timeout.
        """
        protocol, transport = self.dialled()
        self.reactor.advance(15)
        self.assertTrue(transport.disconnected)
        self.lose(protocol)
        [warning] = warnings(self.logged, "could not connect")
        self.assertIn("no answer to the WebSocket upgrade within 15s", warning)

    def test_reconnectsAfterClose(self):
        """
        When the server closes the connection the client closes its side and
        dials again.
        """
        protocol, transport = self.dialled()
        self.accept(protocol, transport)
        protocol.dataReceived(b"\x88\x02" + struct.pack("!H", 1000))
        self.assertTrue(transport.disconnecting)
        self.lose(protocol)
        self.assertEqual(self.end.connections, [])
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_stopWhileUpgrading(self):
        """
        Stopping while the upgrade is pending drops the connection.
        """
        protocol, transport = self.dialled()
        self.end.stopService()
        self.assertTrue(transport.disconnected)
        self.lose(protocol)


class ClientRetryTests(_ClientTests, SynchronousTestCase):
    settings = {"max-retries": 0}

    def test_outOfRetries(self):
        """
        With --max-retries 0 a refused upgrade ends the end, naming the
        address and the answer.
        """
        protocol, transport = self.dialled()
        protocol.dataReceived(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        self.lose(protocol)
        self.assertEqual(self.failures, ["could not connect to 127.0.0.1:12345/t after 1 attempt(s): server refused "
                                         "the upgrade: 403 Forbidden"])


class ClientTokenTests(_ClientTests, SynchronousTestCase):
    def setUp(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(TOKEN)
        os.chmod(path, 0o600)
        self.settings = {"token-file": path}
        _ClientTests.setUp(self)

    def test_sendsToken(self):
        """
        A client with --token-file sends 'Authorization: Bearer TOKEN'.
        """
        protocol, transport = self.dialled()
        self.assertIn(b"\r\nAuthorization: Bearer " + TOKEN.encode() + b"\r\n", transport.value())


class BinaryFrameTests(SynchronousTestCase):
    def test_sameAsAutobahn(self):
        """
        A frame written by binary_frame reads back, through autobahn's own
        unmasking, as the payload, for each length encoding.
        """
        from autobahn.websocket.xormasker import create_xor_masker

        from uhppoted_tunnel.transports.ws.connection import binary_frame

        for size in (0, 1, 5, 70, 125, 126, 1030, 65535, 65536):
            payload = (bytes(range(256)) * (size // 256 + 1))[:size]
            offset = 2 if size < 126 else 4 if size < 65536 else 10
            plain = binary_frame(payload, False)
            self.assertEqual((plain[0], plain[1] & 0x80, plain[offset:]), (0x82, 0, payload))
            frame = binary_frame(payload, True)
            self.assertEqual((frame[0], frame[1] & 0x80), (0x82, 0x80))
            key, body = frame[offset:offset + 4], frame[offset + 4:]
            self.assertEqual(create_xor_masker(key, size).process(body) if size else body, payload)


class ClientPingTests(_ClientTests, SynchronousTestCase):
    settings = {"ws-ping": 5.0}

    def test_pingUnanswered(self):
        """
        A server that answers no ping within --ws-ping is dropped, with a
        warning, and the client dials again.
        """
        protocol, transport = self.dialled()
        self.accept(protocol, transport)
        self.reactor.advance(5)
        self.assertEqual(transport.value()[0], 0x89)
        self.reactor.advance(5)
        self.assertTrue(transport.disconnected)
        self.lose(protocol)
        [warning] = warnings(self.logged, "no answer from 127.0.0.1:12345 to a ping within 5s")
        self.assertIn("--ws-ping", warning)
        self.reactor.advance(5)
        self.assertEqual(len(self.reactor.tcpClients), 1)
