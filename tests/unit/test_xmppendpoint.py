"""
Tests for L{uhppoted_tunnel.transports.xmpp.endpoint}: the XMPP session as
an endpoint. Each of the peer's resources is its own connection, reported
through C{listen}'s factory or handed to C{connect}; a client end's
C{ClientService} logs in again with Go's schedule. Logins are finished by
hand on a fake dial (a real XML stream over a L{StringTransport}).
"""

from twisted.application.service import IService
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import xmlstream
from twisted.words.protocols.jabber.jid import JID
from zope.interface.verify import verifyObject

from tests.unit.test_xmpp import ME, PEER, SERVER_HEADER, settings
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.interfaces import IN, IFrameConnection
from uhppoted_tunnel.transports.xmpp.endpoint import XMPPEndpoint
from uhppoted_tunnel.transports.xmpp.frames import NS_TUNNEL
from uhppoted_tunnel.transports.xmpp.login import LoginFailed, XMPPClientEndpoint
from uhppoted_tunnel.transports.xmpp.maker import XMPPConnectorMaker
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter

OTHER = "site@localhost/other"


class Dial:
    """
    The dial under a login: each C{connect} waits for the test.

    :ivar attempts: C{(factory, Deferred)} of each C{connect}, in order.
    """

    def __init__(self):
        self.attempts = []

    def connect(self, factory):
        d = Deferred()
        self.attempts.append((factory, d))
        return d

    def refuse(self):
        _, d = self.attempts[-1]
        d.errback(ConnectionRefusedError("no XMPP server here"))

    def accept(self, jid=ME):
        """
        Let the last attempt connect and log in as C{jid}.

        :return: C{(stream, transport)}.
        """
        factory, d = self.attempts[-1]
        stream = factory.buildProtocol(None)
        transport = StringTransport()
        stream.makeConnection(transport)
        d.callback(stream)
        stream.dataReceived(SERVER_HEADER)
        stream.authenticator.jid = JID(jid)
        stream.dispatch(stream, xmlstream.STREAM_AUTHD_EVENT)
        return stream, transport


class DialMaker(XMPPConnectorMaker):
    """
    The C{xmpp/} maker, its login dialling a L{Dial}.
    """

    def __init__(self, dial):
        XMPPConnectorMaker.__init__(self)
        self.dial = dial

    def clientEndpoint(self, reactor, spec, settings):
        made = XMPPConnectorMaker.clientEndpoint(self, reactor, spec, settings)
        login = made.endpoint
        return XMPPEndpoint(XMPPClientEndpoint(self.dial, login.server, login.account, login.password, lambda: None,
                                               reactor, login.timeout), made.peer, settings, reactor)


def presence(stream, jid, kind=None):
    stream.dataReceived("<presence from='{}' to='host@localhost'{}><hello xmlns='{}'/></presence>".format(
        jid, "" if kind is None else " type='{}'".format(kind), NS_TUNNEL).encode("utf-8"))


class Recorder(Protocol):
    """
    A connection that records what happens to it.
    """

    def __init__(self):
        self.lost = None

    def connectionLost(self, reason):
        self.lost = reason


class RecordingFactory(Factory):
    protocol = Recorder

    def __init__(self):
        self.built = []

    def buildProtocol(self, addr):
        protocol = Factory.buildProtocol(self, addr)
        self.built.append(protocol)
        return protocol


class _Fixture:
    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.settings = settings(self.mktemp(), **{"max-retries": 3})
        self.reactor = FakeReactor()
        self.dial = Dial()
        self.maker = DialMaker(self.dial)
        _, self.spec = parse("xmpp/client:host@localhost", {prefix: self.maker for prefix in self.maker.prefixes})

    def messages(self):
        return [formatEvent(event) for event in self.logged]

    def assertNoTimers(self):
        self.assertEqual([call for call in self.reactor.getDelayedCalls()
                          if call.func.__qualname__ != "CertificateWatch._warn"], [])


class EndpointTests(_Fixture, SynchronousTestCase):
    def setUp(self):
        _Fixture.setUp(self)
        self.endpoint = self.maker.clientEndpoint(self.reactor, self.spec, self.settings)
        self.endpoint.startService()

    def tearDown(self):
        self.endpoint.stopService()
        self.assertNoTimers()

    def test_interfaces(self):
        """
        The endpoint provides both endpoint interfaces and is a service; its
        listening port provides C{IListeningPort}.
        """
        verifyObject(IStreamClientEndpoint, self.endpoint)
        verifyObject(IStreamServerEndpoint, self.endpoint)
        verifyObject(IService, self.endpoint)
        listening = self.endpoint.listen(RecordingFactory())
        self.dial.accept()
        verifyObject(IListeningPort, self.successResultOf(listening))

    def test_eachPeerItsOwnConnection(self):
        """
        Listening, the endpoint logs in, and reports each of the peer's
        resources that comes online as its own connection, on its own
        transport, and only that one's loss when it goes offline.
        """
        factory = RecordingFactory()
        listening = self.endpoint.listen(factory)
        self.assertNoResult(listening)
        stream, _ = self.dial.accept()
        self.successResultOf(listening)
        presence(stream, PEER)
        presence(stream, OTHER)
        first, second = factory.built
        self.assertEqual((first.transport.peer, second.transport.peer), (PEER, OTHER))
        self.assertEqual((str(first.transport.getPeer()), str(first.transport.getHost())), (PEER, ME))
        presence(stream, PEER, "unavailable")
        self.assertIsNotNone(first.lost)
        self.assertIsNone(second.lost)
        stream.connectionLost(Failure(ConnectionLost()))
        self.assertIsNotNone(second.lost)

    def test_connectWaitsForThePeer(self):
        """
        C{connect} logs in, and fires with the connection of the first of
        the peer's resources to come online, not before.
        """
        factory = RecordingFactory()
        connecting = self.endpoint.connect(factory)
        stream, _ = self.dial.accept()
        self.assertNoResult(connecting)
        self.assertIn("logged in as {}, waiting for site@localhost".format(ME), self.messages())
        presence(stream, PEER)
        [connection] = factory.built
        self.assertIs(self.successResultOf(connecting), connection)
        self.assertEqual(connection.transport.peer, PEER)

    def test_refusedLogin(self):
        """
        A login that fails fails C{connect}, saying why.
        """
        connecting = self.endpoint.connect(RecordingFactory())
        self.dial.refuse()
        self.failureResultOf(connecting, ConnectionRefusedError)

    def test_lostWhileWaiting(self):
        """
        A stream lost before the peer came fails C{connect}, saying so; the
        next C{connect} logs in again.
        """
        connecting = self.endpoint.connect(RecordingFactory())
        stream, _ = self.dial.accept()
        stream.connectionLost(Failure(ConnectionLost("gone")))
        failure = self.failureResultOf(connecting, LoginFailed)
        self.assertTrue(failure.getErrorMessage().startswith("logged out of the XMPP server: Connection to the other "
                                                             "side was lost"), failure.getErrorMessage())
        self.endpoint.connect(RecordingFactory())
        self.assertEqual(len(self.dial.attempts), 2)

    def test_cancel(self):
        """
        Cancelling the only C{connect} waiting for a login cancels the
        login.
        """
        connecting = self.endpoint.connect(RecordingFactory())
        connecting.cancel()
        self.failureResultOf(connecting, CancelledError)
        self.assertTrue(self.dial.attempts[0][1].called)


class ClientEndTests(_Fixture, SynchronousTestCase):
    def setUp(self):
        _Fixture.setUp(self)
        self.end = self.maker.makeEnd(self.spec, IN, self.settings, RecordingRouter(), self.reactor)
        self.failed = []
        self.end.whenFailed().addCallback(self.failed.append)
        self.end.startService()

    def tearDown(self):
        if self.end.running:
            self.end.stopService()
        self.assertNoTimers()

    def dials(self, seconds):
        """
        The times of the dials while the clock goes on C{seconds}, each
        refused.
        """
        times = []
        for _ in range(int(seconds * 2)):
            if len(self.dial.attempts) > len(times):
                times.append(self.reactor.seconds())
                self.dial.refuse()
            self.reactor.advance(0.5)
        return times

    def test_retrySchedule(self):
        """
        A login that fails is tried again after 5 s, then 10 s, then 20 s
        (Go's schedule, with no jitter, from C{ClientService}); past
        --max-retries the end fails, saying why.
        """
        times = self.dials(60)
        self.assertEqual([later - earlier for earlier, later in zip(times, times[1:])], [5.0, 10.0, 20.0])
        self.assertEqual(self.failed, ["could not connect to host@localhost after 4 attempt(s): Connection was "
                                       "refused by other side: no XMPP server here."])
        self.assertIn("could not connect to host@localhost (Connection was refused by other side: no XMPP server "
                      "here.): retrying in 10s", self.messages())

    def test_eachPeerItsOwnConnection(self):
        """
        Every resource of the peer that is online is a connection of the
        end, whether or not C{ClientService} waits for one; each is an
        L{IFrameConnection}.
        """
        stream, _ = self.dial.accept()
        presence(stream, PEER)
        presence(stream, OTHER)
        self.assertEqual([connection.peer for connection in self.end.connections], [PEER, OTHER])
        presence(stream, PEER, "unavailable")
        presence(stream, PEER)
        self.assertEqual([connection.peer for connection in self.end.connections], [OTHER, PEER])
        for connection in self.end.connections:
            verifyObject(IFrameConnection, connection)

    def test_serverRestart(self):
        """
        When the stream is lost the end's connections close, and it logs
        in again 5 s later.
        """
        stream, _ = self.dial.accept()
        presence(stream, PEER)
        stream.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.end.connections, [])
        self.assertIn("reconnecting to host@localhost in 5s", self.messages())
        self.reactor.advance(4.9)
        self.assertEqual(len(self.dial.attempts), 1)
        self.reactor.advance(0.1)
        stream, _ = self.dial.accept("host@localhost/r2")
        presence(stream, PEER)
        self.assertEqual([connection.peer for connection in self.end.connections], [PEER])
        self.assertIn("logged in as host@localhost/r2, waiting for site@localhost", self.messages())

    def test_stop(self):
        """
        Stopping the end says this half is unavailable, closes the stream,
        and is done once it has closed.
        """
        stream, transport = self.dial.accept()
        presence(stream, PEER)
        stopped = self.end.stopService()
        self.assertIn(b"<presence type='unavailable'/></stream:stream>", transport.value())
        self.assertNoResult(stopped)
        stream.connectionLost(Failure(ConnectionLost()))
        self.successResultOf(stopped)
