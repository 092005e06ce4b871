"""
Tests for the C{xmpp/} transport's logic: frames in stanzas
(L{uhppoted_tunnel.transports.xmpp.frames}), and a logged-in session
(L{uhppoted_tunnel.transports.xmpp.session}) on a real XML stream over a fake
transport and a fake clock: presence, frames in and out, pacing and
hostile input.
"""

import os
import stat

from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.words.protocols.jabber import client
from twisted.words.protocols.jabber.jid import JID
from twisted.words.xish import domish
from zope.interface.verify import verifyObject

from tests import certs
from uhppoted_tunnel.transports.xmpp.connection import XMPPConnection
from uhppoted_tunnel.transports.xmpp.maker import XMPPConnectorMaker, read_password
from uhppoted_tunnel.transports.xmpp.frames import (
    BAD_BASE64,
    BAD_ID,
    NS_TUNNEL,
    PACE_BURST,
    TOO_LONG,
    Peer,
    SendQueue,
    frame_element,
    message_head,
    read_frames,
    stanza,
)
from uhppoted_tunnel.transports.xmpp.login import _LoginStream
from uhppoted_tunnel.core.counts import tally
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IFrameConnection, IInEnd, IOutEnd, ISecureEnd
from uhppoted_tunnel.link.lifecycle import CONNECTING, UP
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter, packet

MAKER = XMPPConnectorMaker()
REQUEST = packet(0x94, 405419896)
REPLY = packet(0x94, 405419896, b"\xc0\xa8\x01\x64")

SERVER_HEADER = (b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' "
                 b"from='localhost' id='s1' version='1.0'>")
ME = "host@localhost/r1"
PEER = "site@localhost/s1"


def element(text):
    """
    Parse one stanza, as the stream's parser would hand it over.
    """
    found = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
    stream.parse(text.encode("utf-8") if isinstance(text, str) else text)
    [stanza] = found
    return stanza


def sent(transport):
    """
    The stanzas written to a stream's transport (after its header),
    parsed.
    """
    found = []
    stream = domish.elementStream()
    stream.DocumentStartEvent = lambda root: None
    stream.ElementEvent = found.append
    stream.DocumentEndEvent = lambda: None
    stream.parse(b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>")
    stream.parse(transport.value())
    return found


def frames_message(sender, *frames, kind="headline", to=ME):
    return "<message from='{}' to='{}' type='{}'><frames xmlns='{}'>{}</frames></message>".format(
        sender, to, kind, NS_TUNNEL, "".join(frames)).encode("utf-8")


class FrameCodecTests(SynchronousTestCase):
    def setUp(self):
        self.bad = []

    def read(self, text, max_payload=1024):
        return read_frames(element(text), max_payload, self.bad.append)

    def test_roundTrip(self):
        """
        Frames put in a stanza read back with their ids and payloads, in
        order, an empty payload (an acknowledgement) included.
        """
        text = stanza(message_head(PEER), [frame_element(1, REQUEST), frame_element(4294967295, b""),
                                           frame_element(7, b"\x00")])
        self.assertEqual(self.read(text), [(1, REQUEST), (4294967295, b""), (7, b"\x00")])
        self.assertEqual(self.bad, [])

    def test_stanza(self):
        """
        A stanza goes to the peer's full JID as a headline, which servers
        never store for an offline resource, with hints that keep it out of
        archives and carbons.
        """
        message = element(stanza(message_head("site@localhost/a'b&c"), [frame_element(1, REQUEST)]))
        self.assertEqual((message.name, message["to"], message["type"]), ("message", "site@localhost/a'b&c",
                                                                          "headline"))
        hints = {(child.uri, child.name) for child in message.elements()}
        self.assertIn(("urn:xmpp:hints", "no-store"), hints)
        self.assertIn(("urn:xmpp:hints", "no-copy"), hints)
        self.assertNotIn(("jabber:client", "body"), hints)

    def test_textInPieces(self):
        """
        A payload whose base64 text the parser hands over in several
        pieces is read whole.
        """
        message = element(frames_message(PEER, frame_element(3, REQUEST)))
        frame = next(next(message.elements(NS_TUNNEL, "frames")).elements())
        text = frame.children[0]
        frame.children[:] = [text[:5], text[5:40], text[40:]]
        self.assertEqual(read_frames(message, 1024, self.bad.append), [(3, REQUEST)])

    def test_badIds(self):
        """
        A frame with no id, or one that is not a decimal u32, is dropped
        and counted; the good frames beside it are read.
        """
        good = frame_element(9, REQUEST)
        bad = ["<frame>AA==</frame>", "<frame id=''>AA==</frame>", "<frame id='-1'>AA==</frame>",
               "<frame id='4294967296'>AA==</frame>", "<frame id='00000000001'>AA==</frame>",
               "<frame id='1e3'>AA==</frame>", "<frame id=' 1'>AA==</frame>", "<frame id='\u0661'>AA==</frame>"]
        self.assertEqual(self.read(frames_message(PEER, good, *bad, good)), [(9, REQUEST), (9, REQUEST)])
        self.assertEqual(self.bad, [BAD_ID] * len(bad))

    def test_badBase64(self):
        """
        A payload that is not strict base64 is dropped and counted.
        """
        bad = ["<frame id='1'>A</frame>", "<frame id='2'>AA=</frame>", "<frame id='3'>A!==</frame>",
               "<frame id='4'>AA==AA==</frame>", "<frame id='5'>AA ==</frame>"]
        self.assertEqual(self.read(frames_message(PEER, *bad)), [])
        self.assertEqual(self.bad, [BAD_BASE64] * len(bad))

    def test_tooLong(self):
        """
        A payload over the limit is dropped, whether its text says so at
        once or only once decoded; one at the limit is read.
        """
        self.assertEqual(self.read(frames_message(PEER, frame_element(1, bytes(64))), max_payload=64),
                         [(1, bytes(64))])
        self.assertEqual(self.read(frames_message(PEER, frame_element(1, bytes(65))), max_payload=64), [])
        self.assertEqual(self.read(frames_message(PEER, frame_element(1, bytes(64))), max_payload=63), [])
        self.assertEqual(self.read(frames_message(PEER, "<frame id='1'>" + "A" * 100000 + "</frame>")), [])
        self.assertEqual(self.bad, [TOO_LONG] * 3)

    def test_foreignElements(self):
        """
        Elements of other namespaces, and frames outside C{<frames/>}, are
        not frames.
        """
        text = ("<message from='{0}'><frames xmlns='urn:example'><frame id='1'>AA==</frame></frames>"
                "<frame xmlns='{1}' id='2'>AA==</frame><body>hello</body></message>").format(PEER, NS_TUNNEL)
        self.assertEqual(self.read(text), [])
        self.assertEqual(self.bad, [])


class PeerTests(SynchronousTestCase):
    def test_bare(self):
        """
        A bare C{--xmpp-peer} matches any resource of that account,
        normalised, and nothing else.
        """
        peer = Peer(JID("site@localhost"))
        self.assertEqual(peer.matches("site@localhost/abc"), "site@localhost/abc")
        self.assertEqual(peer.matches("SITE@LocalHost/abc"), "site@localhost/abc")
        for other in ("site@localhost", "host@localhost/abc", "localhost", "site@other/abc", "", None, "@@@",
                      "a" * 2000 + "@localhost/x"):
            self.assertIsNone(peer.matches(other), other)

    def test_full(self):
        """
        A full C{--xmpp-peer} matches that resource alone.
        """
        peer = Peer(JID("site@localhost/tunnel"))
        self.assertEqual(peer.matches("site@localhost/tunnel"), "site@localhost/tunnel")
        self.assertIsNone(peer.matches("site@localhost/other"))


class _Link:
    def __init__(self, jid):
        self.head = message_head(jid)


class SendQueueTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.written = []
        self.stale = []
        self.a, self.b = _Link("a@localhost/1"), _Link("b@localhost/1")

    def queue(self, rate=1000, limit=100000, max_age=None):
        return SendQueue(self.clock, self.written.append, rate, limit, max_age, self.stale.append)

    def frames(self):
        return [[frame_id for frame_id, _ in read_frames(element(text), 65535, None)] for text in self.written]

    def test_burstThenPaced(self):
        """
        Frames go at once while the burst lasts, then one stanza as soon as
        the rate pays for it, each stanza carrying every frame for its peer
        that waited.
        """
        queue = self.queue()
        frame = frame_element(1, REQUEST)
        size = len(stanza(self.a.head, [frame]))
        at_once = PACE_BURST // size
        for _ in range(at_once + 5):
            self.assertTrue(queue.push(self.a, frame))
        self.assertEqual(len(self.written), at_once)
        self.clock.advance(1)
        self.assertEqual(len(self.written), at_once + 1)
        self.assertEqual(len(self.frames()[-1]), 5)
        self.assertEqual(queue.queued, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_rate(self):
        """
        Over time the bytes sent stay within the burst plus the rate.
        """
        queue = self.queue(rate=1000)
        frame = frame_element(1, REQUEST)
        for _ in range(200):
            queue.push(self.a, frame)
            self.clock.advance(0.05)
            self.assertLessEqual(sum(map(len, self.written)), PACE_BURST + 1000 * self.clock.seconds() + 1)

    def test_peersNotMixed(self):
        """
        Frames for different peers go in different stanzas, in the order
        queued.
        """
        queue = self.queue(rate=1)
        queue.bucket.take(cost=PACE_BURST)
        for frame_id, link in enumerate([self.a, self.a, self.b, self.a], 1):
            queue.push(link, frame_element(frame_id, b"x"))
        self.clock.advance(10000)
        self.assertEqual(self.frames(), [[1, 2], [3], [4]])
        self.assertEqual([element(text)["to"] for text in self.written], ["a@localhost/1", "b@localhost/1",
                                                                          "a@localhost/1"])

    def test_bounded(self):
        """
        A frame that would take what waits past the limit is refused; one
        frame is always taken.
        """
        frame = frame_element(1, REQUEST)
        queue = self.queue(rate=1, limit=len(frame) * 2)
        queue.bucket.take(cost=PACE_BURST)
        self.assertEqual([queue.push(self.a, frame) for _ in range(3)], [True, True, False])
        queue.stop()
        self.assertEqual(queue.queued, 0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        big = frame_element(1, bytes(1000))
        queue = self.queue(rate=1, limit=10)
        queue.bucket.take(cost=PACE_BURST)
        self.assertTrue(queue.push(self.a, big))
        queue.stop()

    def test_stale(self):
        """
        In a request tunnel a frame that waited longer than its age limit
        is dropped when its turn comes, and counted.
        """
        queue = self.queue(rate=100, max_age=5.0)
        queue.bucket.take(cost=PACE_BURST)
        for frame_id in range(1, 6):
            queue.push(self.a, frame_element(frame_id, REQUEST))
        while self.clock.getDelayedCalls():
            self.clock.advance(0.1)
        self.assertEqual((self.stale, self.written), ([5], []))
        queue.push(self.a, frame_element(6, REQUEST))
        self.assertEqual(self.frames(), [[6]])

    def test_hugeStanza(self):
        """
        A stanza bigger than the burst (a huge --max-payload) still goes.
        """
        queue = self.queue(rate=1000)
        queue.push(self.a, frame_element(1, bytes(60000)))
        self.assertEqual(self.frames(), [[1]])

    def test_discard(self):
        """
        The frames for a peer that has gone are forgotten; the others go.
        """
        queue = self.queue(rate=1)
        queue.bucket.take(cost=PACE_BURST)
        queue.push(self.a, frame_element(1, b"x"))
        queue.push(self.b, frame_element(2, b"x"))
        queue.discard(self.a)
        self.clock.advance(10000)
        self.assertEqual(self.frames(), [[2]])
        self.assertEqual(queue.queued, 0)


def settings(directory, **extra):
    files = certs.make(os.path.join(directory, "certs"))
    password = os.path.join(directory, "password")
    with open(password, "w") as f:
        f.write("secret\n")
    os.chmod(password, 0o600)
    values = {"max-payload": 1024, "max-send-queue": 262144, "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
              "udp-timeout": 5.0, "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False,
              "handshake-timeout": 15.0, "ca-cert": files["ca"][0], "cert": None, "key": None,
              "xmpp-peer": "site@localhost", "xmpp-password-file": password, "xmpp-server": "127.0.0.1:5222",
              "xmpp-rate": 9000, "event-spool": os.path.join(directory, "events")}
    values.update(extra)
    return values


def make(text, role, values, router=None, reactor=None):
    reactor = reactor if reactor is not None else FakeReactor()
    _, spec = parse(text, {prefix: MAKER for prefix in MAKER.prefixes})
    return MAKER.makeEnd(spec, role, values, router, reactor), reactor


class _Sessions:
    """
    An C{xmpp/} end whose login is done by hand: a session on a real XML
    stream written to a L{StringTransport}.
    """

    role = IN

    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.settings = settings(self.mktemp())
        self.router = RecordingRouter()
        self.end, self.reactor = make("xmpp/client:host@localhost", self.role, self.settings, self.router)
        self.end.startService()
        self.session, self.stream, self.transport = self.login()

    def tearDown(self):
        if self.end.running:
            self.end.stopService()
            if self.stream.transport.connected:
                self.stream.connectionLost(Failure(ConnectionLost()))
        self.assertEqual([call for call in self.reactor.getDelayedCalls()
                          if call.func.__qualname__ != "CertificateWatch._warn"], [])

    def login(self, jid=ME):
        authenticator = client.XMPPAuthenticator(JID("host@localhost"), "secret")
        stream = _LoginStream(authenticator, None)
        transport = StringTransport()
        stream.makeConnection(transport)
        stream.dataReceived(SERVER_HEADER)
        authenticator.jid = JID(jid)
        transport.clear()
        session = self.end.endpoint.sessions.buildProtocol(None)
        session.attach(stream)
        stream.session = session
        session.makeConnection(transport)
        return session, stream, transport

    def feed(self, data):
        self.stream.dataReceived(data)

    def take(self):
        """
        The stanzas written since the last call.
        """
        found = sent(self.transport)
        self.transport.clear()
        return found

    def available(self, jid=PEER, hello=True):
        self.feed("<presence from='{}' to='host@localhost'>{}</presence>".format(
            jid, "<hello xmlns='{}'/>".format(NS_TUNNEL) if hello else "").encode("utf-8"))

    def messages(self):
        return [formatEvent(event) for event in self.logged]


class SessionTests(_Sessions, SynchronousTestCase):
    def test_interfaces(self):
        """
        The maker provides L{IConnectorMaker}; its ends provide L{IInEnd}
        or L{IOutEnd}; a link to the peer provides L{IFrameConnection}.
        """
        verifyObject(IConnectorMaker, MAKER)
        verifyObject(IInEnd, self.end)
        self.assertEqual(MAKER.roles("xmpp/client:"), {IN, OUT})
        self.assertFalse(MAKER.relaysEvents("xmpp/client:"))
        self.assertTrue(MAKER.relaysEvents("xmpp/event/client:"))
        verifyObject(IFrameConnection, XMPPConnection())

    def test_secure(self):
        """
        An xmpp/ end provides L{ISecureEnd}: SIGHUP reloads its TLS
        certificates through its endpoint.
        """
        verifyObject(ISecureEnd, self.end)
        self.assertIs(self.end.watch.parent, self.end)

    def test_hello(self):
        """
        Once logged in, a session says it is available, then sends the
        peer's account directed presence with a hello.
        """
        self.transport.clear()
        session, stream, transport = self.login("host@localhost/r2")
        initial, hello = sent(transport)
        self.assertEqual((initial.name, initial.attributes), ("presence", {}))
        self.assertEqual((hello.name, hello["to"]), ("presence", "site@localhost"))
        self.assertEqual([(child.uri, child.name) for child in hello.elements()], [(NS_TUNNEL, "hello")])
        self.assertIn("logged in as host@localhost/r2, waiting for site@localhost", self.messages())

    def test_helloAnswered(self):
        """
        Available presence from one of the peer's resources makes it a
        connection and is answered with directed presence, without a hello
        (an answer is not answered).
        """
        self.take()
        self.available()
        [answer] = self.take()
        self.assertEqual((answer.name, answer["to"], list(answer.elements())), ("presence", PEER, []))
        [link] = self.end.connections
        self.assertEqual(link.peer, PEER)
        self.assertIn("connected to " + PEER, self.messages())

    def test_answerNotAnswered(self):
        """
        Presence without a hello from a resource already connected changes
        nothing; from one not yet connected it connects and is answered.
        """
        self.take()
        self.available(hello=False)
        self.assertEqual(len(self.take()), 1)
        self.available(hello=False)
        self.assertEqual(self.take(), [])
        self.assertEqual(len(self.end.connections), 1)

    def test_helloAgain(self):
        """
        A hello from a resource already connected means that half logged in
        again: the old connection closes and a new one opens.
        """
        self.available()
        [old] = self.end.connections
        self.available()
        [new] = self.end.connections
        self.assertIsNot(old, new)
        self.assertTrue(old.closed)

    def test_unavailable(self):
        """
        Unavailable presence from a connected resource closes its
        connection; from one that is not connected it changes nothing.
        """
        self.available()
        self.available("site@localhost/other")
        self.feed(b"<presence from='site@localhost/nobody' type='unavailable'/>")
        self.feed(("<presence from='%s' type='unavailable'/>" % PEER).encode("ascii"))
        self.assertEqual([link.peer for link in self.end.connections], ["site@localhost/other"])
        self.assertIn("connection to {} closed".format(PEER), self.messages())

    def test_framesToRouter(self):
        """
        Each frame from a connected resource reaches the relay, in order;
        the reply goes back to that resource as a headline with the
        request's id.
        """
        self.available()
        self.take()
        self.feed(frames_message(PEER, frame_element(7, REQUEST), frame_element(8, REQUEST)))
        [(first, reply), (second, _)] = self.router.requests
        self.assertEqual((first, second), (REQUEST, REQUEST))
        reply(REPLY)
        [message] = self.take()
        self.assertEqual((message["to"], message["type"]), (PEER, "headline"))
        self.assertEqual(read_frames(message, 1024, None), [(7, REPLY)])

    def test_strangersDropped(self):
        """
        Stanzas from anyone but the peer (another account, the peer's bare
        JID, another resource when the peer is a full JID) are dropped,
        with one warning and then a count at most every 10 s; this
        account's own presence, reflected, is not warned of.
        """
        self.available()
        self.take()
        self.feed(("<presence from='%s'/>" % ME).encode("ascii"))
        for sender in ("mallory@localhost/x", "site@localhost", "localhost", "bad@@jid"):
            self.feed(frames_message(sender, frame_element(1, REQUEST)))
        self.feed(b"<presence from='mallory@localhost/x' type='subscribe'/>")
        self.assertEqual(self.router.requests, [])
        self.assertEqual(self.take(), [])
        warnings = [text for text in self.messages() if "others than the peer" in text]
        self.assertEqual(warnings, ["dropped 1 stanza(s) from others than the peer site@localhost, the last from "
                                    "mallory@localhost/x"])
        self.reactor.advance(10)
        warnings = [text for text in self.messages() if "others than the peer" in text]
        self.assertEqual(warnings[1:], ["dropped 4 stanza(s) from others than the peer site@localhost, the last "
                                        "from mallory@localhost/x"])
        self.assertEqual(self.end.endpoint.refusedStanzas, 5)

    def test_notConnectedDropped(self):
        """
        Frames from a resource of the peer that has not said it is online,
        and error messages from a connected one (a bounce may carry a frame
        of ours), are dropped, without a warning.
        """
        self.feed(frames_message(PEER, frame_element(1, REQUEST)))
        self.available()
        self.feed(frames_message(PEER, frame_element(1, REQUEST), kind="error"))
        self.assertEqual(self.router.requests, [])
        self.assertEqual([formatEvent(event) for event in self.logged if event["log_level"] >= LogLevel.warn], [])

    def test_badFramesWarned(self):
        """
        Bad frames from the peer are dropped with a throttled warning per
        kind naming the sender; good frames in the same stanza go on.
        """
        self.available()
        self.feed(frames_message(PEER, "<frame id='x'>AA==</frame>", "<frame id='1'>!!</frame>",
                                 frame_element(2, bytes(2000)), frame_element(3, REQUEST)))
        self.assertEqual([payload for payload, _ in self.router.requests], [REQUEST])
        messages = self.messages()
        self.assertIn("dropped 1 frame(s) with a missing or bad id, the last from " + PEER, messages)
        self.assertIn("dropped 1 frame(s) that were not base64, the last from " + PEER, messages)
        self.assertIn("dropped 1 frame(s) over --max-payload 1024 bytes, the last from " + PEER, messages)

    def test_metrics(self):
        """
        The end's link is up while a resource of the peer is connected,
        and connecting otherwise; what it drops is counted by reason.
        """
        self.assertEqual(self.end.link.state, CONNECTING)
        self.available()
        self.assertEqual((self.end.link.state, list(self.end.link.peers.values())[0][0]), (UP, PEER))
        self.feed(frames_message("mallory@localhost/x", frame_element(1, REQUEST)))
        self.feed(frames_message(PEER, "<frame id='x'>AA==</frame>", "<frame id='1'>!!</frame>",
                                 frame_element(2, bytes(2000))))
        self.assertEqual(tally(self.end).dropped, {"stranger": 1, "bad_frame": 2, "too_long": 1})
        self.feed(("<presence from='%s' type='unavailable'/>" % PEER).encode("ascii"))
        self.assertEqual(self.end.link.state, CONNECTING)

    def test_presenceBounced(self):
        """
        Presence that comes back as an error from the peer's account is a
        warning with the reason; from anyone else it is a stranger's
        stanza.
        """
        self.feed(b"<presence from='site@localhost' type='error'><error type='cancel'>"
                  b"<item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></presence>")
        self.feed(b"<presence from='mallory@localhost' type='error'/>")
        messages = self.messages()
        self.assertIn("the server could not deliver presence to site@localhost: item-not-found", messages)
        self.assertIn("dropped 1 stanza(s) from others than the peer site@localhost, the last from "
                      "mallory@localhost", messages)
        self.assertEqual(self.end.connections, [])

    def test_iq(self):
        """
        A request is answered (RFC 6120 8.2.3): a ping with a result,
        anything else with service-unavailable; results and errors are not.
        """
        self.take()
        self.feed(b"<iq from='localhost' id='p1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>")
        self.feed(b"<iq from='mallory@localhost/x' id='q1' type='get'><query xmlns='jabber:iq:version'/></iq>")
        self.feed(b"<iq from='localhost' id='r1' type='result'/>")
        pong, refused = self.take()
        self.assertEqual((pong["type"], pong["id"], pong["to"]), ("result", "p1", "localhost"))
        self.assertEqual((refused["type"], refused["id"]), ("error", "q1"))
        self.assertEqual(refused.error.firstChildElement().name, "service-unavailable")

    def test_connectionLost(self):
        """
        When the stream to the server is lost every connection closes.
        """
        self.available()
        self.available("site@localhost/other")
        self.stream.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.end.connections, [])
        self.assertIsNone(self.end.endpoint.session)

    def test_stop(self):
        """
        Stopping the end says this half is unavailable and closes the
        stream.
        """
        self.available()
        self.take()
        [link] = self.end.connections
        self.end.stopService()
        self.assertIn(b"<presence type='unavailable'/></stream:stream>", self.transport.value())
        self.transport.clear()
        self.assertFalse(link.sendFrame(1, REPLY))
        self.assertEqual(self.transport.value(), b"")
        self.stream.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.end.connections, [])


class SendTests(_Sessions, SynchronousTestCase):
    role = OUT

    def test_requestsPaced(self):
        """
        Requests go to every connected resource, as headlines to its full
        JID; over the pace's burst they wait, batched, and go at the rate.
        """
        verifyObject(IOutEnd, self.end)
        self.available()
        self.take()
        replies = []
        for _ in range(100):
            self.end.send(REQUEST, replies.append)
        first = self.take()
        self.assertTrue(0 < len(first) < 100)
        self.assertEqual({message["to"] for message in first}, {PEER})
        for _ in range(20):
            self.reactor.advance(0.1)
        rest = self.take()
        ids = [frame_id for message in first + rest for frame_id, _ in read_frames(message, 1024, None)]
        self.assertEqual(ids, list(range(1, 101)))
        self.assertLess(len(first + rest), 100)
        self.feed(frames_message(PEER, frame_element(100, REPLY)))
        self.assertEqual(replies, [REPLY])

    def test_queueFull(self):
        """
        Frames that would take the queue past --max-send-queue are dropped,
        with a throttled warning.
        """
        self.end.stopService()
        self.settings["max-send-queue"] = 1024
        self.end, self.reactor = make("xmpp/client:host@localhost", OUT, self.settings, self.router)
        self.end.startService()
        self.session, self.stream, self.transport = self.login()
        self.available()
        for _ in range(200):
            self.end.send(REQUEST, None)
        self.assertIn("dropped 1 frame(s) for {}: 1024 bytes already wait to be sent at --xmpp-rate 9000 bytes/s "
                      "(--max-send-queue)".format(PEER), self.messages())
        self.reactor.advance(10)


class MakerTests(SynchronousTestCase):
    def setUp(self):
        self.directory = self.mktemp()
        self.settings = settings(self.directory)

    def refused(self, text="xmpp/client:host@localhost", **changes):
        values = dict(self.settings, **changes)
        with self.assertRaises(ValueError) as raised:
            make(text, OUT, values)
        message = str(raised.exception)
        self.assertNotIn("\n", message)
        return message

    def test_badFlags(self):
        """
        What cannot work is a one-line error naming the flag, before
        anything starts.
        """
        self.assertIn("--xmpp-peer", self.refused(**{"xmpp-peer": None}))
        self.assertIn("--xmpp-peer: 'localhost'", self.refused(**{"xmpp-peer": "localhost"}))
        self.assertIn("own account", self.refused(**{"xmpp-peer": "HOST@localhost/x"}))
        self.assertIn("xmpp/client:site@example.org", self.refused("xmpp/client:localhost"))
        self.assertIn("xmpp/client:site@example.org", self.refused("xmpp/client:a@b@c"))
        self.assertIn("--xmpp-password-file", self.refused(**{"xmpp-password-file": None}))
        missing = os.path.join(self.directory, "missing")
        self.assertIn("--xmpp-password-file '{}'".format(missing), self.refused(**{"xmpp-password-file": missing}))
        self.assertIn("--xmpp-server", self.refused(**{"xmpp-server": "127.0.0.1"}))
        self.assertIn("--ca-cert", self.refused(**{"ca-cert": missing}))

    def test_passwordFile(self):
        """
        The password is the file's first line; an empty file is refused;
        a file others may read is warned of.
        """
        path = os.path.join(self.directory, "pw")
        with open(path, "w") as f:
            f.write("p a s s\r\nsecond line\n")
        os.chmod(path, 0o600)
        self.assertEqual(read_password(path), ("p a s s", None))
        os.chmod(path, 0o644)
        password, warning = read_password(path)
        self.assertIn("chmod 600", warning)
        with open(path, "w") as f:
            f.write("\n")
        self.assertRaises(ValueError, read_password, path)
        with open(path, "wb") as f:
            f.write(b"\xff\xfe")
        self.assertRaises(ValueError, read_password, path)
        os.chmod(path, 0)
        if os.geteuid() != 0:
            self.assertRaises(ValueError, read_password, path)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)

    def test_srv(self):
        """
        Without --xmpp-server the end finds the server from the domain's
        DNS SRV records.
        """
        end, _ = make("xmpp/client:host@example.org", OUT, dict(self.settings, **{"xmpp-server": None,
                                                                                   "xmpp-peer": "b@example.org"}))
        self.assertEqual(end.endpoint.server, "example.org (DNS SRV)")


class ScrapeTests(SynchronousTestCase):
    def test_scrape(self):
        """
        A tunnel with an C{xmpp/} end can be scraped, with a link state for
        both ends, before and after it starts (as every connector kind:
        L{tests.unit.test_metrics.EveryKindTests}).
        """
        from tests.unit.test_metrics import samples, tunnel
        from uhppoted_tunnel.app import config
        from uhppoted_tunnel.observe.metrics import registry_for

        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        values = settings(self.mktemp())
        reactor = FakeReactor()
        service = tunnel(reactor, "--in", "udp/listen:127.0.0.1:0", "--out", "xmpp/client:host@localhost",
                         "--xmpp-peer", values["xmpp-peer"], "--xmpp-password-file", values["xmpp-password-file"],
                         "--xmpp-server", values["xmpp-server"], "--ca-cert", values["ca-cert"],
                         "--metrics", "127.0.0.1:0")
        for started in (False, True):
            if started:
                service.startService()
            found = samples(registry_for(service.telemetry, process=False))
            states = {dict(labels)["end"] for (name, labels), value in found.items()
                      if name == "uhppoted_tunnel_link_up"}
            self.assertEqual(states, {"in", "out"})
        stopped = service.stopService()
        reactor.advance(30)
        self.successResultOf(stopped)
