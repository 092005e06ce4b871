# -*- test-case-name: tests.unit.test_zmq -*-
"""
Tests for the zmq/ transport's parts: the frame in a message, the
reactor reader's edge-triggered rules, the ZAP handler, with real ZeroMQ
sockets over inproc (which deliver at once, within the context) and a
fake reactor; and the endpoints under the shared stream ends, with fake
sockets: nothing sleeps, and each wait is an explicit poll.
"""

import os

import zmq
import zmq.auth
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.link.ends import ClientEnd
from uhppoted_tunnel.transports.zmq.connection import ZMQConnection
from uhppoted_tunnel.transports.zmq.curve import read_authorized, read_key
from uhppoted_tunnel.transports.zmq.maker import ZMQConnectorMaker
from uhppoted_tunnel.transports.zmq.server import ZMQPort
from uhppoted_tunnel.transports.zmq import sockets
from uhppoted_tunnel.transports.zmq.sockets import SocketReader, ZAPHandler, messages
from uhppoted_tunnel.transports.zmq.wire import BadMessage, decode, socket_options
from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker, IFrameConnection, IInEnd, IOutEnd
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter, packet
from uhppoted_tunnel.core.frames import encode

SETTINGS = {"max-payload": 1024, "max-connections": 2, "max-connections-per-source": 1, "max-send-queue": 262144,
            "stall-timeout": 30.0, "dead-peer-timeout": 60.0, "handshake-timeout": 15.0, "udp-timeout": 5.0,
            "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False}
MAKER = ZMQConnectorMaker()
REQUEST = packet(0x94, 405419896)


def make(text, role, reactor=None, **settings):
    _, spec = parse(text, {prefix: MAKER for prefix in MAKER.prefixes})
    return MAKER.makeEnd(spec, role, dict(SETTINGS, **settings), RecordingRouter(), reactor or FakeReactor())


class DecodeTests(SynchronousTestCase):
    """
    A message holds frames as a TCP stream carries them (one, from an
    older end).
    """

    def test_frame(self):
        """
        A message made by C{wire.encode} gives back its id and payload; an
        acknowledgement (empty payload) too.
        """
        self.assertEqual(decode(encode(7, REQUEST), 1024), [(7, REQUEST)])
        self.assertEqual(decode(encode(0xFFFFFFFF, b""), 1024), [(0xFFFFFFFF, b"")])

    def test_notOneFrame(self):
        """
        A message shorter than a header, or whose length field disagrees
        with its size, is refused with a reason naming the likely cause.
        """
        for message in (b"", b"\x00\x01", encode(1, REQUEST) + b"x", encode(1, REQUEST)[:-1]):
            with self.assertRaises(BadMessage) as caught:
                decode(message, 1024)
            self.assertIn("is the peer a uhppoted-tunnel zmq/ end?", str(caught.exception))

    def test_tooLong(self):
        """
        A frame longer than --max-payload is refused.
        """
        with self.assertRaises(BadMessage) as caught:
            decode(encode(1, b"x" * 65), 64)
        self.assertIn("exceeds the 64 byte limit", str(caught.exception))

    def test_options(self):
        """
        What queues for one peer, each way, is at most --max-send-queue
        bytes of the longest frames; no message can be longer than one
        frame; sockets close at once.
        """
        options = dict(socket_options(SETTINGS))
        self.assertEqual(options[zmq.SNDHWM], 262144 // 1030)
        self.assertEqual(options[zmq.RCVHWM], 262144 // 1030)
        self.assertEqual(options[zmq.MAXMSGSIZE], 1030)
        self.assertEqual(options[zmq.LINGER], 0)
        self.assertEqual(options[zmq.HANDSHAKE_IVL], 15000)


class _Sockets:
    """
    A connected inproc PAIR in a context of the test's own.
    """

    def setUp(self):
        self.context = zmq.Context()
        self.addCleanup(self.context.term)
        self.ours = self.pair("ours", bind=True)
        self.theirs = self.pair("ours")

    def pair(self, name, bind=False):
        socket = self.context.socket(zmq.PAIR)
        socket.linger = 0
        self.addCleanup(socket.close)
        (socket.bind if bind else socket.connect)("inproc://" + name)
        return socket


class SocketReaderTests(_Sockets, SynchronousTestCase):
    """
    L{SocketReader} follows ZeroMQ's edge-triggered C{ZMQ_FD} rules.
    """

    def setUp(self):
        _Sockets.setUp(self)
        self.reactor = FakeReactor()
        self.received = []
        self.reader = SocketReader(self.ours, messages(self.ours, self.received.append), self.reactor, batch=2)
        self.addCleanup(self.reader.stop)

    def test_interface(self):
        """
        A reader is watched by the reactor through the socket's ZMQ_FD.
        """
        self.reader.start()
        self.assertIn(self.reader, self.reactor.readers)
        self.assertEqual(self.reader.fileno(), self.ours.getsockopt(zmq.FD))

    def test_waitingAtStart(self):
        """
        Messages sent before the reader starts (whose edge came and went)
        are received when it starts.
        """
        self.theirs.send(b"early")
        self.ours.poll(1000)
        self.reader.start()
        self.assertEqual(self.received, [[b"early"]])

    def test_batch(self):
        """
        A reader takes at most C{batch} messages per wake-up and leaves the
        rest to a check on the next turn, as no new edge would come for
        them; once all are read nothing is left scheduled.
        """
        self.reader.start()
        for n in range(5):
            self.theirs.send(b"%d" % n)
        self.ours.poll(1000)
        self.reader.doRead()
        self.assertEqual(len(self.received), 2)
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1)
        self.reactor.advance(0)
        self.assertEqual(self.received, [[b"0"], [b"1"], [b"2"], [b"3"], [b"4"]])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_sendConsumesEdge(self):
        """
        The classic stall: a message arrives while the application is
        sending, the send takes in the socket's edge, and the descriptor
        never says so again. After a send the reader checks again on the
        next turn, by itself, and receives it.
        """
        self.reader.start()
        self.theirs.send(b"while sending")
        self.ours.poll(1000)
        self.ours.send(b"reply")
        self.reader.sent()
        self.reader.sent()
        self.assertEqual(len(self.reactor.getDelayedCalls()), 1, "one check per turn, however many sends")
        self.reactor.advance(0)
        self.assertEqual(self.received, [[b"while sending"]])

    def test_sentNothingWaiting(self):
        """
        A send with no message waiting schedules nothing: the check takes
        in the socket's pending state, so the next message makes a new
        edge.
        """
        self.reader.start()
        self.ours.send(b"request")
        self.reader.sent()
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.theirs.recv()

    def test_sentWhileDraining(self):
        """
        A send made while the reader is receiving schedules nothing: the
        drain checks the socket again before it returns, and receives
        what came meanwhile.
        """
        received = []

        def receive():
            message = self.ours.recv(zmq.NOBLOCK)
            received.append(message)
            if message == b"first":
                self.ours.send(b"reply")
                reader.sent()
                self.theirs.send(b"second")
                self.ours.poll(1000)

        reader = SocketReader(self.ours, receive, self.reactor)
        self.addCleanup(reader.stop)
        self.theirs.send(b"first")
        self.ours.poll(1000)
        reader.start()
        self.assertEqual(received, [b"first", b"second"])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stop(self):
        """
        A stopped reader is no longer watched and has nothing scheduled.
        """
        self.reader.start()
        self.reader.sent()
        self.reader.stop()
        self.assertNotIn(self.reader, self.reactor.readers)
        self.assertEqual(self.reactor.getDelayedCalls(), [])


class FlagTests(SynchronousTestCase):
    def test_plainInts(self):
        """
        The flags and options on every message's way are plain ints with
        pyzmq's values: pyzmq's own are enums, whose C{&} and C{|} run
        Python code.
        """
        for name, value in (("NOBLOCK", zmq.NOBLOCK), ("NOBLOCK_SNDMORE", zmq.NOBLOCK | zmq.SNDMORE),
                            ("RCVMORE", zmq.RCVMORE), ("EVENTS", zmq.EVENTS), ("POLLIN", zmq.POLLIN)):
            constant = getattr(sockets, name)
            self.assertIs(type(constant), int, name)
            self.assertEqual(constant, value)


class ZAPHandlerTests(SynchronousTestCase):
    """
    The ZAP handler answers libzmq's requests from the reactor: caps
    first, then the CURVE key.
    """

    def setUp(self):
        self.context = zmq.Context()
        self.addCleanup(self.context.term)
        self.reactor = FakeReactor()
        self.caps = None
        self.refusals = []
        folder = self.mktemp()
        os.makedirs(folder)
        self.public, self.secret = zmq.curve_keypair()
        self.rogue, _ = zmq.curve_keypair()
        public_file, _ = zmq.auth.create_certificates(folder, "client")
        self.public = read_key(public_file, "--test", secret=False)[0]
        self.handler = ZAPHandler(self.context, self.reactor, lambda address: self.caps,
                                  lambda address, reason: self.refusals.append((address, reason)),
                                  read_authorized(folder))
        self.handler.start()
        self.addCleanup(self.handler.stop)
        self.libzmq = self.context.socket(zmq.REQ)
        self.libzmq.linger = 0
        self.addCleanup(self.libzmq.close)
        self.libzmq.connect("inproc://zeromq.zap.01")

    def ask(self, mechanism, *credentials):
        """
        Ask as libzmq does for a connection from 192.0.2.7.

        :return: the status code answered.
        """
        self.libzmq.send_multipart([b"1.0", b"7", b"uhppoted-tunnel", b"192.0.2.7", b"", mechanism]
                                   + list(credentials))
        self.handler.zap_socket.poll(1000)
        self.handler.reader.doRead()
        self.assertTrue(self.libzmq.poll(1000))
        reply = self.libzmq.recv_multipart()
        self.reactor.advance(0)
        return reply[2]

    def test_authorised(self):
        """
        A client whose public key is in the folder is admitted.
        """
        self.assertEqual(self.ask(b"CURVE", zmq.utils.z85.decode(self.public)), b"200")
        self.assertEqual(self.refusals, [])

    def test_unauthorised(self):
        """
        A client with any other key is refused, and the refusal told with
        its address.
        """
        self.assertEqual(self.ask(b"CURVE", zmq.utils.z85.decode(self.rogue)), b"400")
        self.assertEqual(self.refusals, [("192.0.2.7", "its key is not in --zmq-authorized-keys")])

    def test_caps(self):
        """
        A connection over a cap is refused before its key is looked at, and
        the refusal names the cap; a plain one under the caps is admitted.
        """
        self.assertEqual(self.ask(b"NULL"), b"200")
        self.caps = "max-connections"
        self.assertEqual(self.ask(b"CURVE", zmq.utils.z85.decode(self.public)), b"400")
        self.assertEqual(self.refusals, [("192.0.2.7", "max-connections")])


class KeyFileTests(SynchronousTestCase):
    """
    Key files are read as C{zmq.auth.create_certificates} writes them, and
    a bad one is a one-line error naming the flag and the file.
    """

    def setUp(self):
        self.folder = self.mktemp()
        os.makedirs(self.folder)
        self.public, self.secret = zmq.auth.create_certificates(self.folder, "server")

    def test_read(self):
        """
        A secret file gives both keys; a public file its public key.
        """
        public, secret = read_key(self.secret, "--zmq-server-key", secret=True)
        self.assertEqual((len(public), len(secret)), (40, 40))
        self.assertEqual(read_key(self.public, "--zmq-server-key", secret=False), (public, None))

    def test_errors(self):
        """
        A missing file, a public file where a secret one is needed, a file
        with no key and a folder with no keys are one-line errors naming
        the flag and the path.
        """
        empty = os.path.join(self.folder, "empty")
        open(empty, "w").close()
        cases = [
            (lambda: read_key(empty + "x", "--zmq-server-key", True), "no such file"),
            (lambda: read_key(self.public, "--zmq-server-key", True), "no secret key"),
            (lambda: read_key(empty, "--zmq-client-key", True), "No public key"),
            (lambda: read_authorized(empty), "not a folder"),
            (lambda: read_authorized(self.mktemp() if os.makedirs(n := self.mktemp()) else n), "no client public"),
        ]
        for call, reason in cases:
            with self.assertRaises(ValueError) as caught:
                call()
            self.assertIn(reason, str(caught.exception))
            self.assertEqual(len(str(caught.exception).splitlines()), 1)

    def test_flagsTogether(self):
        """
        Authorised keys without the server's key, or a client key without
        the server's public key, are refused.
        """
        with self.assertRaises(ValueError):
            make("zmq/server:127.0.0.1:0", IN, **{"zmq-authorized-keys": self.folder})
        with self.assertRaises(ValueError):
            make("zmq/client:127.0.0.1:5555", IN, **{"zmq-client-key": self.secret})


class MakerTests(SynchronousTestCase):
    """
    The maker builds both ends in both roles, and refuses what ZeroMQ
    cannot do.
    """

    def test_interface(self):
        """
        The maker provides L{IConnectorMaker}; each end the role's
        interface.
        """
        verifyObject(IConnectorMaker, MAKER)
        self.assertTrue(IOutEnd.providedBy(make("zmq/server:127.0.0.1:0", OUT)))
        self.assertTrue(IInEnd.providedBy(make("zmq/client:127.0.0.1:5555", IN)))
        self.assertTrue(MAKER.relaysEvents("zmq/event/client:"))
        self.assertFalse(MAKER.relaysEvents("zmq/client:"))

    def test_refused(self):
        """
        A client with no port, or an end bound to an interface, is a
        one-line error naming the connector.
        """
        for text in ("zmq/client:127.0.0.1:0", "zmq/client::eth0:127.0.0.1:5555", "zmq/server:nonsense"):
            with self.assertRaises(ValueError) as caught:
                make(text, IN)
            self.assertIn(text.split(":", 1)[0], str(caught.exception))


class FakeDealer:
    """
    One attempt's socket, as L{uhppoted_tunnel.transports.zmq.client.Dealer}
    is made, recording what is sent; the test feeds its monitor events.
    """

    made = None
    batches = False

    def __init__(self, reactor, target, options, curve, attempt):
        self.target = target
        self.attempt = attempt
        self.sent = []
        self.closed = False
        self.made.append(self)

    def send(self, message):
        self.sent.append(message)
        return True

    def writable(self):
        return True

    def close(self):
        self.closed = True


class ClientDialTests(SynchronousTestCase):
    """
    A client end's link state comes from its socket's monitor, fed here as
    events: the shared schedule and --max-retries apply, with reasons.
    """

    def setUp(self):
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.reactor = FakeReactor()
        self.failures = []
        self.start(**{"max-retries": 2})

    def start(self, **settings):
        """
        Start a zmq/client end whose attempts are L{FakeDealer}s; a failed
        end is stopped on the next turn, as the tunnel stops it.
        """
        self.dealers = []
        dealer = type("Dealer", (FakeDealer,), {"made": self.dealers})
        maker = ZMQConnectorMaker(dealer=dealer)
        _, spec = parse("zmq/client:127.0.0.1:5555", {prefix: maker for prefix in maker.prefixes})
        self.end = maker.makeEnd(spec, IN, dict(SETTINGS, **settings), RecordingRouter(), self.reactor)
        self.assertIsInstance(self.end, ClientEnd)
        self.end.whenFailed().addCallback(self.failed)
        self.end.startService()

    def failed(self, message):
        self.failures.append(message)
        self.reactor.callLater(0, self.end.stopService)

    def event(self, kind, value):
        """
        The monitor of the latest attempt reports C{kind}.
        """
        self.dealers[-1].attempt.event(kind, value)

    def redial(self):
        """
        Let the next attempt start.
        """
        [call] = self.reactor.getDelayedCalls()
        self.reactor.advance(call.getTime() - self.reactor.seconds())

    def messages(self, level="warn"):
        return [e["log_format"].format(**e) for e in self.logged if e["log_level"].name == level]

    def delays(self):
        return [call.getTime() - self.reactor.seconds() for call in self.reactor.getDelayedCalls()]

    def tearDown(self):
        for call in self.reactor.getDelayedCalls():
            call.cancel()

    def test_refused(self):
        """
        A dial that fails is warned of with the reason and retried after
        5 s, then 10 s.
        """
        self.event(zmq.EVENT_CLOSED, 12)
        self.assertEqual(self.delays(), [5.0])
        self.redial()
        self.event(zmq.EVENT_CLOSED, 12)
        self.assertEqual(self.delays(), [10.0])
        self.assertEqual(self.messages(), [
            "could not connect to 127.0.0.1:5555 (the connection failed (refused or unreachable)): retrying in 5s",
            "could not connect to 127.0.0.1:5555 (the connection failed (refused or unreachable)): retrying in 10s",
        ])

    def test_outOfRetries(self):
        """
        Past --max-retries failed attempts in a row the end fails, naming
        the address, the count and the last reason, and dials no more.
        """
        for attempt in range(3):
            if attempt:
                self.redial()
            self.event(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400)
        self.reactor.advance(0)
        self.assertEqual(self.delays(), [])
        self.assertEqual(len(self.failures), 1)
        self.assertIn("could not connect to 127.0.0.1:5555 after 3 attempt(s): the server refused this client "
                      "(ZAP 400)", self.failures[0])

    def test_handshakeThenLoss(self):
        """
        A handshake makes the link ready (the relay hears of it) and clears
        the count of failures; its loss is a redial after 5 s, said as
        "reconnecting".
        """
        self.event(zmq.EVENT_CLOSED, 12)
        self.redial()
        self.event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
        [connection] = self.end.connections
        verifyObject(IFrameConnection, connection)
        self.assertIsInstance(connection, ZMQConnection)
        self.assertEqual(connection.peer, "127.0.0.1:5555")
        self.assertTrue(connection.sendFrame(3, REQUEST))
        self.assertEqual(self.dealers[-1].sent, [encode(3, REQUEST)])
        self.event(zmq.EVENT_DISCONNECTED, 17)
        self.assertEqual(self.end.failures, 0)
        self.assertEqual(self.end.connections, [])
        self.assertFalse(connection.sendFrame(4, REQUEST))
        self.assertEqual(self.delays(), [5.0])
        self.assertIn("reconnecting to 127.0.0.1:5555 in 5s", self.messages("info"))

    def test_reasons(self):
        """
        Each failure names its likely cause.
        """
        self.end.stopService()
        self.start(**{"max-retries": -1})
        cases = [
            (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH,
             "one side uses CURVE and the other not"),
            (zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, "is the peer a zmq/server"),
            (zmq.EVENT_DISCONNECTED, 17, "closed the connection during the ZeroMQ handshake"),
        ]
        for attempt, (kind, value, reason) in enumerate(cases):
            if attempt:
                self.redial()
            self.event(kind, value)
            self.assertIn(reason, self.messages()[-1])


class RefusalWarningTests(SynchronousTestCase):
    """
    A zmq/ server's cap warnings say what is known (issue 25, item 12).
    """

    def test_neverMinusOne(self):
        """
        The warning, written after the refused connection (and the others)
        have gone, gives the count when it was refused, never "(-1 open)".
        """
        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        clock = Clock()
        port = ZMQPort(None, None, clock, {"max-connections": 1, "max-connections-per-source": 8}, False)
        port.limits.opened("192.0.2.7")
        port.limits.opened("192.0.2.7")
        port.refused("192.0.2.7", "max-connections")
        port.refused("192.0.2.7", "max-connections")
        port.limits.closed("192.0.2.7")
        port.limits.closed("192.0.2.7")
        clock.advance(120)
        messages = [formatEvent(e) for e in logged if "refused" in e["log_format"]]
        self.assertTrue(messages)
        for message in messages:
            self.assertNotIn("-1 open", message)
            self.assertIn("(--max-connections; 1 open when it was refused)", message)
