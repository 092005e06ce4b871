"""
Tests for L{uhppoted_tunnel.transports.xmpp.login}: logging in to an XMPP
server played by the test, line by line, on a fake transport and a fake
clock; and finding the server from DNS SRV records.
"""

import base64
import re

from OpenSSL import SSL
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError, fail, succeed
from twisted.internet.error import ConnectionDone, ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.names import dns
from twisted.names.error import DNSNameError
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber.jid import JID

from uhppoted_tunnel.transports.xmpp.login import LoginFailed, SRVEndpoint, XMPPClientEndpoint

HEADER = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
          b"from='localhost' id='s1' version='1.0'>")
STARTTLS = (b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls>"
            b"</stream:features>")
PROCEED = b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
MECHANISMS = (b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
              b"<mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism></mechanisms></stream:features>")
SUCCESS = b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
BIND = b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></stream:features>"


class Transport(StringTransport):
    """
    A transport that can start TLS (recording the options) and that tells
    its protocol when it is closed.
    """

    tls = None

    def startTLS(self, options):
        self.tls = options

    def loseConnection(self):
        if self.connected:
            self.connected = False
            self.protocol.connectionLost(Failure(ConnectionDone()))

    abortConnection = loseConnection


class Dial:
    """
    An endpoint whose connections are L{Transport}s (or that fails).
    """

    def __init__(self, failure=None):
        self.failure = failure
        self.transport = None

    def connect(self, factory):
        if self.failure is not None:
            return fail(self.failure)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 5222))
        self.transport = Transport()
        self.transport.connected = True
        self.transport.protocol = protocol
        protocol.makeConnection(self.transport)
        return succeed(protocol)


class Session(Protocol):
    stream = None

    def attach(self, stream):
        self.stream = stream


class LoginTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.dial = Dial()
        self.options = object()
        self.endpoint = XMPPClientEndpoint(self.dial, "127.0.0.1:5222", JID("host@localhost"), "secret",
                                           lambda: self.options, self.clock, 15.0)
        self.outcome = []
        self.attempt = self.endpoint.connect(Factory.forProtocol(Session))
        self.attempt.addBoth(self.outcome.append)

    def tearDown(self):
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def server(self, *chunks):
        for chunk in chunks:
            self.dial.transport.protocol.dataReceived(chunk)

    def written(self):
        return self.dial.transport.value()

    def refused(self):
        [failure] = self.outcome
        self.assertIsInstance(failure, Failure)
        failure.trap(LoginFailed)
        self.assertFalse(self.dial.transport.connected)
        return str(failure.value)

    def test_login(self):
        """
        Over STARTTLS with the end's TLS options, then SASL PLAIN inside
        TLS and resource binding, the login completes: the session is
        given the stream and connected, and C{connect} fires with it.
        """
        self.server(HEADER, STARTTLS)
        self.assertIn(b"<starttls", self.written())
        self.server(PROCEED)
        self.assertIs(self.dial.transport.tls, self.options)
        self.server(HEADER, MECHANISMS)
        auth = re.search(rb"<auth [^>]*mechanism='PLAIN'[^>]*>([^<]+)</auth>", self.written())
        self.assertEqual(base64.b64decode(auth.group(1)), b"\x00host\x00secret")
        self.server(SUCCESS, HEADER, BIND)
        bind = re.search(rb"<iq [^>]*id='([^']+)'", self.written().split(SUCCESS)[-1])
        self.server(b"<iq type='result' id='" + bind.group(1) + b"'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
                    b"<jid>host@localhost/r1</jid></bind></iq>")
        [session] = self.outcome
        self.assertIsInstance(session, Session)
        self.assertIs(session.transport, self.dial.transport)
        self.assertEqual(session.stream.authenticator.jid.full(), "host@localhost/r1")

    def test_noStartTLS(self):
        """
        A server that does not offer STARTTLS is refused, and the password
        never sent.
        """
        self.server(HEADER, MECHANISMS)
        self.assertEqual(self.refused(), "the server does not offer STARTTLS: this end logs in over TLS only")
        self.assertNotIn(b"<auth", self.written())

    def test_startTLSRefused(self):
        """
        A server that answers STARTTLS with a failure is refused.
        """
        self.server(HEADER, STARTTLS, b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.assertEqual(self.refused(), "the server refused STARTTLS")

    def test_handshakeFailed(self):
        """
        A TLS handshake that fails (a certificate the CA did not sign) is
        a failed login with OpenSSL's reason.
        """
        self.server(HEADER, STARTTLS, PROCEED)
        self.dial.transport.connected = False
        self.dial.transport.protocol.connectionLost(Failure(SSL.Error([("SSL routines", "", "certificate verify "
                                                                                          "failed")])))
        self.assertEqual(self.refused(), "TLS handshake with the server failed: certificate verify failed")

    def test_wrongPassword(self):
        """
        A refused password is a failed login that says to check the
        password file.
        """
        self.server(HEADER, STARTTLS, PROCEED, HEADER, MECHANISMS,
                    b"<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/></failure>")
        self.assertEqual(self.refused(), "the server refused the password for host@localhost (SASL not-authorized): "
                                         "check --xmpp-password-file and that the account exists")

    def test_noPlain(self):
        """
        A server that offers no SASL mechanism this client can do says
        which it offers.
        """
        self.server(HEADER, STARTTLS, PROCEED, HEADER,
                    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
                    b"<mechanism>SCRAM-SHA-1</mechanism></mechanisms></stream:features>")
        self.assertIn("it needs PLAIN over TLS (offered: SCRAM-SHA-1)", self.refused())

    def test_streamError(self):
        """
        A stream error from the server is a failed login naming it.
        """
        self.server(HEADER, b"<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
                            b"</stream:error>")
        self.assertEqual(self.refused(), "the server ended the stream: host-unknown")

    def test_notXMPP(self):
        """
        A server that does not speak XMPP is a failed login saying so.
        """
        self.server(b"HTTP/1.1 400 Bad Request\r\n\r\n")
        self.assertEqual(self.refused(), "the server sent what is not XMPP: is 127.0.0.1:5222 an XMPP server?")

    def test_timeout(self):
        """
        A login not done within the timeout is a failed login.
        """
        self.server(HEADER)
        self.clock.advance(15)
        self.assertEqual(self.refused(), "no login within 15s (--handshake-timeout): is 127.0.0.1:5222 an XMPP "
                                         "server?")

    def test_closed(self):
        """
        A server that closes the connection during the login fails it.
        """
        self.server(HEADER)
        self.dial.transport.loseConnection()
        self.assertIn("the server closed the connection during the login", self.refused())

    def test_dialFailed(self):
        """
        A dial that fails fails the login with its own reason.
        """
        endpoint = XMPPClientEndpoint(Dial(Failure(ConnectionRefusedError())), "127.0.0.1:5222",
                                      JID("host@localhost"), "secret", object, self.clock, 15.0)
        outcome = []
        endpoint.connect(Factory.forProtocol(Session)).addErrback(outcome.append)
        [failure] = outcome
        failure.trap(ConnectionRefusedError)
        self.server(HEADER)
        self.clock.advance(15)

    def test_cancel(self):
        """
        Cancelling a login (the end is stopping) drops the connection.
        """
        self.server(HEADER)
        self.attempt.cancel()
        self.assertFalse(self.dial.transport.connected)
        [failure] = self.outcome
        failure.trap(CancelledError)


class _Resolver:
    def __init__(self, result):
        self.result = result
        self.names = []

    def lookupService(self, name):
        self.names.append(name)
        if isinstance(self.result, Failure):
            return fail(self.result)
        return succeed((self.result, [], []))


def srv(priority, weight, port, target):
    return dns.RRHeader(name=b"_xmpp-client._tcp.example.org", type=dns.SRV,
                        payload=dns.Record_SRV(priority, weight, port, target))


class SRVTests(SynchronousTestCase):
    def targets(self, result):
        resolver = _Resolver(result)
        found = []
        SRVEndpoint(None, "example.org", resolver).lookup().addBoth(found.append)
        self.assertEqual(resolver.names, ["_xmpp-client._tcp.example.org"])
        return found[0]

    def test_ordered(self):
        """
        Servers are tried by priority, the heaviest first within one.
        """
        self.assertEqual(self.targets([srv(20, 0, 5223, b"c.example.org"), srv(10, 10, 5222, b"b.example.org"),
                                       srv(10, 60, 5222, b"a.example.org")]),
                         [("a.example.org", 5222), ("b.example.org", 5222), ("c.example.org", 5223)])

    def test_fallback(self):
        """
        With no SRV records, or when the lookup fails, the domain itself
        is dialled on port 5222.
        """
        self.assertEqual(self.targets([]), [("example.org", 5222)])
        self.assertEqual(self.targets(Failure(DNSNameError())), [("example.org", 5222)])

    def test_dialsInTurn(self):
        """
        Each target is dialled in turn (through the endpoint the end makes
        for it, once) until one answers; if none does, the last failure
        is the attempt's.
        """
        made = []
        answering = {"b.example.org"}

        class Endpoint:
            def __init__(self, host, port):
                self.host = host
                made.append((host, port))

            def connect(self, factory):
                if self.host in answering:
                    return succeed(self.host)
                return fail(ConnectionRefusedError(self.host))

        resolver = _Resolver([srv(10, 0, 5222, b"a.example.org"), srv(20, 0, 5222, b"b.example.org")])
        endpoint = SRVEndpoint(None, "example.org", resolver, dial=Endpoint)
        self.assertEqual(self.successResultOf(endpoint.connect(None)), "b.example.org")
        self.assertEqual(self.successResultOf(endpoint.connect(None)), "b.example.org")
        self.assertEqual(made, [("a.example.org", 5222), ("b.example.org", 5222)])
        answering.clear()
        self.failureResultOf(endpoint.connect(None), ConnectionRefusedError)
        self.assertEqual(str(endpoint), "example.org (DNS SRV)")

    def test_noService(self):
        """
        A domain whose one SRV record's target is '.' offers no XMPP
        service: the attempt fails saying so.
        """
        failure = self.targets([srv(0, 0, 0, b".")])
        failure.trap(LoginFailed)
        self.assertIn("offers no XMPP service", str(failure.value))
