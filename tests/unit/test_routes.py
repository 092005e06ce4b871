"""
Tests for L{uhppoted_tunnel.core.routes} and the routing of
L{uhppoted_tunnel.core.relays.RequestSender}: a host out end with many
sites sends each unicast request to the site that serves its controller.
"""

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.task import Clock
from twisted.protocols.policies import ProtocolWrapper
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from uhppoted_tunnel.core.counts import Tally
from uhppoted_tunnel.core.relays import RequestSender
from uhppoted_tunnel.core.routes import NOBODY, RouteTable, identity_of, serial_key
from uhppoted_tunnel.interfaces import IFrameConnection, IPeerIdentity
from uhppoted_tunnel.testing import FakeFrameConnection, packet
from uhppoted_tunnel.transports.tls.handshake import note_identity, note_subject, pem_subject

GET_CONTROLLER = 0x94
PUT_CARD = 0x50
A, B, C = 405419896, 303986753, 201020304


def settings(**more):
    base = {"debug": False, "udp-timeout": 5.0}
    base.update(more)
    return base


class Hub:
    """
    A request out end (L{RequestSender}) with fake site connections.
    """

    def __init__(self, test, **more):
        self.clock = Clock()
        self.connections = []
        self.relay = RequestSender(settings(**more), None, self.clock, self.connections)
        self.relay.start()
        test.addCleanup(self.stop)
        self.replies = []

    def stop(self):
        self.relay.stop()

    def site(self, peer, identity=None):
        connection = FakeFrameConnection(peer, identity)
        self.connections.append(connection)
        self.relay.connected(connection)
        return connection

    def close(self, connection):
        self.connections.remove(connection)
        self.relay.disconnected(connection)

    def send(self, function, serial):
        self.relay.send(packet(function, serial), self.replies.append)

    def answer(self, connection, serial, function=GET_CONTROLLER):
        """
        The site answers the last frame it was sent, as controller
        C{serial}.
        """
        frame_id = connection.sent[-1][0]
        self.relay.frameReceived(connection, frame_id, packet(function, serial))


class IdentityTests(SynchronousTestCase):
    def test_fake(self):
        """
        The fake connection provides L{IFrameConnection}, and
        L{IPeerIdentity} when given an identity.
        """
        verifyObject(IFrameConnection, FakeFrameConnection())
        verifyObject(IPeerIdentity, FakeFrameConnection(identity="CN=site-a"))
        self.assertFalse(IPeerIdentity.providedBy(FakeFrameConnection()))

    def test_certificateSubject(self):
        """
        A connection that proved a certificate is known by its subject.
        """
        self.assertEqual(identity_of(FakeFrameConnection("192.0.2.1:5", "CN=site-a")), "CN=site-a")

    def test_addressHost(self):
        """
        Otherwise it is known by the host of its address, without the port
        (which changes on each reconnect behind NAT); an IPv6 host loses its
        brackets.
        """
        self.assertEqual(identity_of(FakeFrameConnection("192.0.2.1:40000")), "192.0.2.1")
        self.assertEqual(identity_of(FakeFrameConnection("[2001:db8::1]:40000")), "2001:db8::1")
        self.assertEqual(identity_of(FakeFrameConnection("/run/site.sock")), "/run/site.sock")


def certificate(common_name, organisation):
    """
    A self-signed pyOpenSSL certificate with this subject.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return crypto.X509.from_cryptography(cert)


@implementer(ISSLTransport)
class FakeTLSTransport:
    def __init__(self, certificate):
        self.certificate = certificate

    def getPeerCertificate(self):
        return self.certificate


class NoteIdentityTests(SynchronousTestCase):
    def test_subject(self):
        """
        A connection whose TLS peer presented a certificate provides
        L{IPeerIdentity}, its identity the subject in RFC 4514 form, and
        the route table knows it by it.
        """
        connection = FakeFrameConnection("192.0.2.1:40000")
        note_identity(connection, FakeTLSTransport(certificate("site-a", "Example")))
        verifyObject(IPeerIdentity, connection)
        self.assertEqual(connection.identity, "CN=site-a,O=Example")
        self.assertEqual(identity_of(connection), "CN=site-a,O=Example")

    def test_wrapped(self):
        """
        A subject noted on a protocol wrapper (a wrapping factory's, such as
        the connection caps') goes to the connection inside it; a PEM
        certificate's subject reads as a pyOpenSSL one's.
        """
        connection = FakeFrameConnection("192.0.2.1:40000")
        pem = crypto.dump_certificate(crypto.FILETYPE_PEM, certificate("site-b", "Example"))
        note_subject(ProtocolWrapper(None, connection), pem_subject(pem))
        self.assertEqual(identity_of(connection), "CN=site-b,O=Example")

    def test_noCertificate(self):
        """
        A TLS peer with no certificate, or a connection not over TLS, is
        known by its address.
        """
        for transport in (FakeTLSTransport(None), object()):
            connection = FakeFrameConnection("192.0.2.1:40000")
            note_identity(connection, transport)
            self.assertFalse(IPeerIdentity.providedBy(connection))
            self.assertEqual(identity_of(connection), "192.0.2.1")


class RouteTableTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def warnings(self):
        return [e for e in self.observer if e["log_level"].name == "warn"]

    def test_learned(self):
        """
        A reply teaches the table which site serves its serial.
        """
        table = RouteTable(self.clock)
        a = FakeFrameConnection("192.0.2.1:1")
        site = table.connected(a)
        self.assertIsNone(table.target(serial_key(A)))
        table.replied(a, serial_key(A))
        self.assertIs(table.target(serial_key(A)), site)

    def test_endsWithConnection(self):
        """
        A route ends with its connection.
        """
        table = RouteTable(self.clock)
        a = FakeFrameConnection("192.0.2.1:1")
        table.connected(a)
        table.replied(a, serial_key(A))
        table.disconnected(a)
        self.assertIsNone(table.target(serial_key(A)))
        self.assertEqual(table.sites, {})
        self.assertEqual(table.identities, {})

    def test_conflict(self):
        """
        A second connection claiming a serial takes it, with a warning naming
        both; the warning is throttled.
        """
        table = RouteTable(self.clock)
        a, b = FakeFrameConnection("192.0.2.1:1"), FakeFrameConnection("192.0.2.2:1")
        table.connected(a)
        second = table.connected(b)
        table.replied(a, serial_key(A))
        table.replied(b, serial_key(A))
        self.assertIs(table.target(serial_key(A)), second)
        [warning] = self.warnings()
        self.assertEqual((warning["owner"], warning["identity"]), ("192.0.2.1 at 192.0.2.1:1", "192.0.2.2"))
        table.replied(a, serial_key(A))
        table.replied(b, serial_key(A))
        self.assertEqual(len(self.warnings()), 1)
        self.assertEqual(table.conflicts, 3)
        self.clock.advance(10)
        self.assertEqual(self.warnings()[-1]["n"], 2)

    def test_staticWins(self):
        """
        A serial routed statically goes to its site's connection before any
        reply, is not learned from another site, and goes nowhere while its
        site is not connected.
        """
        table = RouteTable(self.clock, {"CN=site-a": [A]})
        self.assertIs(table.target(serial_key(A)), NOBODY)
        rogue = FakeFrameConnection("192.0.2.9:1", "CN=site-b")
        table.connected(rogue)
        table.replied(rogue, serial_key(A))
        self.assertIs(table.target(serial_key(A)), NOBODY)
        self.assertEqual(len(self.warnings()), 1)
        site = table.connected(FakeFrameConnection("192.0.2.1:1", "CN=site-a"))
        self.assertIs(table.target(serial_key(A)), site)

    def test_staticByAddress(self):
        """
        A site with no certificate matches a static route by its host.
        """
        table = RouteTable(self.clock, {"192.0.2.1": [A]})
        site = table.connected(FakeFrameConnection("192.0.2.1:40000"))
        self.assertIs(table.target(serial_key(A)), site)

    def test_strictRefuses(self):
        """
        Strict (C{--client-auth} with static routes): a reply for a serial
        not routed to the site is refused and warned of, throttled; one
        routed to it is allowed; a table without static routes is never
        strict.
        """
        table = RouteTable(self.clock, {"CN=site-a": [A]}, strict=True)
        a = FakeFrameConnection("192.0.2.1:1", "CN=site-a")
        rogue = FakeFrameConnection("192.0.2.9:1", "CN=site-b")
        table.connected(a)
        table.connected(rogue)
        self.assertTrue(table.allows(a, serial_key(A)))
        self.assertFalse(table.allows(rogue, serial_key(A)))
        self.assertFalse(table.allows(rogue, serial_key(B)))
        self.assertEqual(table.refused, 2)
        [warning] = self.warnings()
        self.assertEqual((warning["identity"], warning["owner"], warning["serial"]), ("CN=site-b", "CN=site-a", A))
        self.assertTrue(RouteTable(self.clock, {}, strict=True).allows(rogue, serial_key(B)))
        table.flush()

    def test_snapshot(self):
        """
        The snapshot lists each site with what it serves, learned or static;
        a site is last seen at the first tick after its last reply.
        """
        table = RouteTable(self.clock, {"CN=site-a": [B]})
        a = FakeFrameConnection("192.0.2.1:1", "CN=site-a")
        table.connected(a)
        self.clock.advance(3)
        table.replied(a, serial_key(A))
        self.clock.advance(2)
        table.tick()
        [site] = table.snapshot()
        self.assertEqual(site, {"identity": "CN=site-a", "address": "192.0.2.1:1", "since": 0.0, "last_seen": 5.0,
                                "serials": sorted([A, B]), "requests": 0, "replies": 1})


class RelayRoutingTests(SynchronousTestCase):
    def test_unicastToItsSite(self):
        """
        Once a site has answered for a serial, unicast requests for it go
        to that site alone, and its reply comes back.
        """
        hub = Hub(self)
        a, b, c = hub.site("192.0.2.1:1"), hub.site("192.0.2.2:1"), hub.site("192.0.2.3:1")
        hub.send(GET_CONTROLLER, A)
        self.assertEqual([len(s.sent) for s in (a, b, c)], [1, 1, 1])
        self.assertEqual(hub.relay.routes.unrouted, 1)
        hub.answer(a, A)
        for _ in range(3):
            hub.send(PUT_CARD, A)
            hub.answer(a, A, PUT_CARD)
        self.assertEqual([len(s.sent) for s in (a, b, c)], [4, 1, 1])
        self.assertEqual(len(hub.replies), 4)
        self.assertEqual(hub.relay.routes.sites[a].requests, 3)

    def test_lastSeen(self):
        """
        A site's replies are counted as they come, and it is last seen at
        the relay's next sweep (every 5 s) after its last reply.
        """
        hub = Hub(self)
        a = hub.site("192.0.2.1:1")
        hub.clock.advance(1)
        hub.send(GET_CONTROLLER, A)
        hub.answer(a, A)
        hub.send(GET_CONTROLLER, A)
        hub.answer(a, A)
        [site] = hub.relay.routes.snapshot()
        self.assertEqual((site["replies"], site["last_seen"]), (2, 0.0))
        hub.clock.advance(4)
        [site] = hub.relay.routes.snapshot()
        self.assertEqual(site["last_seen"], 5.0)

    def test_broadcastToAll(self):
        """
        A broadcast goes to every site, and every reply comes back and
        teaches a route.
        """
        hub = Hub(self)
        sites = [hub.site("192.0.2.%d:1" % n) for n in range(1, 4)]
        hub.send(GET_CONTROLLER, 0)
        for site, serial in zip(sites, (A, B, C)):
            hub.answer(site, serial)
        self.assertEqual(len(hub.replies), 3)
        for site, serial in zip(sites, (A, B, C)):
            self.assertIs(hub.relay.routes.target(serial_key(serial)).connection, site)

    def test_unknownDropped(self):
        """
        With C{--unknown-serial drop}, a request for a serial no site has
        claimed goes nowhere, and is counted; a broadcast still goes to
        all, and teaches the route.
        """
        hub = Hub(self, **{"unknown-serial": "drop"})
        a, b = hub.site("192.0.2.1:1"), hub.site("192.0.2.2:1")
        hub.send(PUT_CARD, A)
        self.assertEqual((a.sent, b.sent), ([], []))
        self.assertEqual((hub.relay.routes.unrouted, hub.relay.routes.dropped), (1, 1))
        hub.send(GET_CONTROLLER, 0)
        hub.answer(b, A)
        hub.send(PUT_CARD, A)
        self.assertEqual((len(a.sent), len(b.sent)), (1, 2))
        t = Tally()
        hub.relay.tally(t)
        self.assertEqual(t.dropped["no_route"], 1)

    def test_moves(self):
        """
        A serial whose site closes is sent to all again, and routed to the
        site that answers it next.
        """
        hub = Hub(self)
        a, b = hub.site("192.0.2.1:1"), hub.site("192.0.2.2:1")
        hub.send(GET_CONTROLLER, A)
        hub.answer(a, A)
        hub.close(a)
        hub.send(GET_CONTROLLER, A)
        self.assertEqual(len(b.sent), 2)
        hub.answer(b, A)
        hub.send(GET_CONTROLLER, A)
        self.assertEqual(len(b.sent), 3)
        self.assertEqual(len(a.sent), 1)

    def test_hubOfOne(self):
        """
        An out end with one connection (a client end dialling a site
        server) sends it every request, as before.
        """
        hub = Hub(self)
        a = hub.site("192.0.2.1:1")
        hub.send(GET_CONTROLLER, A)
        hub.answer(a, A)
        hub.send(GET_CONTROLLER, B)
        hub.send(GET_CONTROLLER, 0)
        self.assertEqual(len(a.sent), 3)
        self.assertEqual(len(hub.replies), 1)

    def test_goSite(self):
        """
        A Go site (no session frame, no certificate: known by its host) is
        routed like any other, statically by its address.
        """
        hub = Hub(self, routes={"192.0.2.2": [B]})
        a, go = hub.site("192.0.2.1:1"), hub.site("192.0.2.2:50123")
        hub.send(PUT_CARD, B)
        self.assertEqual((len(a.sent), len(go.sent)), (0, 1))
        hub.answer(go, B, PUT_CARD)
        self.assertEqual(len(hub.replies), 1)

    def test_staticSiteOffline(self):
        """
        A request for a serial routed statically to a site not connected is
        dropped, not sent to the others.
        """
        hub = Hub(self, routes={"CN=site-a": [A]})
        b = hub.site("192.0.2.2:1", "CN=site-b")
        hub.send(PUT_CARD, A)
        self.assertEqual(b.sent, [])
        self.assertEqual(hub.relay.routes.dropped, 1)

    def test_rogueSite(self):
        """
        With C{--client-auth} and static routes, a site with a valid
        certificate answering a broadcast with a forged serial has its
        reply refused and warned of, and never receives that serial's
        requests.
        """
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        hub = Hub(self, routes={"CN=site-a": [A], "CN=site-b": [B]}, **{"client-auth": True})
        a = hub.site("192.0.2.1:1", "CN=site-a")
        rogue = hub.site("192.0.2.9:1", "CN=site-b")
        hub.send(GET_CONTROLLER, 0)
        hub.answer(a, A)
        hub.answer(rogue, A)
        self.assertEqual(len(hub.replies), 1)
        for _ in range(3):
            hub.send(PUT_CARD, A)
        self.assertEqual((len(a.sent), len(rogue.sent)), (4, 1))
        warnings = [e for e in observer if e["log_level"].name == "warn"]
        self.assertEqual([(w["identity"], w["serial"]) for w in warnings], [("CN=site-b", A)])
        hub.send(PUT_CARD, C)
        self.assertEqual((len(a.sent), len(rogue.sent)), (4, 1), "a serial in no route was sent")
        t = Tally()
        hub.relay.tally(t)
        self.assertEqual(t.dropped["refused_route"], 1)

    def test_withoutClientAuth(self):
        """
        Without C{--client-auth} identities are not proven: a reply from
        another site for a statically routed serial is relayed, but does
        not move the route.
        """
        hub = Hub(self, routes={"192.0.2.1": [A]})
        a, b = hub.site("192.0.2.1:1"), hub.site("192.0.2.2:1")
        hub.send(GET_CONTROLLER, 0)
        hub.answer(b, A)
        self.assertEqual(len(hub.replies), 1)
        hub.send(PUT_CARD, A)
        self.assertEqual((len(a.sent), len(b.sent)), (2, 1))
