# -*- test-case-name: tests.loopback.test_http -*-
"""
Real http/ and https/ tunnels on 127.0.0.1 in this process, driven with
treq (or raw sockets where the bytes matter) against the controller
emulator.
"""

import base64
import gzip
import ipaddress
import json
import os
from io import BytesIO

from treq.client import HTTPClient
from twisted.internet import reactor, ssl
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import (
    Agent,
    FileBodyProducer,
    HTTPConnectionPool,
    ResponseFailed,
    ResponseNeverReceived,
    readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from uhppoted import decode, encode
from zope.interface import implementer

from tests import certs
from uhppoted_tunnel import emulator
from uhppoted_tunnel.app import config
from uhppoted_tunnel.observe import jsonapi
from uhppoted_tunnel.observe import web
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.testing import LogWatcher
from uhppoted_tunnel.app.tunnel import TunnelService

SERIALS = emulator.DEFAULT_SERIALS
GET_CONTROLLER = list(encode.get_controller_request(0))
JSON = {"Content-Type": ["application/json"]}


class Silent(DatagramProtocol):
    """
    A UDP port that never answers.
    """


class RawClient(Protocol):
    """
    Sends bytes as they are and collects everything until the server
    closes.
    """

    def __init__(self, data):
        self.data = data
        self.received = []
        self.done = Deferred()

    def connectionMade(self):
        self.transport.write(self.data)

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.done.callback(b"".join(self.received))


class TunnelMixin:
    """
    A tunnel from an HTTP end on 127.0.0.1 to emulated controllers.
    """

    timeout = 30
    scheme = "http"

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.log = LogWatcher()
        self.addCleanup(self.log.stop)
        self.controllers = self.emulate(SERIALS)
        self.html = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.html, "sub", "deeper"))
        files = {
            "index.html": "<h1>tunnel</h1>",
            "hello.txt": "hello",
            ".secret": "secret",
            os.path.join("sub", ".hidden"): "hidden",
            os.path.join("sub", "deeper", "index.html"): "deeper",
            os.path.join(os.pardir, "outside.txt"): "outside",
        }
        for name, text in files.items():
            with open(os.path.join(self.html, name), "w") as f:
                f.write(text)
        os.symlink(os.path.join(self.html, os.pardir, "outside.txt"), os.path.join(self.html, "escape.txt"))
        os.symlink("hello.txt", os.path.join(self.html, "alias.txt"))
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(self.pool.closeCachedConnections)
        self.client = HTTPClient(Agent(reactor, contextFactory=self.policy(), pool=self.pool))

    def policy(self):
        from twisted.web.client import BrowserLikePolicyForHTTPS

        return BrowserLikePolicyForHTTPS()

    def emulate(self, serials, **settings):
        port = emulator.listen(reactor, [emulator.Controller(serial, **settings) for serial in serials])
        self.addCleanup(port.stopListening)
        return port

    def tunnel_args(self):
        return []

    @inlineCallbacks
    def tunnel(self, *args, out=None):
        """
        Start a tunnel; C{self.url} is its HTTP end's base URL.
        """
        if out is None:
            out = "udp/broadcast:127.0.0.1:{}".format(self.controllers.getHost().port)
        options = Options()
        options.parseOptions(["--in", "{}/127.0.0.1:0".format(self.scheme), "--out", out, "--udp-timeout", "1s",
                              "--rate-limit", "1000", "--html", self.html] + self.tunnel_args() + list(args))
        service = TunnelService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        port = yield service.in_.whenListening()
        self.port = port.getHost().port
        self.url = "{}://127.0.0.1:{}".format(self.scheme, self.port)
        return service

    @inlineCallbacks
    def post(self, path, document=None, body=None, headers=JSON, client=None):
        """
        POST JSON; return the response and its body parsed as JSON.
        """
        if body is None:
            body = json.dumps(document).encode()
        response = yield (client or self.client).post(self.url + path, data=body, headers=headers)
        content = yield response.content()
        return response, json.loads(content)

    @inlineCallbacks
    def get(self, path):
        response = yield self.client.get(self.url + path)
        content = yield response.content()
        return response.code, content


class HTTPTunnelTests(TunnelMixin, TestCase):
    def silent_out(self):
        port = reactor.listenUDP(0, Silent(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return "udp/broadcast:127.0.0.1:{}".format(port.getHost().port)

    @inlineCallbacks
    def raw(self, data):
        client = RawClient(data)
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", self.port), client)
        received = yield client.done
        return received

    @inlineCallbacks
    def test_send(self):
        """
        POST /udp/send answers the first reply as {"ID", "reply"} numbers,
        as JSON, and (without --debug) logs no hex dump.
        """
        yield self.tunnel()
        request = list(encode.get_controller_request(SERIALS[1]))
        response, answer = yield self.post("/udp/send", {"ID": 17, "wait": True, "request": request},
                                           headers={"Content-Type": ["application/json; charset=utf-8"]})
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders("Content-Type"), ["application/json"])
        self.assertEqual(sorted(answer), ["ID", "reply"])
        self.assertEqual(answer["ID"], 17)
        self.assertEqual(decode.get_controller_response(bytes(answer["reply"])).controller, SERIALS[1])
        self.assertFalse([m for m in self.log.messages() if "00000000  17 94" in m])
        self.assertFalse(response.headers.hasHeader("Server"))

    @inlineCallbacks
    def test_sendBase64(self):
        """
        A request sent as a base64 string is answered like an array.
        """
        yield self.tunnel()
        request = base64.b64encode(encode.get_controller_request(SERIALS[0])).decode()
        response, answer = yield self.post("/udp/send", {"ID": 2, "request": request})
        self.assertEqual(decode.get_controller_response(bytes(answer["reply"])).controller, SERIALS[0])

    @inlineCallbacks
    def test_sendNoWait(self):
        """
        A send with "wait": false (set-ip, never answered) is answered at
        once with just its ID, and reaches the controller.
        """
        yield self.tunnel()
        request = encode.set_ip_request(SERIALS[0], ipaddress.IPv4Address("127.0.0.9"),
                                        ipaddress.IPv4Address("255.255.255.0"), ipaddress.IPv4Address("127.0.0.1"))
        started = reactor.seconds()
        response, answer = yield self.post("/udp/send", {"ID": 5, "wait": False, "request": list(request)})
        self.assertEqual((response.code, answer), (200, {"ID": 5}))
        self.assertLess(reactor.seconds() - started, 0.9)
        yield self.log.waitFor("set-ip request from", reactor)

    @inlineCallbacks
    def test_broadcast(self):
        """
        POST /udp/broadcast answers every reply that came within its wait.
        """
        yield self.tunnel()
        response, answer = yield self.post("/udp/broadcast", {"ID": 9, "wait": "500ms", "request": GET_CONTROLLER})
        self.assertEqual((response.code, sorted(answer)), (200, ["ID", "replies"]))
        self.assertEqual(answer["ID"], 9)
        serials = [decode.get_controller_response(bytes(reply)).controller for reply in answer["replies"]]
        self.assertEqual(sorted(serials), sorted(SERIALS))

    @inlineCallbacks
    def test_broadcastToNothing(self):
        """
        A broadcast nobody answers is answered with an empty list once its
        wait is over.
        """
        yield self.tunnel(out=self.silent_out())
        started = reactor.seconds()
        response, answer = yield self.post("/udp/broadcast", {"ID": 1, "wait": "300ms", "request": GET_CONTROLLER})
        self.assertEqual((response.code, answer), (200, {"ID": 1, "replies": []}))
        self.assertGreaterEqual(reactor.seconds() - started, 0.29)

    @inlineCallbacks
    def test_sendTimesOut(self):
        """
        A send with no reply is answered 504 with Go's duration text once
        --udp-timeout has passed.
        """
        yield self.tunnel(out=self.silent_out())
        started = reactor.seconds()
        response, answer = yield self.post("/udp/send", {"ID": 4, "request": GET_CONTROLLER})
        elapsed = reactor.seconds() - started
        self.assertEqual((response.code, answer), (504, {"ID": 4, "error": "no reply within 1s"}))
        self.assertTrue(0.95 <= elapsed < 5, elapsed)

    @inlineCallbacks
    def test_clientGoesAway(self):
        """
        When a client gives up on a send, its timer is cancelled and
        nothing is written to it; --debug logs the request with a hex dump.
        """
        service = yield self.tunnel("--debug", out=self.silent_out())
        d = self.post("/udp/send", {"ID": 66, "request": GET_CONTROLLER})
        event = yield self.log.waitFor("request 66 (64 bytes) from 127.0.0.1:", reactor)
        self.assertIn("00000000  17 94", event["dump"])
        [exchange] = service.in_.pending
        timer = exchange.timer
        self.assertTrue(timer.active())
        finished = exchange.request.notifyFinish()
        d.cancel()
        yield self.assertFailure(d, ResponseNeverReceived)
        yield self.assertFailure(finished, Exception)
        self.assertEqual(service.in_.pending, set())
        self.assertFalse(timer.active())
        self.assertIsNone(exchange.timer)

    @inlineCallbacks
    def test_gzip(self):
        """
        A broadcast answer over 16 KiB is gzipped for a client that accepts
        gzip, and sent plain to one that does not.
        """
        # 120 replies of ~180 bytes of JSON each: about 21 KB
        controllers = self.emulate(range(4000000000, 4000000120), address="192.168.199.211",
                                   netmask="255.255.255.255", gateway="192.168.199.254", mac="ff:ee:dd:cc:bb:aa")
        yield self.tunnel(out="udp/broadcast:127.0.0.1:{}".format(controllers.getHost().port))
        agent = Agent(reactor, pool=self.pool)
        body = json.dumps({"ID": 3, "wait": "1s", "request": GET_CONTROLLER}).encode()
        for accept, gzipped in ((b"gzip", True), (b"identity", False)):
            headers = Headers({b"Content-Type": [b"application/json"], b"Accept-Encoding": [accept]})
            response = yield agent.request(b"POST", (self.url + "/udp/broadcast").encode(), headers,
                                           FileBodyProducer(BytesIO(body)))
            content = yield readBody(response)
            self.assertEqual(response.headers.getRawHeaders(b"Content-Encoding"), [b"gzip"] if gzipped else None)
            text = gzip.decompress(content) if gzipped else content
            self.assertGreater(len(text), jsonapi.GZIP_MINIMUM)
            self.assertEqual(len(json.loads(text)["replies"]), 120)

    @inlineCallbacks
    def test_badRequests(self):
        """
        Each kind of bad input is answered 400 with a JSON error (and the ID
        once it is known), and sends nothing to the controllers.
        """
        yield self.tunnel()
        cases = [
            ({"Content-Type": ["text/plain"]}, b'{"ID":1,"request":[1]}', None),
            ({}, b'{"ID":1,"request":[1]}', None),
            (JSON, b'{"ID":1,"request":[1', None),
            (JSON, b'"just a string"', None),
            (JSON, b'{"ID":"1","request":[1]}', None),
            (JSON, b'{"ID":1.5,"request":[1]}', None),
            (JSON, b'{"ID":1}', 1),
            (JSON, b'{"ID":1,"request":[]}', 1),
            (JSON, b'{"ID":1,"request":[1,256]}', 1),
            (JSON, b'{"ID":1,"request":[1,-1]}', 1),
            (JSON, b'{"ID":1,"request":"not base64!"}', 1),
            (JSON, json.dumps({"ID": 1, "request": [0] * 1025}).encode(), 1),
            (JSON, b'{"ID":1,"request":[1],"wait":"often"}', 1),
        ]
        for headers, body, ident in cases:
            response, answer = yield self.post("/udp/send", body=body, headers=headers)
            self.assertEqual(response.code, 400, body)
            self.assertEqual(answer.get("ID"), ident, body)
            self.assertTrue(answer["error"], body)
        for wait in ('"soon"', '"-1s"', "5"):
            response, answer = yield self.post("/udp/broadcast", body=b'{"ID":2,"request":[1],"wait":%s}' % (
                wait.encode(),))
            self.assertEqual((response.code, answer["ID"]), (400, 2), wait)
            self.assertTrue(answer["error"].startswith("'wait'"), answer)
        self.assertEqual(self.controllers.protocol.received, 0)

    @inlineCallbacks
    def test_methodNotAllowed(self):
        """
        Any method but POST on /udp/send or /udp/broadcast is answered 405
        with Allow: POST.
        """
        yield self.tunnel()
        for method, path in (("GET", "/udp/send"), ("PUT", "/udp/broadcast"), ("DELETE", "/udp/send")):
            response = yield self.client.request(method, self.url + path)
            answer = yield response.json()
            self.assertEqual(response.code, 405, (method, path))
            self.assertEqual(response.headers.getRawHeaders("Allow"), ["POST"])
            self.assertIn("error", answer)

    @inlineCallbacks
    def test_unknownUDPPath(self):
        """
        Another path under /udp/ is answered 404 with a JSON error.
        """
        yield self.tunnel()
        response, answer = yield self.post("/udp/other", {"ID": 1, "request": [1]})
        self.assertEqual(response.code, 404)
        self.assertIn("/udp/send", answer["error"])

    @inlineCallbacks
    def test_tooLarge(self):
        """
        A body over 16 KiB is answered 413 with a JSON error.
        """
        yield self.tunnel()
        body = json.dumps({"ID": 1, "request": [0] * 6000}).encode()
        self.assertGreater(len(body), web.MAX_BODY)
        response, answer = yield self.post("/udp/send", body=body)
        self.assertEqual(response.code, 413)
        self.assertEqual(answer, {"error": "request body over 16384 bytes"})

    @inlineCallbacks
    def test_tooLargeChunked(self):
        """
        A chunked body (no Content-Length) is counted as it arrives,
        answered 413 once it has all arrived, and the connection closed.
        """
        yield self.tunnel()
        chunk = b"x" * 20000
        received = yield self.raw(b"POST /udp/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                  b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(chunk), chunk))
        self.assertTrue(received.startswith(b"HTTP/1.1 413 "), received[:100])
        self.assertEqual(json.loads(received.split(b"\r\n\r\n", 1)[1]), {"error": "request body over 16384 bytes"})

    @inlineCallbacks
    def test_tooLargeDeclared(self):
        """
        A body declared far over the limit, or announced with Expect:
        100-continue, is answered 413 before it is sent, without a 100
        Continue, and the connection closed.
        """
        yield self.tunnel()
        for header in (b"Content-Length: 1000000000", b"Content-Length: 20000\r\nExpect: 100-continue"):
            received = yield self.raw(b"POST /udp/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                      b"%s\r\n\r\n" % header)
            self.assertTrue(received.startswith(b"HTTP/1.1 413 "), received)
            self.assertNotIn(b"100 Continue", received)
            self.assertEqual(received.count(b"HTTP/1.1"), 1)

    @inlineCallbacks
    def test_rateLimited(self):
        """
        A request the router refuses for the rate limit is answered 429 with
        a JSON error and Retry-After.
        """
        yield self.tunnel("--rate-limit", "0.01", "--rate-limit-burst", "1")
        response, answer = yield self.post("/udp/send", {"ID": 1, "request": GET_CONTROLLER})
        self.assertEqual(response.code, 200)
        response, answer = yield self.post("/udp/send", {"ID": 2, "request": GET_CONTROLLER})
        self.assertEqual((response.code, answer), (429, {"ID": 2, "error": "rate limit exceeded"}))
        self.assertEqual(response.headers.getRawHeaders("Retry-After"), ["100"])

    @inlineCallbacks
    def test_exposure(self):
        """
        Issue 25, item 12, on a real socket: a 429's reason phrase is "Too
        Many Requests"; twisted.web's own 400 (a header line it cannot
        parse) carries the security headers; an end on 127.0.0.1 has no
        warning that it is exposed.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        from uhppoted_tunnel.observe.web import SECURITY_HEADERS

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        yield self.tunnel("--rate-limit", "0.01", "--rate-limit-burst", "1")
        self.assertEqual([e for e in logged if "serves the request API" in e.get("log_format", "")], [])
        body = json.dumps({"ID": 1, "request": GET_CONTROLLER}).encode()
        request = (b"POST /udp/send HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
        yield self.raw(request)
        received = yield self.raw(request)
        self.assertTrue(received.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), received)
        received = yield self.raw(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n")
        self.assertTrue(received.startswith(b"HTTP/1.1 400 Bad Request\r\n"), received)
        for name, value in SECURITY_HEADERS:
            self.assertIn(name + b": " + value + b"\r\n", received)

    @inlineCallbacks
    def test_static(self):
        """
        Files in --html are served read-only: / is its index.html, a folder
        redirects to its slash and serves its own index, a symbolic link
        within the folder is followed.
        """
        yield self.tunnel()
        self.assertEqual((yield self.get("/")), (200, b"<h1>tunnel</h1>"))
        self.assertEqual((yield self.get("/hello.txt")), (200, b"hello"))
        self.assertEqual((yield self.get("/alias.txt")), (200, b"hello"))
        self.assertEqual((yield self.get("/sub/deeper")), (200, b"deeper"))
        response = yield self.client.post(self.url + "/hello.txt", data=b"x")
        yield response.content()
        self.assertEqual(response.code, 405)

    @inlineCallbacks
    def test_noDirectoryListing(self):
        """
        A folder without an index.html is not listed.
        """
        yield self.tunnel()
        code, content = yield self.get("/sub/")
        self.assertEqual(code, 404)
        self.assertNotIn(b".hidden", content)

    @inlineCallbacks
    def test_noDotfiles(self):
        """
        No path part may start with a dot, even when the file exists.
        """
        yield self.tunnel()
        for path in ("/.secret", "/sub/.hidden", "/sub/%2ehidden"):
            code, content = yield self.get(path)
            self.assertEqual(code, 404, path)

    @inlineCallbacks
    def test_noEscape(self):
        """
        Nothing outside the folder is served: not through .., an encoded
        .. or slash, nor a symbolic link pointing out.
        """
        yield self.tunnel()
        code, _ = yield self.get("/escape.txt")
        self.assertEqual(code, 404)
        for path in (b"/../outside.txt", b"/sub/../../outside.txt", b"/%2e%2e/outside.txt", b"/..%2foutside.txt"):
            received = yield self.raw(b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path)
            self.assertTrue(received.startswith(b"HTTP/1.1 404 "), (path, received[:40]))
            self.assertNotIn(b"outside", received.split(b"\r\n\r\n", 1)[1])

    @inlineCallbacks
    def test_missingFolder(self):
        """
        A missing --html folder is a warning, not an error: files are 404
        (C{/} is the status page) and the UDP endpoints still work.
        """
        yield self.tunnel("--html", os.path.join(self.html, "nosuch"))
        yield self.log.waitFor("not found: static files will not be served", reactor)
        code, _ = yield self.get("/index.html")
        self.assertEqual(code, 404)
        code, page = yield self.get("/")
        self.assertEqual(code, 200)
        self.assertIn(b"uhppoted-tunnel status", page)
        response, answer = yield self.post("/udp/send", {"ID": 1, "request": list(
            encode.get_controller_request(SERIALS[0]))})
        self.assertEqual(response.code, 200)

    @inlineCallbacks
    def test_stopClosesKeepAlive(self):
        """
        Stopping the tunnel closes idle keep-alive connections, and its
        Deferred fires once they are closed.
        """
        service = yield self.tunnel()
        pool = HTTPConnectionPool(reactor, persistent=True)
        self.addCleanup(pool.closeCachedConnections)
        client = HTTPClient(Agent(reactor, pool=pool))
        response, _ = yield self.post("/udp/send", {"ID": 1, "wait": False, "request": [1]}, client=client)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(service.in_.factory.protocols), 1)
        yield service.stopService()
        self.assertEqual(service.in_.factory.protocols, {})

    @inlineCallbacks
    def test_stopAnswersPending(self):
        """
        A send still waiting when the tunnel stops is answered 503.
        """
        service = yield self.tunnel("--debug", out=self.silent_out())
        d = self.post("/udp/send", {"ID": 8, "request": GET_CONTROLLER})
        yield self.log.waitFor("request 8 (64 bytes)", reactor)
        yield service.stopService()
        response, answer = yield d
        self.assertEqual((response.code, answer), (503, {"ID": 8, "error": "the tunnel is stopping"}))


@implementer(IPolicyForHTTPS)
class TrustCA:
    """
    Trusts the test CA for 127.0.0.1, optionally presenting a client
    certificate.
    """

    def __init__(self, ca, identity=None):
        self.ca = ca
        self.identity = identity

    def creatorForNetloc(self, hostname, port):
        return ssl.optionsForClientTLS("127.0.0.1", trustRoot=self.ca, clientCertificate=self.identity)


class HTTPSTunnelTests(TunnelMixin, TestCase):
    scheme = "https"

    def setUp(self):
        self.files = certs.make(self.mktemp())
        TunnelMixin.setUp(self)

    def read(self, path):
        with open(path, "rb") as f:
            return f.read()

    def policy(self, identity=True):
        ca = ssl.Certificate.loadPEM(self.read(self.files["ca"][0]))
        client = None
        if identity:
            cert, key = self.files["client"]
            client = ssl.PrivateCertificate.loadPEM(self.read(cert) + self.read(key))
        return TrustCA(ca, client)

    def tunnel_args(self):
        cert, key = self.files["server"]
        return ["--ca-cert", self.files["ca"][0], "--cert", cert, "--key", key]

    @inlineCallbacks
    def test_send(self):
        """
        An https end answers a send like an http one; without --client-auth
        a client without a certificate is served.
        """
        service = yield self.tunnel()
        self.assertEqual(service.in_.log_tag, "HTTPS")
        anonymous = HTTPClient(Agent(reactor, contextFactory=self.policy(identity=False), pool=self.pool))
        response, answer = yield self.post("/udp/send", {"ID": 1, "request": list(
            encode.get_controller_request(SERIALS[0]))}, client=anonymous)
        self.assertEqual(decode.get_controller_response(bytes(answer["reply"])).controller, SERIALS[0])
        yield self.log.waitFor("listening on 127.0.0.1:{}".format(self.port), reactor)

    @inlineCallbacks
    def test_clientAuth(self):
        """
        With --client-auth a client with a certificate from the CA is
        served and one without a certificate is refused.
        """
        yield self.tunnel("--client-auth")
        code, content = yield self.get("/hello.txt")
        self.assertEqual((code, content), (200, b"hello"))
        anonymous = HTTPClient(Agent(reactor, contextFactory=self.policy(identity=False), pool=self.pool))
        try:
            response = yield anonymous.get(self.url + "/hello.txt")
            yield response.content()
        except Exception:
            failure = Failure()
        else:
            self.fail("a client without a certificate was served: {}".format(response.code))
        self.assertTrue(failure.check(ResponseNeverReceived, ResponseFailed), failure)
        self.assertIn("certificate", str(failure.value))
