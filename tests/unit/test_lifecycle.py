# -*- test-case-name: tests.unit.test_lifecycle -*-
"""
Tests for L{uhppoted_tunnel.link.lifecycle}, and that every end and relay
provides the interfaces of the seam (L{uhppoted_tunnel.interfaces}).
"""

from twisted.application.service import Service
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.testing import StringTransport
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.app import config
from uhppoted_tunnel.core.spec import ConnectorSpec
from uhppoted_tunnel.core.eventrelays import EventReceiver, EventSender
from uhppoted_tunnel.core.relays import RequestReceiver, RequestSender
from uhppoted_tunnel.interfaces import IEnd, IFrameConnection, IOutRelay, IRelay
from uhppoted_tunnel.link.lifecycle import EndFailed, EndLifecycle
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter
from uhppoted_tunnel.app.tunnel import TunnelService
from uhppoted_tunnel.link.framed import FramedProtocol


class End(EndLifecycle, Service):
    log = Logger()
    log_tag = "TEST"


class EndLifecycleTests(SynchronousTestCase):
    def test_listeningBeforeAndAfter(self):
        """
        whenListening fires with the port, for those who asked before and
        after; whenFailed never fires.
        """
        end = End()
        before = end.whenListening()
        failed = end.whenFailed()
        self.assertNoResult(before)
        end.listening("port")
        self.assertEqual(self.successResultOf(before), "port")
        self.assertEqual(self.successResultOf(end.whenListening()), "port")
        self.assertNoResult(failed)

    def test_failed(self):
        """
        A failure fails whenListening with L{EndFailed} and fires whenFailed
        with the one-line message, before and after; only the first counts.
        """
        end = End()
        listening = end.whenListening()
        failed = end.whenFailed()
        end.failed("cannot listen on {address}: {reason}", address="127.0.0.1:1", reason="in use")
        end.failed("something else")
        message = "cannot listen on 127.0.0.1:1: in use"
        self.assertEqual(str(self.failureResultOf(listening, EndFailed).value), message)
        self.assertEqual(self.successResultOf(failed), message)
        self.assertEqual(self.successResultOf(end.whenFailed()), message)
        self.failureResultOf(end.whenListening(), EndFailed)

    def listener(self):
        """
        An end with an address, and an endpoint whose listen waits.
        """
        end = End()
        end.spec = ConnectorSpec("tcp/server:127.0.0.1:1", "tcp/server:", None, "127.0.0.1:1")
        end.announced = []
        end.announce = end.announced.append
        endpoint = StubEndpoint()
        return end, endpoint

    def test_listenOn(self):
        """
        listenOn: once the endpoint listens, the end's port is the
        listening port, announce is given its address and whenListening
        fires; cancelListen hands the port back, forgotten.
        """
        end, endpoint = self.listener()
        end.listenOn(endpoint, "factory")
        self.assertEqual(endpoint.factories, ["factory"])
        self.assertIsNone(end.port)
        port = StubPort()
        endpoint.listening.callback(port)
        self.assertIs(end.port, port)
        self.assertEqual(end.announced, [port.getHost()])
        self.assertIs(self.successResultOf(end.whenListening()), port)
        self.assertIs(end.cancelListen(), port)
        self.assertIsNone(end.port)
        self.assertIsNone(end.cancelListen())

    def test_cannotListen(self):
        """
        A listen that fails fails the end, naming its address.
        """
        end, endpoint = self.listener()
        end.listenOn(endpoint, "factory")
        endpoint.listening.errback(CannotListenError("127.0.0.1", 1, OSError("in use")))
        self.assertIn("cannot listen on 127.0.0.1:1:", self.successResultOf(end.whenFailed()))
        self.assertEqual(end.announced, [])
        self.assertIsNone(end.cancelListen())

    def test_cancelled(self):
        """
        A listen still under way when the end stops is cancelled, and
        that is no failure.
        """
        end, endpoint = self.listener()
        end.listenOn(endpoint, "factory")
        self.assertIsNone(end.cancelListen())
        self.assertTrue(endpoint.listening.called, "cancelled")
        self.assertNoResult(end.whenFailed())
        self.assertNoResult(end.whenListening())


class StubEndpoint:
    def __init__(self):
        self.factories = []
        self.listening = Deferred()

    def listen(self, factory):
        self.factories.append(factory)
        return self.listening


class StubPort:
    address = IPv4Address("TCP", "127.0.0.1", 1)

    def getHost(self):
        return self.address


class SeamTests(SynchronousTestCase):
    """
    Every end provides L{IEnd}; every relay L{IRelay} (out relays
    L{IOutRelay}); a stream connection L{IFrameConnection}.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def tunnel(self, *args):
        options = Options()
        options.parseOptions(list(args) + ["--html", self.mktemp(), "--event-spool", self.mktemp()])
        return TunnelService(options, FakeReactor())

    def test_ends(self):
        """
        Each kind of end provides L{IEnd}.
        """
        for in_, out in [("udp/listen:127.0.0.1:0", "tcp/server:127.0.0.1:0"),
                         ("tcp/client:127.0.0.1:1", "udp/broadcast:127.0.0.1:2"),
                         ("http/127.0.0.1:0", "ip/out:127.0.0.1:2"),
                         ("udp/event:127.0.0.1:0", "udp/event:127.0.0.1:2")]:
            service = self.tunnel("--in", in_, "--out", out)
            verifyObject(IEnd, service.in_)
            verifyObject(IEnd, service.out)

    def test_relays(self):
        """
        Each relay provides L{IRelay}; those of out ends L{IOutRelay}.
        """
        settings = {"debug": False, "udp-timeout": 1.0, "event-spool": self.mktemp(), "event-window": 10,
                    "event-buffer": 10, "event-buffer-age": 10.0}
        reactor = FakeReactor()
        for kind in (RequestReceiver, EventReceiver):
            verifyObject(IRelay, kind(settings, RecordingRouter(), reactor, []))
        for kind in (RequestSender, EventSender):
            verifyObject(IOutRelay, kind(settings, None, reactor, []))

    def test_connection(self):
        """
        A stream connection provides L{IFrameConnection}.
        """
        protocol = FramedProtocol()
        protocol.transport = StringTransport()
        verifyObject(IFrameConnection, protocol)
