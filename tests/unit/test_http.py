# -*- test-case-name: tests.unit.test_http -*-
"""
Tests for L{uhppoted_tunnel.ends.http} with no sockets: the request
parsing on its own and the connector maker.
"""

import base64
import gzip
import json

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase
from uhppoted import encode
from zope.interface.verify import verifyObject

from tests import certs
from uhppoted_tunnel import emulator
from uhppoted_tunnel.app import config
from uhppoted_tunnel.observe import jsonapi
from uhppoted_tunnel.interfaces import IN, IConnectorMaker, IInEnd, ISecureEnd, ITally, ITelemetryServer
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.app.spec import connector_makers
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor

SERIALS = emulator.DEFAULT_SERIALS
GET_CONTROLLER = list(encode.get_controller_request(0))
JSON = {"Content-Type": ["application/json"]}


class ParseTests(SynchronousTestCase):
    """
    Request bodies and headers, checked without a network.
    """

    def parse(self, document, broadcast=False, max_payload=1024):
        body = document if isinstance(document, bytes) else json.dumps(document).encode()
        return jsonapi.parse_body(body, broadcast, max_payload)

    def refused(self, document, broadcast=False, max_payload=1024):
        return self.assertRaises(jsonapi.BadRequest, self.parse, document, broadcast, max_payload)

    def test_numbers(self):
        """
        A request given as an array of numbers becomes those bytes; a send
        waits for its reply unless told not to.
        """
        parsed = self.parse({"ID": 7, "request": GET_CONTROLLER})
        self.assertEqual((parsed.ident, parsed.payload, parsed.wait), (7, bytes(GET_CONTROLLER), True))
        self.assertIs(self.parse({"ID": 7, "wait": False, "request": [1]}).wait, False)

    def test_base64(self):
        """
        A request may be a base64 string, as Go's []byte takes it.
        """
        text = base64.b64encode(bytes(GET_CONTROLLER)).decode()
        self.assertEqual(self.parse({"ID": 1, "request": text}).payload, bytes(GET_CONTROLLER))

    def test_missingID(self):
        """
        A missing ID is 0, as Go's zero value.
        """
        self.assertEqual(self.parse({"request": [1]}).ident, 0)

    def test_broadcastWait(self):
        """
        A broadcast waits 5s by default, takes Go durations, and waits at
        most 30s.
        """
        self.assertEqual(self.parse({"request": [1]}, broadcast=True).wait, 5.0)
        self.assertEqual(self.parse({"request": [1], "wait": "1250ms"}, broadcast=True).wait, 1.25)
        self.assertEqual(self.parse({"request": [1], "wait": "1h"}, broadcast=True).wait, jsonapi.MAX_WAIT)

    def test_malformedJSON(self):
        """
        A body that is not JSON, or not a JSON object, is refused.
        """
        self.assertEqual(self.refused(b'{"ID": 1,').message, "invalid JSON")
        self.assertEqual(self.refused(b"\xff\xfe{").message, "invalid JSON")
        self.assertEqual(self.refused([1, 2]).message, "expected a JSON object")

    def test_badID(self):
        """
        An ID that is not a whole number is refused.
        """
        for ident in ("1", 1.5, True, None, 2 ** 63):
            e = self.refused({"ID": ident, "request": [1]})
            self.assertEqual((e.status, e.message, e.ident), (400, "'ID' must be a whole number", None), ident)

    def test_badRequest(self):
        """
        A request that is missing, empty, not numbers 0..255 or not base64
        is refused, naming the field and echoing the ID.
        """
        for value in (None, 5, {}, [], [256], [-1], ["1"], [1.0], [True], "", "!!!", "AAA"):
            e = self.refused({"ID": 3, "request": value})
            self.assertEqual((e.status, e.ident), (400, 3), value)
            self.assertIn("'request'", e.message)

    def test_tooLong(self):
        """
        A request longer than --max-payload is refused.
        """
        e = self.refused({"ID": 3, "request": [0] * 65}, max_payload=64)
        self.assertEqual(e.message, "'request' is 65 bytes (limit 64)")

    def test_badWait(self):
        """
        A broadcast wait that is not a duration, or is negative, and a send
        wait that is not true or false, are refused.
        """
        for wait in ("soon", "-1s", 5, None):
            e = self.refused({"ID": 4, "request": [1], "wait": wait}, broadcast=True)
            self.assertEqual((e.status, e.ident), (400, 4), wait)
            self.assertTrue(e.message.startswith("'wait'"), e.message)
        e = self.refused({"ID": 4, "request": [1], "wait": "yes"})
        self.assertEqual(e.message, "'wait' must be true or false")

    def test_contentType(self):
        """
        Only application/json is taken, with or without a UTF-8 charset.
        """
        jsonapi.check_content_type("application/json")
        jsonapi.check_content_type("Application/JSON; charset=UTF-8")
        for value in (None, "", "text/plain", "application/jsonx", "application/json; charset=latin-1"):
            self.assertRaises(jsonapi.BadRequest, jsonapi.check_content_type, value)

    def test_gzipRule(self):
        """
        Answers over 16 KiB are gzipped when the client accepts gzip; at
        16 KiB or without gzip in Accept-Encoding they are not.
        """
        def answer(size):
            return {"x": "a" * (size - len('{"x":""}'))}

        body, gzipped = jsonapi.encode_json(answer(jsonapi.GZIP_MINIMUM), "gzip")
        self.assertEqual((len(body), gzipped), (jsonapi.GZIP_MINIMUM, False))
        body, gzipped = jsonapi.encode_json(answer(jsonapi.GZIP_MINIMUM + 1), "deflate, gzip")
        self.assertTrue(gzipped)
        self.assertEqual(json.loads(gzip.decompress(body)), answer(jsonapi.GZIP_MINIMUM + 1))
        for accept in (None, "deflate", "gzip;q=0", "identity"):
            self.assertFalse(jsonapi.encode_json(answer(jsonapi.GZIP_MINIMUM + 1), accept)[1], accept)

    def test_compactJSON(self):
        """
        Answers are compact JSON with the ID first, as Go writes them.
        """
        self.assertEqual(jsonapi.encode_json({"ID": 1, "reply": [23, 148]}), (b'{"ID":1,"reply":[23,148]}', False))


class MakerTests(SynchronousTestCase):
    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def test_plugin(self):
        """
        http/ and https/ are found as connector plugins that make in ends
        only.
        """
        makers = connector_makers()
        for prefix in ("http/", "https/"):
            verifyObject(IConnectorMaker, makers[prefix])
            self.assertEqual(makers[prefix].roles(prefix), frozenset([IN]))

    def test_notOut(self):
        """
        An HTTP connector cannot be an out end.
        """
        from twisted.python.usage import UsageError

        e = self.assertRaises(UsageError, Options().parseOptions,
                              ["--in", "udp/listen:127.0.0.1:0", "--out", "http/127.0.0.1:8080"])
        self.assertIn("cannot be an out connector", str(e))

    def test_end(self):
        """
        The end provides L{IInEnd}, relays requests with replies and is
        tagged HTTP (HTTPS over TLS).
        """
        options = Options()
        options.parseOptions(["--in", "http/127.0.0.1:0", "--out", "udp/broadcast:127.0.0.1:60000"])
        maker, spec = options.ends[IN]
        end = maker.makeEnd(spec, IN, options, None, reactor)
        verifyObject(IInEnd, end)
        verifyObject(ITally, end)
        verifyObject(ITelemetryServer, end)
        self.assertEqual((end.role, end.events, end.log_tag), (IN, False, "HTTP"))
        files = certs.make(self.mktemp())
        options["ca-cert"], (options["cert"], options["key"]) = files["ca"][0], files["server"]
        maker, spec = parse("https/127.0.0.1:0", connector_makers())
        self.assertEqual(maker.makeEnd(spec, IN, options, None, reactor).log_tag, "HTTPS")

    def test_secure(self):
        """
        An https/ end provides L{ISecureEnd}: SIGHUP reloads its
        certificates; an http/ end does not.
        """
        files = certs.make(self.mktemp())
        options = Options()
        options.parseOptions(["--in", "http/127.0.0.1:0", "--out", "udp/broadcast:127.0.0.1:60000"])
        maker, spec = options.ends[IN]
        self.assertFalse(ISecureEnd.providedBy(maker.makeEnd(spec, IN, options, None, FakeReactor())))
        options["ca-cert"], (options["cert"], options["key"]) = files["ca"][0], files["server"]
        maker, spec = parse("https/127.0.0.1:0", connector_makers())
        end = maker.makeEnd(spec, IN, options, None, FakeReactor())
        verifyObject(ISecureEnd, end)
        self.assertTrue(end.reloadCertificates())

    def test_limitedAndBacklog(self):
        """
        An HTTP end listens through the connection caps (outside TLS on
        https/), with a backlog of L{limits.LISTEN_BACKLOG}, and its
        deadlines come from the settings.
        """
        from twisted.internet.task import Clock

        from uhppoted_tunnel.link import limits
        from uhppoted_tunnel.transports.tls.secure import SecureServerEndpoint

        clock = Clock()
        options = Options()
        options.parseOptions(["--in", "http/127.0.0.1:0", "--out", "udp/broadcast:127.0.0.1:60000",
                              "--max-connections", "7", "--http-request-timeout", "3s"])
        maker, spec = options.ends[IN]
        end = maker.makeEnd(spec, IN, options, None, clock)
        self.assertIs(end.endpoint, end.limited)
        self.assertEqual(end.limited.endpoint._backlog, limits.LISTEN_BACKLOG)
        self.assertEqual((end.factory.request_timeout, end.factory.secure), (3.0, False))
        files = certs.make(self.mktemp())
        options["ca-cert"], (options["cert"], options["key"]) = files["ca"][0], files["server"]
        maker, spec = parse("https/127.0.0.1:0", connector_makers())
        end = maker.makeEnd(spec, IN, options, None, clock)
        self.assertIsInstance(end.endpoint, SecureServerEndpoint)
        self.assertIs(end.endpoint.endpoint, end.limited)
        self.assertEqual((end.endpoint.timeout, end.factory.request_timeout, end.factory.secure), (15.0, 3.0, True))
        self.assertTrue(end.secure)

    def test_badCertificate(self):
        """
        An https end whose certificate cannot be read is a ValueError when
        it is made, before anything listens.
        """
        options = Options()
        options.parseOptions(["--in", "https/127.0.0.1:0", "--out", "udp/broadcast:127.0.0.1:60000",
                              "--cert", "nosuch.cert", "--key", "nosuch.key"])
        maker, spec = options.ends[IN]
        e = self.assertRaises(ValueError, maker.makeEnd, spec, IN, options, None, reactor)
        self.assertIn("nosuch.cert", str(e))


class DeadlineTests(SynchronousTestCase):
    """
    L{web.ConnectionTracker} puts a deadline on each request's head and
    body (fake transport, fake clock); over TLS the secure endpoint times
    the handshake (L{tests.unit.test_tls}).
    """

    def setUp(self):
        from twisted.internet.task import Clock
        from twisted.web.resource import Resource
        from twisted.web.server import Site
        from twisted.web.static import Data

        from uhppoted_tunnel.observe import web

        self.clock = Clock()
        root = Resource()
        root.putChild(b"hello", Data(b"hello", "text/plain"))
        site = Site(root, reactor=self.clock)
        site.requestFactory = web.LimitedRequest
        self.tracker = web.ConnectionTracker(site, clock=self.clock, request_timeout=10, grace=1)

    def connect(self):
        from twisted.internet.address import IPv4Address
        from twisted.internet.testing import StringTransport

        address = IPv4Address("TCP", "10.0.0.1", 40000)
        protocol = self.tracker.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_dripClosedAtDeadline(self):
        """
        A request still incomplete when the deadline passes is answered 408
        and closed, however recently its last byte came.
        """
        protocol, transport = self.connect()
        for byte in b"GET /hello HTTP/1.1\r\nHost: x\r\n":
            protocol.dataReceived(bytes([byte]))
            self.clock.advance(0.3)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(10)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n"))
        self.assertTrue(transport.disconnecting)

    def test_completeRequestServed(self):
        """
        A request complete in time is answered and the connection stays up
        past the deadline while idle (the idle timeout is Twisted's).
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", transport.value())
        self.clock.advance(30)
        self.assertFalse(transport.disconnecting)
        self.assertNotIn(b"408", transport.value())

    def test_nextRequestStartsWithItsFirstByte(self):
        """
        On a keep-alive connection the next request's time starts with its
        first byte.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        self.clock.advance(30)
        protocol.dataReceived(b"GET /hel")
        self.clock.advance(9.5)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertIn(b"408", transport.value())

    def test_abortedWhenNotRead(self):
        """
        A client that does not let the connection close is aborted after
        the grace period.
        """
        protocol, transport = self.connect()
        aborted = []
        transport.abortConnection = lambda: aborted.append(True)
        self.clock.advance(10)
        self.assertEqual(aborted, [])
        self.clock.advance(1)
        self.assertEqual(aborted, [True])


class ExposureTests(SynchronousTestCase):
    """
    What an HTTP end says and answers when exposed (issue 25, item 12).
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def listen(self, spec):
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import formatEvent, globalLogPublisher

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        fake = FakeReactor()
        options = Options()
        options.parseOptions(["--in", spec, "--out", "udp/broadcast:127.0.0.1:60000"])
        maker, parsed = options.ends[IN]
        end = maker.makeEnd(parsed, IN, options, None, fake)
        end.startService()
        self.addCleanup(end.stopService)
        return [formatEvent(e) for e in logged if e["log_level"].name == "warn"]

    def test_networkAddressWarns(self):
        """
        An http/ end on a network address is warned of, as C{--metrics
        0.0.0.0} is: it serves the request API and the status page. (The
        loopback run, L{tests.loopback.test_http}, has none on 127.0.0.1: a
        memory reactor's port says 0.0.0.0 whatever it is given.)
        """
        warnings = self.listen("http/0.0.0.0:8080")
        self.assertTrue([w for w in warnings if "serves the request API" in w and "status page" in w], warnings)

    def test_tooManyRequestsReason(self):
        """
        A 429 says "Too Many Requests", not "Unknown Status".
        """
        from twisted.web.test.requesthelper import DummyRequest

        request = DummyRequest([b""])
        jsonapi.respond(request, 429, {"error": "rate limit exceeded"})
        self.assertEqual((request.responseCode, request.responseMessage), (429, b"Too Many Requests"))

    def test_twistedBadRequestHasHeaders(self):
        """
        A request twisted.web cannot parse is answered 400 with the
        security headers every answer carries.
        """
        from twisted.internet.address import IPv4Address
        from twisted.internet.task import Clock
        from twisted.internet.testing import StringTransport
        from twisted.web.resource import Resource

        from uhppoted_tunnel.observe import web

        clock = Clock()
        tracker = web.ConnectionTracker(web.QuietSite(Resource(), reactor=clock), clock=clock, request_timeout=10)
        address = IPv4Address("TCP", "10.0.0.1", 40000)
        protocol = tracker.buildProtocol(address)
        transport = StringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nbad header line\r\n\r\n")
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 400 Bad Request\r\n"), answer)
        for name, value in web.SECURITY_HEADERS:
            self.assertIn(name + b": " + value + b"\r\n", answer)
        self.assertTrue(transport.disconnecting)
