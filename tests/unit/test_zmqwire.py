# -*- test-case-name: tests.unit.test_zmqwire -*-
"""
Tests for several frames in a ZeroMQ message, as received: each frame
goes to the relay, a message that is not wholly frames is dropped whole
and counted, and an end announces that it reads them; with fake links
and a fake clock: no sockets, no sleeps.
"""

import zmq
from twisted.internet.task import Clock
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.core.counts import QUEUE_FULL, TOO_LONG, tally
from uhppoted_tunnel.core.frames import encode
from uhppoted_tunnel.link.factory import FrameFactory
from uhppoted_tunnel.transports.zmq.connection import ZMQConnection
from uhppoted_tunnel.transports.zmq.wire import FRAMES, BadMessage, decode, frames_limit, socket_options
from tests.unit.test_zmqbatch import REQUEST, SETTINGS, FakeLink, Relay, connected


class ReceiveTests(SynchronousTestCase):
    """
    A message of one frame or several goes to the relay frame by frame; one
    that is not wholly frames is dropped whole.
    """

    def setUp(self):
        self.connection, self.link = connected(Clock())

    def test_several(self):
        """
        Each frame of a message goes to the relay in order, an
        acknowledgement (an empty frame) too.
        """
        self.connection.messageReceived(encode(1, REQUEST) + encode(2, b"") + encode(3, b"ok"))
        self.assertEqual(self.connection.relay.frames, [(1, REQUEST), (2, b""), (3, b"ok")])

    def test_one(self):
        """
        A message of one frame (an older end's) goes as before.
        """
        self.connection.messageReceived(encode(9, REQUEST))
        self.assertEqual(self.connection.relay.frames, [(9, REQUEST)])

    def test_bad(self):
        """
        A message cut inside a frame's header, with a length past its end,
        with a frame over --max-payload, or empty, is dropped whole (the
        good frames before the fault too), counted by the factory (which
        warns) with a reason in words, and closes the link; nothing is
        logged as an error.
        """
        good = encode(1, REQUEST)
        cases = [
            (good + b"\x00\x01", "ends with 2 byte(s) that are not a frame"),
            (good + encode(2, REQUEST)[:-1], "cut short"),
            (good + encode(2, b"x" * 1025), "exceeds the 1024 byte limit"),
            (b"", "shorter than a frame header"),
        ]
        for message, reason in cases:
            connection, link = connected(Clock())
            connection.messageReceived(message)
            self.assertEqual(connection.relay.frames, [])
            [said] = connection.factory.bad
            self.assertIn(reason, said)
            self.assertIn("is the peer a uhppoted-tunnel zmq/ end?", said)
            self.assertTrue(link.lost)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_counted(self):
        """
        The stream ends' factory counts a bad message (C{too_long}, for
        the metrics) and a frame refused for a full queue (C{queue_full}),
        and warns of each in words.
        """
        clock = Clock()
        link = FakeLink(clock)
        factory = FrameFactory(Relay(), SETTINGS, clock, "ZMQ", protocol=ZMQConnection)
        connection = factory.buildProtocol(None)
        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        link.connect(connection)
        connection.messageReceived(encode(1, REQUEST) + b"\x00")
        link.ended(None)
        link = FakeLink(clock)
        link.connect(factory.buildProtocol(None))
        link.room = False
        self.assertFalse(link.protocol.sendFrame(2, REQUEST))
        counts = tally(factory)
        self.assertEqual(counts.dropped, {TOO_LONG: 1, QUEUE_FULL: 1})
        said = " ".join(formatEvent(event) for event in events)
        self.assertIn("closing connection from 127.0.0.1:4001: a message of 71 bytes ends with 1 byte(s) that are "
                      "not a frame", said)
        self.assertIn("dropped 1 frame(s) for peers that are not reading", said)

    def test_closedMidMessage(self):
        """
        A relay that closes the link on a frame gets none of the message's
        frames after it.
        """
        relay = self.connection.relay
        link = self.link

        def received(connection, frame_id, payload):
            relay.frames.append(frame_id)
            link.ended(None)

        relay.frameReceived = received
        self.connection.messageReceived(encode(1, b"a") + encode(2, b"b"))
        self.assertEqual(relay.frames, [1])


class DecodeTests(SynchronousTestCase):
    """
    The wire: frames back to back.
    """

    def test_roundTrip(self):
        """
        Frames joined come apart as they were, up to --max-payload each.
        """
        frames = [(1, REQUEST), (0xFFFFFFFF, b""), (7, b"y" * 1024)]
        self.assertEqual(decode(b"".join(encode(i, p) for i, p in frames), 1024), frames)

    def test_zeroLengthFrame(self):
        """
        A message that is one empty frame is an acknowledgement, not an
        error.
        """
        self.assertEqual(decode(encode(5, b""), 1024), [(5, b"")])

    def test_refused(self):
        """
        A header cut short, a length past the message, and a frame over
        --max-payload are each refused with L{BadMessage}.
        """
        for message in (b"\x00\x01\x00", encode(1, b"ab")[:-1], encode(1, b"a") + encode(2, b"abc")[:-2],
                        encode(1, b"x" * 65)):
            self.assertRaises(BadMessage, decode, message, 64)


class Frame:
    """
    A received message's properties, as a C{zmq.Frame} gives them.
    """

    def __init__(self, **properties):
        self.properties = properties

    def get(self, name):
        if name not in self.properties:
            raise zmq.ZMQError(zmq.EINVAL)
        return self.properties[name]


class AnnounceTests(SynchronousTestCase):
    """
    An end announces that it reads several frames a message in its
    handshake, and reads its peer's announcement.
    """

    def test_announced(self):
        """
        Every socket carries the property, whose value is the longest
        message the end reads; a message from a peer that announced it
        gives that length, one from an older peer (no property, which
        libzmq refuses to read) or with a value that is not a length
        gives 0.
        """
        settings = {"max-payload": 512, "max-send-queue": 262144, "dead-peer-timeout": 30.0,
                    "handshake-timeout": 15.0}
        self.assertEqual(dict(socket_options(settings))[zmq.METADATA], b"X-Tunnel-Frames:518")
        self.assertEqual(frames_limit(Frame(**{FRAMES: "518"})), 518)
        self.assertEqual(frames_limit(Frame()), 0)
        self.assertEqual(frames_limit(Frame(**{FRAMES: "many"})), 0)
