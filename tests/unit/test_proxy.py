"""
Tests for the L{uhppoted_tunnel.transports.proxy} package: the CONNECT exchange on
fake connections and a fake clock, proxy URLs, the choice of a proxy from
the flags and the environment as curl makes it, and the client ends that
use it.
"""

import base64

from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import optionsForClientTLS
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransportWithDisconnection
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel import __version__
from uhppoted_tunnel.app import config
from uhppoted_tunnel.transports.proxy.choice import choose, no_proxy_matches
from uhppoted_tunnel.transports.proxy.connect import MAX_ANSWER, ProxyEndpoint, ProxyRefused
from uhppoted_tunnel.transports.proxy.urls import DEFAULT_PORT, Proxy, ProxyError, parse_proxy
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports.tls.secure import SecureClientEndpoint, TLSConnectorMaker
from uhppoted_tunnel.interfaces import OUT
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor

PROXY = Proxy("127.0.0.1", 3128)
PEER = IPv4Address("TCP", "127.0.0.1", 3128)
REQUEST = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"


class FakeDial:
    """
    The endpoint that reaches the proxy: each C{connect} waits for the
    test to complete it (L{complete}) or fail it.
    """

    def __init__(self):
        self.attempts = []
        self.cancelled = 0

    def connect(self, factory):
        def cancel(d):
            self.cancelled += 1

        d = Deferred(cancel)
        self.attempts.append((factory, d))
        return d

    def complete(self):
        """
        Connect the last attempt to a fake proxy connection.

        :return: the transport, whose C{value()} is what was sent.
        """
        factory, d = self.attempts[-1]
        protocol = factory.buildProtocol(PEER)
        transport = StringTransportWithDisconnection(peerAddress=PEER)
        transport.protocol = protocol
        protocol.makeConnection(transport)
        d.callback(protocol)
        return transport


class Recorder(Protocol):
    """
    The wrapped factory's protocol: records what it is given.
    """

    def __init__(self):
        self.received = b""
        self.lost = None

    def dataReceived(self, data):
        self.received += data

    def connectionLost(self, reason):
        self.lost = reason


class Recording(Factory):
    """
    The wrapped factory, counting its starts and stops.
    """

    protocol = Recorder
    noisy = False

    def __init__(self):
        self.built = []
        self.starts = self.stops = 0

    def startFactory(self):
        self.starts += 1

    def stopFactory(self):
        self.stops += 1

    def buildProtocol(self, addr):
        protocol = Factory.buildProtocol(self, addr)
        self.built.append(protocol)
        return protocol


class EndpointTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.dial = FakeDial()
        self.factory = Recording()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def endpoint(self, proxy=PROXY, **kwargs):
        return ProxyEndpoint(self.dial, proxy, "example.com", 443, self.clock, 15.0, **kwargs)

    def connect(self, **kwargs):
        """
        Dial through the proxy and reach it.

        :return: C{(results, transport)}: what the connect Deferred gave, and
            the connection to the proxy.
        """
        results = []
        self.endpoint(**kwargs).connect(self.factory).addBoth(results.append)
        transport = self.dial.complete()
        return results, transport

    def assertFailed(self, results, transport, message, kind=ProxyError, dropped=True):
        """
        The attempt failed with C{message}, the connection to the proxy was
        dropped (unless the proxy closed it), nothing was built and the
        factory stopped again.
        """
        [failure] = results
        self.assertIsInstance(failure, Failure)
        failure.trap(kind)
        self.assertEqual(failure.getErrorMessage(), message)
        self.assertEqual(transport.disconnected, dropped)
        self.assertEqual(self.factory.built, [])
        self.assertEqual((self.factory.starts, self.factory.stops), (1, 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_interface(self):
        """
        A L{ProxyEndpoint} is a stream client endpoint.
        """
        from twisted.internet.interfaces import IStreamClientEndpoint

        verifyObject(IStreamClientEndpoint, self.endpoint())

    def test_request(self):
        """
        Once the proxy is reached the endpoint asks for a tunnel to the host
        with CONNECT and a Host header, and nothing else is sent or built.
        """
        results, transport = self.connect()
        sent = transport.value()
        self.assertTrue(sent.startswith(REQUEST), sent)
        self.assertTrue(sent.endswith(b"\r\n\r\n"))
        self.assertNotIn(b"Proxy-Authorization", sent)
        self.assertEqual((results, self.factory.built), ([], []))

    def test_basicAuth(self):
        """
        A proxy URL with credentials sends them, percent-decoded, as
        C{Proxy-Authorization: Basic}.
        """
        proxy = parse_proxy("http://tunnel%40site:p%3As%20w@127.0.0.1:3128")
        results, transport = self.connect(proxy=proxy)
        expected = b"Proxy-Authorization: Basic " + base64.b64encode(b"tunnel@site:p:s w") + b"\r\n"
        self.assertIn(expected, transport.value())

    def test_ipv6Target(self):
        """
        An IPv6 host is asked for in brackets.
        """
        results = []
        ProxyEndpoint(self.dial, PROXY, "::1", 443, self.clock, 15.0).connect(self.factory).addBoth(results.append)
        self.assertIn(b"CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n", self.dial.complete().value())

    def test_established(self):
        """
        On 200 the wrapped factory's protocol gets the connection, the
        Deferred fires with it, and from then on bytes go both ways
        untouched.
        """
        results, transport = self.connect()
        transport.clear()
        transport.protocol.dataReceived(b"HTTP/1.1 200 Connection established\r\nProxy-agent: x\r\n\r\n")
        [protocol] = self.factory.built
        self.assertEqual(results, [protocol])
        self.assertIs(protocol.transport, transport)
        self.assertEqual(protocol.received, b"")
        transport.protocol.dataReceived(b"frames")
        protocol.transport.write(b"replies")
        self.assertEqual((protocol.received, transport.value()), (b"frames", b"replies"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        messages = [formatEvent(event) for event in self.logged]
        self.assertEqual(messages, ["proxy 127.0.0.1:3128 opened a tunnel to example.com:443"])
        transport.loseConnection()
        self.assertIsNotNone(protocol.lost)
        self.assertEqual((self.factory.starts, self.factory.stops), (1, 1))

    def test_leftover(self):
        """
        Bytes after the answer's head, in the same read, go to the protocol.
        """
        results, transport = self.connect()
        transport.protocol.dataReceived(b"HTTP/1.0 200 OK\r\n\r\nfirst bytes")
        [protocol] = self.factory.built
        self.assertEqual(protocol.received, b"first bytes")

    def test_splitReads(self):
        """
        The answer may arrive a byte at a time, with bare LF line ends.
        """
        results, transport = self.connect()
        for byte in b"HTTP/1.1 200 OK\nVia: 1.1 proxy\n":
            transport.protocol.dataReceived(bytes([byte]))
        self.assertEqual(self.factory.built, [])
        transport.protocol.dataReceived(b"\n")
        transport.protocol.dataReceived(b"X")
        [protocol] = self.factory.built
        self.assertEqual(protocol.received, b"X")

    def test_interimAnswer(self):
        """
        A 1xx answer is skipped: the real one follows.
        """
        results, transport = self.connect()
        transport.protocol.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
        self.assertEqual(len(self.factory.built), 1)

    def test_anySuccess(self):
        """
        Any 2xx opens the tunnel (RFC 9110, 9.3.6).
        """
        results, transport = self.connect()
        transport.protocol.dataReceived(b"HTTP/1.1 204 No Content\r\n\r\n")
        self.assertEqual(len(self.factory.built), 1)

    def test_noTLSBeforeTheAnswer(self):
        """
        A TLS client over the endpoint sends its ClientHello only after the
        proxy's 200.
        """
        factory = TLSMemoryBIOFactory(optionsForClientTLS("example.com"), True, Factory.forProtocol(Protocol))
        results = []
        self.endpoint().connect(factory).addBoth(results.append)
        transport = self.dial.complete()
        self.assertTrue(transport.value().endswith(b"\r\n\r\n"))
        transport.clear()
        transport.protocol.dataReceived(b"HTTP/1.1 200 Connection established\r\n\r\n")
        hello = transport.value()
        self.assertEqual(hello[:1], b"\x16", hello[:20])

    def test_refused(self):
        """
        Any other status fails the attempt with the proxy's answer, and
        drops the connection to the proxy.
        """
        for answer, message in [
            (b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=x\r\n\r\nbody",
             "407 Proxy Authentication Required"),
            (b"HTTP/1.0 403 Forbidden\r\n\r\n", "403 Forbidden"),
            (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", "502 Bad Gateway"),
            (b"HTTP/1.1 500\r\n\r\n", "500"),
            (b"HTTP/1.1 301 \x1b[31mred\x00\r\n\r\n", "301 ?[31mred?"),
        ]:
            self.factory = Recording()
            results, transport = self.connect()
            transport.protocol.dataReceived(answer)
            self.assertFailed(results, transport, "proxy 127.0.0.1:3128 refused CONNECT example.com:443: " + message,
                              ProxyRefused)
            self.assertEqual(results[0].value.code, int(message[:3]))

    def test_refusalNotLogged(self):
        """
        A refusal is not logged here: the client end's retry line says it.
        """
        results, transport = self.connect()
        transport.protocol.dataReceived(b"HTTP/1.1 403 Forbidden\r\n\r\n")
        self.assertEqual(list(self.logged), [])

    def test_closedBeforeAnswer(self):
        """
        A proxy that closes before the end of its answer's head fails the
        attempt.
        """
        for sent in (b"", b"HTTP/1.1 200 Connection est"):
            self.factory = Recording()
            results, transport = self.connect()
            transport.protocol.dataReceived(sent)
            transport.loseConnection()
            self.assertFailed(results, transport,
                              "proxy 127.0.0.1:3128 closed the connection before answering CONNECT example.com:443",
                              dropped=False)

    def test_notHTTP(self):
        """
        An answer that does not start as HTTP fails at once (no wait for a
        head that will never end); so does a status line that is not one.
        """
        results, transport = self.connect()
        transport.protocol.dataReceived(b"SSH-2.0-OpenSSH_9.2")
        self.assertFailed(results, transport, "proxy 127.0.0.1:3128 gave a malformed answer to CONNECT "
                                              "example.com:443: 'SSH-2.0-OpenSSH_9.2' (is it an HTTP proxy?)")
        self.factory = Recording()
        results, transport = self.connect()
        transport.protocol.dataReceived(b"HTTP/1.1 OK\r\n\r\n")
        self.assertFailed(results, transport, "proxy 127.0.0.1:3128 gave a malformed answer to CONNECT "
                                              "example.com:443: 'HTTP/1.1 OK'")

    def test_oversizedHead(self):
        """
        A head longer than the cap fails the attempt as soon as the cap is
        passed, whether it comes in one read or many; one that fits is
        taken.
        """
        self.assertEqual(MAX_ANSWER, 16384)
        head = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 100
        results, transport = self.connect(max_answer=100)
        transport.protocol.dataReceived(head)
        self.assertFailed(results, transport, "proxy 127.0.0.1:3128 gave an answer to CONNECT example.com:443 "
                                              "with a head over 100 bytes")
        self.factory = Recording()
        results, transport = self.connect()
        transport.protocol.dataReceived(b"HTTP/1.1 200 OK\r\n")
        for _ in range(MAX_ANSWER // 1000 + 1):
            transport.protocol.dataReceived(b"X-Padding: " + b"a" * 987 + b"\r\n" if results == [] else b"")
        self.assertFailed(results, transport, "proxy 127.0.0.1:3128 gave an answer to CONNECT example.com:443 "
                                              "with a head over 16384 bytes")
        self.factory = Recording()
        results, transport = self.connect(max_answer=40)
        transport.protocol.dataReceived(b"HTTP/1.1 200 OK\r\nX: 12345678901234\r\n\r\n")
        self.assertEqual(len(self.factory.built), 1)

    def test_interimCounts(self):
        """
        Interim answers count towards the cap: a proxy cannot send 1xx
        answers forever.
        """
        results, transport = self.connect(max_answer=100)
        for _ in range(5):
            transport.protocol.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n")
        self.assertFailed(results, transport, "proxy 127.0.0.1:3128 gave an answer to CONNECT example.com:443 "
                                              "with a head over 100 bytes")

    def test_timeout(self):
        """
        A proxy that does not answer within the timeout fails the attempt
        and is dropped.
        """
        results, transport = self.connect()
        transport.protocol.dataReceived(b"HTTP/1.1 200 ")
        self.clock.advance(14.9)
        self.assertEqual(results, [])
        self.clock.advance(0.1)
        self.assertFailed(results, transport, "proxy 127.0.0.1:3128 did not answer CONNECT example.com:443 within "
                                              "15s (--handshake-timeout)")

    def test_unreachable(self):
        """
        A proxy that cannot be reached fails the attempt, naming the proxy.
        """
        results = []
        self.endpoint().connect(self.factory).addBoth(results.append)
        self.dial.attempts[-1][1].errback(Failure(ConnectionRefusedError("Connection refused")))
        [failure] = results
        failure.trap(ProxyError)
        self.assertEqual(failure.getErrorMessage(), "could not reach proxy 127.0.0.1:3128: Connection was refused "
                                                    "by other side: Connection refused.")
        self.assertEqual((self.factory.starts, self.factory.stops), (1, 1))

    def test_cancelWhileDialling(self):
        """
        Cancelling the attempt while the proxy is being dialled cancels the
        dial.
        """
        results = []
        d = self.endpoint().connect(self.factory)
        d.addBoth(results.append)
        d.cancel()
        results[0].trap(CancelledError)
        self.assertEqual(self.dial.cancelled, 1)
        self.assertEqual((self.factory.starts, self.factory.stops), (1, 1))

    def test_cancelWhileWaiting(self):
        """
        Cancelling the attempt while the proxy has not answered drops the
        connection to the proxy.
        """
        results = []
        d = self.endpoint().connect(self.factory)
        d.addBoth(results.append)
        transport = self.dial.complete()
        d.cancel()
        results[0].trap(CancelledError)
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual((self.factory.starts, self.factory.stops), (1, 1))


class URLTests(SynchronousTestCase):
    def test_forms(self):
        """
        C{http://[USER[:PASS]@]HOST[:PORT][/]}; without a scheme http, and
        without a port 1080, as curl.
        """
        self.assertEqual(DEFAULT_PORT, 1080)
        for text, expected in [
            ("http://proxy.corp:3128", Proxy("proxy.corp", 3128)),
            ("http://proxy.corp:3128/", Proxy("proxy.corp", 3128)),
            ("HTTP://proxy.corp", Proxy("proxy.corp", 1080)),
            ("proxy.corp:8080", Proxy("proxy.corp", 8080)),
            ("10.0.0.1", Proxy("10.0.0.1", 1080)),
            ("http://[::1]:3128", Proxy("::1", 3128)),
            ("http://user:pa%2Fss@proxy:3128", Proxy("proxy", 3128, b"user:pa/ss")),
            ("http://user@proxy:3128", Proxy("proxy", 3128, b"user:")),
            ("http://user:@proxy:3128", Proxy("proxy", 3128, b"user:")),
            ("http://us%C3%A9r:p%40ss@proxy", Proxy("proxy", 1080, "usér:p@ss".encode())),
            ("http://user:p@ss/w:rd@proxy:3128/", Proxy("proxy", 3128, b"user:p@ss/w:rd")),
        ]:
            self.assertEqual(parse_proxy(text), expected, text)
            self.assertEqual(parse_proxy(text).credentials, expected.credentials, text)

    def test_none(self):
        """
        C{none}, in any case, or nothing at all, is no proxy.
        """
        for text in ("none", "NONE", "", "  "):
            self.assertIsNone(parse_proxy(text))

    def test_shownWithoutPassword(self):
        """
        A proxy shows as HOST:PORT, never with its credentials.
        """
        proxy = parse_proxy("http://user:secret@[::1]:3128")
        self.assertEqual(str(proxy), "[::1]:3128")
        self.assertNotIn("secret", repr(proxy))

    def test_refused(self):
        """
        HTTPS and SOCKS proxies, other schemes, paths, bad hosts and ports
        are refused with one line that never shows the password.
        """
        for text, message in [
            ("https://user:secret@proxy:443", "'https://user:***@proxy:443': HTTPS proxies (TLS to the proxy) are "
                                              "not supported"),
            ("socks5://proxy:1080", "'socks5://proxy:1080': SOCKS proxies are not supported"),
            ("socks5h://u:secret@proxy:1080", "'socks5h://u:***@proxy:1080': SOCKS proxies are not supported"),
            ("ftp://proxy", "'ftp://proxy': unsupported scheme 'ftp'"),
            ("http://proxy:3128/path", "'http://proxy:3128/path': a proxy URL has no path"),
            ("http://proxy:0", "'http://proxy:0': invalid port '0'"),
            ("http://proxy:99999", "invalid port '99999'"),
            ("http://proxy:x", "invalid port 'x'"),
            ("http://:3128", "no host"),
            ("http://pro xy:3128", "invalid host 'pro xy'"),
            ("http://[nope]:3128", "invalid IPv6 address 'nope'"),
            ("http://:secret@proxy", "'http://:***@proxy': no user name"),
            ("socks5://user:se@cr/et@proxy", "'socks5://user:***@proxy'"),
            ("http://user:se@cr/et@proxy/path", "'http://user:***@proxy/path': a proxy URL has no path"),
            ("http://proxy:1:2", "invalid address 'proxy:1:2'"),
        ]:
            e = self.assertRaises(ValueError, parse_proxy, text)
            self.assertIn(message, str(e), text)
            self.assertNotIn("secret", str(e))
            self.assertNotIn("\n", str(e))


class NoProxyTests(SynchronousTestCase):
    """
    C{no_proxy} as curl reads it (its documentation of C{NO_PROXY} and
    C{CURLOPT_NOPROXY}).
    """

    def test_empty(self):
        """
        No list, or an empty one, matches nothing.
        """
        self.assertFalse(no_proxy_matches("example.com", None))
        self.assertFalse(no_proxy_matches("example.com", ""))
        self.assertFalse(no_proxy_matches("example.com", " , ,"))

    def test_star(self):
        """
        A single C{*} matches every host.
        """
        for host in ("example.com", "10.1.2.3", "::1"):
            self.assertTrue(no_proxy_matches(host, "*"))
        self.assertTrue(no_proxy_matches("example.com", " * "))

    def test_domains(self):
        """
        A name matches itself and every name under it, with or without a
        leading dot; not names that merely end alike.
        """
        for pattern in ("example.com", ".example.com"):
            self.assertTrue(no_proxy_matches("example.com", pattern))
            self.assertTrue(no_proxy_matches("www.example.com", pattern))
            self.assertTrue(no_proxy_matches("a.b.example.com", pattern))
            self.assertFalse(no_proxy_matches("notexample.com", pattern))
            self.assertFalse(no_proxy_matches("example.com.org", pattern))
            self.assertFalse(no_proxy_matches("com", pattern))

    def test_caseAndDots(self):
        """
        Names compare without regard to case or a final dot.
        """
        self.assertTrue(no_proxy_matches("WWW.Example.COM", "example.com"))
        self.assertTrue(no_proxy_matches("www.example.com.", "EXAMPLE.com."))

    def test_lists(self):
        """
        Entries are separated by commas, blanks around them ignored.
        """
        self.assertTrue(no_proxy_matches("host.lan", "example.com, lan ,10.0.0.0/8"))
        self.assertTrue(no_proxy_matches("10.2.3.4", "example.com, lan ,10.0.0.0/8"))
        self.assertFalse(no_proxy_matches("example.org", "example.com, lan ,10.0.0.0/8"))
        self.assertFalse(no_proxy_matches("example.com", "*.example.com"))

    def test_addresses(self):
        """
        An IP address matches itself; C{ADDRESS/BITS} matches the range;
        IPv6 addresses are written without brackets.
        """
        self.assertTrue(no_proxy_matches("192.168.1.10", "192.168.1.10"))
        self.assertFalse(no_proxy_matches("192.168.1.11", "192.168.1.10"))
        self.assertTrue(no_proxy_matches("192.168.7.1", "192.168.0.0/16"))
        self.assertFalse(no_proxy_matches("192.169.0.1", "192.168.0.0/16"))
        self.assertTrue(no_proxy_matches("::1", "example.com,::1,localhost"))
        self.assertTrue(no_proxy_matches("fd56:9122::5", "fd56:9122::/32"))
        self.assertFalse(no_proxy_matches("fd57::5", "fd56:9122::/32"))
        self.assertFalse(no_proxy_matches("10.0.0.1", "::/0"))

    def test_namesAndAddressesApart(self):
        """
        Nothing is resolved: a name never matches an address entry, nor an
        address a name entry.
        """
        self.assertFalse(no_proxy_matches("localhost", "127.0.0.1"))
        self.assertFalse(no_proxy_matches("127.0.0.1", "localhost"))
        self.assertFalse(no_proxy_matches("10.0.0.1", "0.0.1"))


class ChoiceTests(SynchronousTestCase):
    """
    Which proxy a client end uses, as curl chooses.
    """

    def choose(self, environ, setting=None, secure=True, host="example.com"):
        choice = choose(host, setting, "--proxy", environ, secure)
        return (str(choice.proxy) if choice.proxy else None), choice.why

    def test_nothing(self):
        """
        Without --proxy or a variable, no proxy, and nothing to say.
        """
        self.assertEqual(self.choose({}), (None, None))
        self.assertEqual(self.choose({"HTTP_PROXY": "http://p:1"}, secure=False), (None, None))

    def test_secure(self):
        """
        A secure end reads https_proxy, then HTTPS_PROXY.
        """
        self.assertEqual(self.choose({"https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2"}),
                         ("a:1", "https_proxy"))
        self.assertEqual(self.choose({"HTTPS_PROXY": "http://b:2"}), ("b:2", "HTTPS_PROXY"))
        self.assertEqual(self.choose({"http_proxy": "http://c:3"}), (None, None))

    def test_plain(self):
        """
        A plain end reads http_proxy in lower case only (CGI sets
        HTTP_PROXY from a request's header).
        """
        self.assertEqual(self.choose({"http_proxy": "http://a:1"}, secure=False), ("a:1", "http_proxy"))
        self.assertEqual(self.choose({"HTTP_PROXY": "http://a:1", "https_proxy": "http://b:2"}, secure=False),
                         (None, None))

    def test_all(self):
        """
        all_proxy, then ALL_PROXY, when the end's own variable is not set.
        """
        for secure in (True, False):
            self.assertEqual(self.choose({"all_proxy": "a:1", "ALL_PROXY": "b:2"}, secure=secure), ("a:1", "all_proxy"))
            self.assertEqual(self.choose({"ALL_PROXY": "b:2"}, secure=secure), ("b:2", "ALL_PROXY"))
        self.assertEqual(self.choose({"all_proxy": "a:1", "https_proxy": "c:3"}), ("c:3", "https_proxy"))
        self.assertEqual(self.choose({"all_proxy": "a:1", "http_proxy": "c:3"}, secure=False), ("c:3", "http_proxy"))

    def test_emptyIsUnset(self):
        """
        An empty variable counts as not set (curl's getenv).
        """
        self.assertEqual(self.choose({"https_proxy": "", "HTTPS_PROXY": "b:2"}), ("b:2", "HTTPS_PROXY"))
        self.assertEqual(self.choose({"https_proxy": "", "all_proxy": ""}), (None, None))

    def test_flag(self):
        """
        --proxy wins over the environment; --proxy none (or empty) turns
        proxies off whatever the environment says.
        """
        environ = {"https_proxy": "http://a:1"}
        self.assertEqual(self.choose(environ, "http://f:9"), ("f:9", "--proxy"))
        self.assertEqual(self.choose(environ, "none"), (None, "--proxy none"))
        self.assertEqual(self.choose(environ, ""), (None, "--proxy is empty"))

    def test_noProxy(self):
        """
        no_proxy (then NO_PROXY) sends a matching host direct, whether the
        proxy comes from the environment or from --proxy (as curl).
        """
        environ = {"https_proxy": "http://a:1", "no_proxy": ".example.com", "NO_PROXY": "other.org"}
        self.assertEqual(self.choose(environ), (None, "no_proxy matches example.com (not https_proxy)"))
        self.assertEqual(self.choose(environ, host="other.org"), ("a:1", "https_proxy"))
        self.assertEqual(self.choose(dict(environ, no_proxy=""), host="other.org"),
                         (None, "NO_PROXY matches other.org (not https_proxy)"))
        self.assertEqual(self.choose(environ, "http://f:9"), (None, "no_proxy matches example.com (not --proxy)"))

    def test_badVariable(self):
        """
        A variable that is not a usable proxy URL is an error naming it,
        unless no_proxy keeps it from being used.
        """
        e = self.assertRaises(ValueError, self.choose, {"https_proxy": "socks5://u:secret@p:1080"})
        self.assertEqual(str(e), "https_proxy: 'socks5://u:***@p:1080': SOCKS proxies are not supported: give an "
                                 "HTTP proxy (http://HOST:PORT) that allows CONNECT (--proxy none ignores the "
                                 "environment)")
        self.assertEqual(self.choose({"https_proxy": "socks5://p", "no_proxy": "*"}),
                         (None, "no_proxy matches example.com (not https_proxy)"))


SETTINGS = {"max-payload": 1024, "max-connections": 512, "max-connections-per-source": 128,
            "max-send-queue": 262144, "stall-timeout": 30.0, "dead-peer-timeout": 60.0, "udp-timeout": 5.0,
            "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False, "handshake-timeout": 15.0,
            "ca-cert": None, "cert": None, "key": None, "client-auth": False}


class Settings(dict):
    """
    The settings a maker is given, with an environment, as L{Options}.
    """

    environ = {}


class ClientEndTests(SynchronousTestCase):
    """
    The proxy in the stream ends: chosen in C{clientEndpoint}, and its
    refusals in the client end's retry line.
    """

    def setUp(self):
        self.reactor = FakeReactor()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def make(self, text, maker=StreamConnectorMaker("tcp"), environ=None, **values):
        settings = Settings(SETTINGS, **values)
        settings.environ = environ or {}
        _, spec = parse(text, {prefix: maker for prefix in maker.prefixes})
        return maker.makeEnd(spec, OUT, settings, None, self.reactor)

    def messages(self, level=None):
        return [formatEvent(event) for event in self.logged if level is None or event["log_level"] == level]

    def test_dialsTheProxy(self):
        """
        A tcp/client with --proxy dials the proxy and says so at start,
        without the password.
        """
        end = self.make("tcp/client:example.com:12345", proxy="http://u:secret@127.0.0.1:3128")
        self.assertIsInstance(end.endpoint, ProxyEndpoint)
        self.assertEqual((end.endpoint.host, end.endpoint.port), ("example.com", 12345))
        self.assertEqual(end.endpoint.timeout, 15.0)
        end.startService()
        self.addCleanup(end.stopService)
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 3128))
        self.assertIn("dialling example.com:12345 through HTTP proxy 127.0.0.1:3128 (--proxy)", self.messages())
        self.assertFalse([m for m in self.messages() if "secret" in m])

    def test_secureReadsHttpsProxy(self):
        """
        A tls/client reads https_proxy, and its TLS sits on the proxy's
        tunnel; a tcp/client reads http_proxy.
        """
        environ = {"https_proxy": "http://127.0.0.1:3128", "http_proxy": "http://127.0.0.1:8080"}
        from tests import certs

        files = certs.make(self.mktemp())
        end = self.make("tls/client:example.com:443", TLSConnectorMaker(), environ, **{"ca-cert": files["ca"][0]})
        self.assertIsInstance(end.endpoint, SecureClientEndpoint)
        self.assertIsInstance(end.endpoint.endpoint, ProxyEndpoint)
        self.assertEqual(str(end.endpoint.endpoint.proxy), "127.0.0.1:3128")
        self.assertIn("dialling example.com:443 through HTTP proxy 127.0.0.1:3128 (https_proxy)", self.messages())
        plain = self.make("tcp/client:example.com:443", environ=environ)
        self.assertEqual(str(plain.endpoint.proxy), "127.0.0.1:8080")

    def test_direct(self):
        """
        Without a proxy, or for a Twisted endpoint description, the end
        dials as before; NO_PROXY and --proxy none say so.
        """
        self.assertNotIsInstance(self.make("tcp/client:example.com:1").endpoint, ProxyEndpoint)
        self.assertNotIsInstance(self.make("tcp/client:tcp:example.com:1", proxy="http://p:1").endpoint, ProxyEndpoint)
        end = self.make("tcp/client:example.com:1", environ={"http_proxy": "http://p:1", "NO_PROXY": "example.com"})
        self.assertNotIsInstance(end.endpoint, ProxyEndpoint)
        end = self.make("tcp/client:example.com:1", environ={"http_proxy": "http://p:1"}, proxy="none")
        self.assertNotIsInstance(end.endpoint, ProxyEndpoint)
        self.assertEqual(self.messages(), [
            "dialling example.com:1 directly (NO_PROXY matches example.com (not http_proxy))",
            "dialling example.com:1 directly (--proxy none)"])

    def test_interface(self):
        """
        An interface binding applies to the connection to the proxy.
        """
        from uhppoted_tunnel.link.bind import DeviceBoundReactor

        end = self.make("tcp/client::lo:example.com:1", proxy="http://127.0.0.1:3128")
        self.assertIsInstance(end.endpoint.dial._reactor, DeviceBoundReactor)

    def test_refusalIsOneWarningAndAFailedAttempt(self):
        """
        A proxy's refusal is one warning, the client end's retry line with
        the proxy's answer, and counts as a failed attempt: backoff, then
        --max-retries ends the end with the same reason.
        """
        end = self.make("tcp/client:example.com:12345", proxy="http://127.0.0.1:3128", **{"max-retries": 1})
        failures = []
        end.whenFailed().addCallback(failures.append)
        end.startService()
        self.addCleanup(end.stopService)
        refusal = ("proxy 127.0.0.1:3128 refused CONNECT example.com:12345: 407 Proxy Authentication Required")
        for attempt in (1, 2):
            factory = self.reactor.tcpClients[-1][2]
            protocol = factory.buildProtocol(PEER)
            transport = StringTransportWithDisconnection(peerAddress=PEER)
            transport.protocol = protocol
            protocol.makeConnection(transport)
            protocol.dataReceived(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
            self.reactor.advance(5)
        self.assertEqual(self.messages(LogLevel.warn), [
            "could not connect to example.com:12345 ({}): retrying in 5s".format(refusal)])
        self.assertEqual(failures, ["could not connect to example.com:12345 after 2 attempt(s): " + refusal])
        self.assertEqual(len(self.reactor.tcpClients), 2)


class FakeProxy(Protocol):
    """
    An HTTP proxy in memory: answers a CONNECT with 200, then hands the
    connection to C{target} (a factory), as if the tunnel reached it.
    """

    def __init__(self, target, requests):
        self.target = target
        self.requests = requests
        self.buffer = b""

    def dataReceived(self, data):
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        head, rest = self.buffer.split(b"\r\n\r\n", 1)
        self.requests.append(head)
        self.transport.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        inner = self.target.buildProtocol(None)
        self.dataReceived = inner.dataReceived
        self.connectionLost = inner.connectionLost
        inner.makeConnection(self.transport)
        if rest:
            inner.dataReceived(rest)


class InMemoryTunnelTests(SynchronousTestCase):
    def test_framesThroughTheProxy(self):
        """
        A tcp/client out end reaches a tcp/server in end through a proxy
        (all in memory, with iosim): the proxy gets CONNECT with the
        credentials, and requests and replies cross the tunnel.
        """
        from twisted.test.iosim import ConnectionCompleter

        from tests.unit.test_stream import REPLY, REQUEST, make
        from uhppoted_tunnel.interfaces import IN
        from uhppoted_tunnel.testing import RecordingRouter

        reactor = FakeReactor()
        server, _ = make("tcp/server:127.0.0.1:12345", IN, RecordingRouter(), reactor)
        server.startService()
        self.addCleanup(server.stopService)
        requests = []
        reactor.listenTCP(3128, Factory.forProtocol(lambda: FakeProxy(server.factory, requests)),
                          interface="127.0.0.1")
        client, _ = make("tcp/client:tunnel.example.com:12345", OUT, None, reactor,
                         proxy="http://user:pass@127.0.0.1:3128")
        client.startService()
        self.addCleanup(client.stopService)
        pump = ConnectionCompleter(reactor).succeedOnce()
        replies = []
        client.send(REQUEST, replies.append)
        pump.flush()
        self.assertEqual(requests, [b"CONNECT tunnel.example.com:12345 HTTP/1.1\r\nHost: tunnel.example.com:12345\r\n"
                                    b"User-Agent: uhppoted-tunnel/" + __version__.encode() + b"\r\n"
                                    b"Proxy-Authorization: Basic "
                                    + base64.b64encode(b"user:pass")])
        [(payload, reply)] = server.router.requests
        reply(REPLY)
        pump.flush()
        self.assertEqual((payload, replies), (REQUEST, [REPLY]))


class OptionTests(SynchronousTestCase):
    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def parse(self, *args):
        options = Options()
        options.parseOptions(["--in", "tcp/client:example.com:12345", "--out", "udp/broadcast:127.0.0.1:60000"]
                             + list(args))
        return options

    def test_default(self):
        """
        Without --proxy the setting is None (the environment decides).
        """
        self.assertIsNone(self.parse()["proxy"])
        self.assertEqual(self.parse("--proxy", "http://u:p@proxy:3128")["proxy"], "http://u:p@proxy:3128")
        self.assertEqual(self.parse("--proxy", "none")["proxy"], "none")

    def test_badFlag(self):
        """
        A bad --proxy is a usage error naming the flag, without the
        password.
        """
        e = self.assertRaises(usage.UsageError, self.parse, "--proxy", "https://u:secret@proxy:3128")
        self.assertTrue(str(e).startswith("--proxy: 'https://u:***@proxy:3128': HTTPS proxies"), str(e))
        e = self.assertRaises(usage.UsageError, self.parse, "--proxy", "socks5://proxy")
        self.assertIn("SOCKS proxies are not supported", str(e))

    def test_file(self):
        """
        TOML C{proxy} sets it, and the start line names the file as the
        reason; a bad one names file, section and key.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write('[site]\nproxy = "http://127.0.0.1:3128"\n[bad]\nproxy = "socks5://p"\n[number]\nproxy = 3128\n')
        options = self.parse("--config", path + "#site")
        self.assertEqual(options["proxy"], "http://127.0.0.1:3128")
        self.assertEqual(options.sources["proxy"], "{} [site] proxy".format(path))
        e = self.assertRaises(usage.UsageError, self.parse, "--config", path + "#bad")
        self.assertIn("[bad] proxy: 'socks5://p': SOCKS proxies are not supported", str(e))
        e = self.assertRaises(usage.UsageError, self.parse, "--config", path + "#number")
        self.assertIn("[number] proxy: expected a string", str(e))

    def test_environmentAtBuild(self):
        """
        A bad proxy variable is an error when an end that would use it is
        built (the tunnel exits 2 with it), naming the variable.
        """
        from twisted.internet.testing import MemoryReactorClock

        from uhppoted_tunnel.app.tunnel import TunnelService

        options = self.parse()
        options.environ = {"http_proxy": "https://proxy:443"}
        e = self.assertRaises(ValueError, TunnelService, options, MemoryReactorClock())
        self.assertTrue(str(e).startswith("http_proxy: 'https://proxy:443': HTTPS proxies"), str(e))

    def test_check(self):
        """
        C{uhppoted-tunnel check} says which proxy each client end dials
        through and why, and refuses a bad proxy variable as run would.
        """
        import datetime

        from uhppoted_tunnel.app.check import CheckFailed, CheckOptions, check

        now = datetime.datetime.now(datetime.timezone.utc)
        options = CheckOptions()
        options.parseOptions(["--in", "tcp/client:example.com:12345", "--out", "udp/broadcast:127.0.0.1:60000",
                              "--proxy", "http://u:secret@127.0.0.1:3128"])
        self.assertEqual(check(options, now), [
            "tcp/client dials example.com:12345 through HTTP proxy 127.0.0.1:3128 (--proxy)"])
        options = CheckOptions()
        options.environ = {"http_proxy": "socks5://p"}
        options.parseOptions(["--in", "tcp/client:example.com:12345", "--out", "udp/broadcast:127.0.0.1:60000"])
        e = self.assertRaises(CheckFailed, check, options, now)
        self.assertTrue(str(e).startswith("http_proxy: 'socks5://p': SOCKS proxies are not supported"), str(e))
