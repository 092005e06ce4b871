# -*- test-case-name: tests.loopback.test_events_rogue -*-
"""
Rogue peers on a site's event stream port, in the reverse layout (the
site's out end is the server, the host dials it), with real processes on
127.0.0.1: a peer that connects and keeps quiet, and a peer that
acknowledges every id it can guess, cannot take events from the real host;
with TLS and --client-auth a peer without a certificate cannot connect at
all.
"""

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import TestCase

from tests.gowire import go_packetize
from tests.loopback.processes import DEADLINE, emulator_sent_line, start_event_emulator
from tests.loopback.eventpairs import A, EventTunnels, stream_connected, stream_listening

EVENTS = 20


class Rogue(Protocol):
    """
    A peer on the site's stream port: reads and discards what it is sent,
    and, if told, acknowledges every id from 1 to 10,000 every 100 ms.
    """

    def __init__(self, spray=False):
        self.spray = spray
        self.received = 0
        self.loop = LoopingCall(self.acknowledgeEverything)

    def connectionMade(self):
        if self.spray:
            self.loop.start(0.1)

    def dataReceived(self, data):
        self.received += len(data)

    def acknowledgeEverything(self):
        self.transport.write(b"".join(go_packetize(n, b"") for n in range(1, 10001)))

    def connectionLost(self, reason):
        if self.loop.running:
            self.loop.stop()


class RogueTests(EventTunnels, TestCase):
    @inlineCallbacks
    def rogue(self, port, spray=False):
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=DEADLINE)
        rogue = yield connectProtocol(endpoint, Rogue(spray))
        self.addCleanup(lambda: rogue.transport.abortConnection() if rogue.transport.connected else None)
        return rogue

    @inlineCallbacks
    def events_before_host(self, rogue_spray, *flags, kind="tcp", host_flags=()):
        """
        A site with a rogue connected to its server end receives events
        while no host is connected; then the host dials in.
        """
        site = self.site(0, "{}/server:127.0.0.1:0".format(kind), *flags)
        stream_port = int((yield site.waitFor(stream_listening(kind))).group(1))
        site_port = yield self.site_port(site)
        rogue = yield self.rogue(stream_port, rogue_spray)
        yield site.waitFor(stream_connected(kind))
        emulator, _ = yield start_event_emulator(self, site_port, EVENTS, "10ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(EVENTS))
        # longer than the 5 s of silence round 1 took for a Go tunnel
        yield deferLater(reactor, 6.0, lambda: None)
        mark = site.mark()
        self.host("{}/client:127.0.0.1:{}".format(kind, stream_port), *host_flags)
        yield site.waitFor(stream_connected(kind), since=mark)
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, EVENTS + 1))
        return site, rogue

    def test_silentRogueBeforeHost(self):
        """
        A peer that connected before the real host and says nothing does
        not empty the site's buffer: the host receives every event.
        """
        return self.events_before_host(False)

    @inlineCallbacks
    def test_acknowledgingRogueAlongsideHost(self):
        """
        A peer that acknowledges every id it can guess, connected alongside
        the real host: the host receives every event, and the site warns of
        the acknowledgements of ids never sent to the rogue.
        """
        site = self.site(0, "tcp/server:127.0.0.1:0")
        stream_port = int((yield site.waitFor(stream_listening("tcp"))).group(1))
        site_port = yield self.site_port(site)
        mark = site.mark()
        self.host("tcp/client:127.0.0.1:{}".format(stream_port))
        yield site.waitFor(stream_connected("tcp"), since=mark)
        mark = site.mark()
        yield self.rogue(stream_port, spray=True)
        yield site.waitFor(stream_connected("tcp"), since=mark)
        emulator, _ = yield start_event_emulator(self, site_port, EVENTS, "10ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(EVENTS))
        yield site.waitFor(r"ignored \d+ acknowledgement\(s\) of events never sent on their connection")
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, EVENTS + 1))

    @inlineCallbacks
    def test_tlsClientAuthKeepsRogueOut(self):
        """
        With TLS and --client-auth a peer without a certificate cannot
        connect to the site at all; the real host, with one, receives every
        event.
        """
        site = self.site(0, "tls/server:127.0.0.1:0", "--handshake-timeout", "2s",
                         *self.tls_flags("server", client_auth=True))
        stream_port = int((yield site.waitFor(stream_listening("tls"))).group(1))
        site_port = yield self.site_port(site)
        yield self.rogue(stream_port)
        yield site.waitFor(r"TLS handshake with 127\.0\.0\.1:\d+ (failed|timed out)", timeout=DEADLINE)
        emulator, _ = yield start_event_emulator(self, site_port, EVENTS, "10ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(EVENTS))
        mark = site.mark()
        self.host("tls/client:127.0.0.1:{}".format(stream_port), *self.tls_flags("client"))
        yield site.waitFor(stream_connected("tls"), since=mark)
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, EVENTS + 1))
