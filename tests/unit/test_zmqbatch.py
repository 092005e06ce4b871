# -*- test-case-name: tests.unit.test_zmqbatch -*-
"""
Tests for several frames in a ZeroMQ message, as sent: the frames a turn
sends to a peer go as one message at the turn's end, to a peer that
reads them, and a full queue is told at once; with fake links, sockets
and a fake clock: no sockets, no sleeps. (What is received:
L{tests.unit.test_zmqwire}.)
"""

import zmq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.core.frames import encode
from uhppoted_tunnel.interfaces import IFrameConnection
from uhppoted_tunnel.transports.zmq.batch import MAX_FRAMES, TurnBatch
from uhppoted_tunnel.transports.zmq.connection import MessageTransport, ZMQConnection
from uhppoted_tunnel.transports.zmq.sockets import EVENTS, POLLIN, POLLOUT, Writable
from uhppoted_tunnel.transports.zmq.wire import decode
from uhppoted_tunnel.testing import TurnEndClock, packet
from tests.unit.test_zmq_endpoints import make

REQUEST = packet(0x94, 405419896)
LIMIT = 1024 + 6
SETTINGS = {"max-payload": 1024, "max-send-queue": 262144, "stall-timeout": 60.0, "dead-peer-timeout": 30.0}


class FakeLink(MessageTransport):
    """
    A link whose queue takes messages while C{room} says so, recording
    each message sent.
    """

    def __init__(self, clock, batches=LIMIT):
        MessageTransport.__init__(self, "127.0.0.1:4001", None, None, clock)
        self.batches = batches
        self.room = True
        self.taken = True
        self.sent = []
        self.lost = False

    def sendMessage(self, message):
        if not self.taken:
            return False
        self.sent.append(message)
        return True

    def batching(self):
        return self.batches

    def writable(self):
        return self.room

    def loseConnection(self):
        self.lost = True


class Relay:
    def __init__(self):
        self.frames = []

    def frameReceived(self, connection, frame_id, payload):
        self.frames.append((frame_id, payload))

    def connected(self, connection):
        pass

    def disconnected(self, connection):
        pass


class Factory:
    """
    What a stream end's factory is to a connection: it counts.
    """

    def __init__(self):
        self.dropped = 0
        self.bad = []

    def connectionReady(self, connection):
        pass

    def connectionClosed(self, connection, reason):
        pass

    def frameDropped(self, connection):
        self.dropped += 1

    def frameTooLong(self, connection, error):
        self.bad.append(str(error))


def connected(clock, batches=LIMIT):
    """
    A L{ZMQConnection} on a L{FakeLink}, with its relay and factory.
    """
    link = FakeLink(clock, batches)
    connection = ZMQConnection(1024)
    connection.factory = Factory()
    connection.relay = Relay()
    link.connect(connection)
    return connection, link


class TurnTests(SynchronousTestCase):
    """
    What a turn sends to a peer that reads several frames in a message.
    """

    def setUp(self):
        self.clock = Clock()
        self.connection, self.link = connected(self.clock)

    def test_oneMessageATurn(self):
        """
        The frames sent in one turn go as one message, in order, at the
        turn's end, with one call scheduled for the turn; the next turn
        starts another.
        """
        for frame_id in (1, 2, 3):
            self.assertTrue(self.connection.sendFrame(frame_id, REQUEST))
        self.assertEqual(self.link.sent, [])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(0)
        self.assertEqual(self.link.sent, [encode(1, REQUEST) + encode(2, REQUEST) + encode(3, REQUEST)])
        self.connection.sendFrame(4, b"")
        self.clock.advance(0)
        self.assertEqual(self.link.sent[1:], [encode(4, b"")])

    def test_reactorTurnEnd(self):
        """
        Under a reactor with end-of-turn calls (the tunnel's own), the
        turn's message goes at the turn's end, asked for once and with no
        timed call.
        """
        clock = TurnEndClock()
        connection, link = connected(clock)
        for frame_id in (1, 2):
            self.assertTrue(connection.sendFrame(frame_id, REQUEST))
        self.assertEqual((link.sent, clock.getDelayedCalls(), len(clock.turn_end)), ([], [], 1))
        clock.endTurn()
        self.assertEqual(link.sent, [encode(1, REQUEST) + encode(2, REQUEST)])

    def test_olderPeer(self):
        """
        To a peer that did not say it reads several frames a message, each
        frame is its own message, sent at once.
        """
        connection, link = connected(self.clock, batches=0)
        connection.sendFrame(1, REQUEST)
        connection.sendFrame(2, REQUEST)
        self.assertEqual(link.sent, [encode(1, REQUEST), encode(2, REQUEST)])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_bytesBound(self):
        """
        A message is never longer than the longest frame: a frame that
        would make it longer sends what waits at once and begins the next.
        """
        big = b"x" * 600
        self.connection.sendFrame(1, big)
        self.connection.sendFrame(2, big)
        self.assertEqual(self.link.sent, [encode(1, big)])
        self.clock.advance(0)
        self.assertEqual(self.link.sent, [encode(1, big), encode(2, big)])
        self.assertTrue(all(len(message) <= LIMIT for message in self.link.sent))

    def test_peerLimit(self):
        """
        A peer with a lower --max-payload is never sent a message longer
        than it reads (its announced length), nor is one with a higher
        sent one longer than this end's.
        """
        connection, link = connected(self.clock, batches=518)
        for frame_id in range(1, 11):
            connection.sendFrame(frame_id, REQUEST)
        self.clock.advance(0)
        self.assertEqual([len(message) for message in link.sent], [490, 210])
        connection, link = connected(self.clock, batches=65535 + 6)
        for frame_id in range(1, 21):
            connection.sendFrame(frame_id, REQUEST)
        self.clock.advance(0)
        self.assertEqual([len(message) for message in link.sent], [980, 420])

    def test_framesBound(self):
        """
        A message holds at most C{MAX_FRAMES} frames.
        """
        for frame_id in range(1, MAX_FRAMES + 2):
            self.connection.sendFrame(frame_id, b"")
        self.clock.advance(0)
        self.assertEqual([len(message) // 6 for message in self.link.sent], [MAX_FRAMES, 1])
        self.assertEqual([frame_id for message in self.link.sent for frame_id, _ in decode(message, 1024)],
                         list(range(1, MAX_FRAMES + 2)))

    def test_fullQueue(self):
        """
        A frame for a peer whose queue is at its high-water mark is
        refused at once and counted; once it takes messages again, frames
        go.
        """
        self.link.room = False
        self.assertFalse(self.connection.sendFrame(1, REQUEST))
        self.assertEqual(self.connection.factory.dropped, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.link.room = True
        self.assertTrue(self.connection.sendFrame(2, REQUEST))
        self.clock.advance(0)
        self.assertEqual(self.link.sent, [encode(2, REQUEST)])

    def test_fullAfterEarlySend(self):
        """
        A frame that begins a new message in a turn, after the last filled
        up, is refused at once if the queue is full then.
        """
        big = b"x" * 600
        self.connection.sendFrame(1, big)
        self.link.room = False
        self.assertFalse(self.connection.sendFrame(2, big))
        self.assertEqual(self.connection.factory.dropped, 1)
        self.clock.advance(0)
        self.assertEqual(self.link.sent, [encode(1, big)])

    def test_refusedAtFlush(self):
        """
        A message the socket refuses after all at the turn's end counts
        each of its frames dropped.
        """
        self.connection.sendFrame(1, REQUEST)
        self.connection.sendFrame(2, REQUEST)
        self.link.taken = False
        self.clock.advance(0)
        self.assertEqual(self.connection.factory.dropped, 2)

    def test_closeFlushes(self):
        """
        Closing the connection sends what waits first.
        """
        self.connection.sendFrame(1, REQUEST)
        self.connection.close()
        self.assertEqual(self.link.sent, [encode(1, REQUEST)])
        self.assertTrue(self.link.lost)

    def test_lostDiscards(self):
        """
        A link lost with frames waiting sends nothing at the turn's end,
        and its connection refuses frames.
        """
        self.connection.sendFrame(1, REQUEST)
        self.link.ended(None)
        self.clock.advance(0)
        self.assertEqual(self.link.sent, [])
        self.assertFalse(self.connection.sendFrame(2, REQUEST))

    def test_interface(self):
        """
        The connection is still an L{IFrameConnection}.
        """
        verifyObject(IFrameConnection, self.connection)


class TurnBatchTests(SynchronousTestCase):
    """
    L{TurnBatch} alone.
    """

    def test_flushOnce(self):
        """
        A flush before the turn's end (a close) sends what waits; the
        turn's own flush then sends nothing more; a single frame goes as
        the bytes of one frame.
        """
        clock = Clock()
        link = FakeLink(clock)
        dropped = []
        batch = TurnBatch(link, LIMIT, dropped.append)
        batch.add(encode(1, REQUEST))
        batch.flush()
        self.assertEqual(link.sent, [encode(1, REQUEST)])
        clock.advance(0)
        self.assertEqual((link.sent, dropped), ([encode(1, REQUEST)], []))

    def test_orderKept(self):
        """
        A frame never overtakes one waiting: once a message is begun in a
        turn, the turn's frames join it even if the link stops batching
        (a ROUTER's second peer came).
        """
        clock = Clock()
        connection, link = connected(clock)
        connection.sendFrame(1, REQUEST)
        link.batches = 0
        connection.sendFrame(2, REQUEST)
        self.assertEqual(link.sent, [])
        clock.advance(0)
        connection.sendFrame(3, REQUEST)
        self.assertEqual(link.sent, [encode(1, REQUEST) + encode(2, REQUEST), encode(3, REQUEST)])


class PeerTests(SynchronousTestCase):
    """
    Which links batch: a client whose server announced it; a server's peer
    that announced it while it is the ROUTER's one connection (the
    ROUTER's C{POLLOUT} speaks of any peer's queue).
    """

    def test_server(self):
        """
        A server batches to its one announcing peer, not to one that did
        not announce, and to neither while two connections are open.
        """
        end, _ = make("zmq/server:127.0.0.1:0", {})
        end.startService()
        self.addCleanup(end.stopService)
        port = end.port
        port.socket.names.update({11: "127.0.0.1:4001", 12: "127.0.0.1:4002"})
        port.event(zmq.EVENT_ACCEPTED, 11)
        port.introduced(b"a", 11, "127.0.0.1", LIMIT)
        [first] = end.connections
        self.assertTrue(first.transport.batching())
        port.event(zmq.EVENT_ACCEPTED, 12)
        port.introduced(b"b", 12, "127.0.0.1")
        second = end.connections[1]
        self.assertEqual((first.transport.batching(), second.transport.batching()), (False, False))
        port.event(zmq.EVENT_DISCONNECTED, 12)
        self.assertTrue(first.transport.batching())

    def test_client(self):
        """
        A client batches once its server's first message announced it.
        """
        dialled = []
        end, _ = make("zmq/client:127.0.0.1:5555", {}, dealers=dialled)
        end.startService()
        dealer = dialled[-1][1]
        dealer.attempt.event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
        [connection] = end.connections
        self.assertFalse(connection.transport.batching())
        dealer.batches = LIMIT
        self.assertTrue(connection.transport.batching())
        stopping = end.stopService()
        end.reactor.advance(0)
        self.successResultOf(stopping)


class Socket:
    """
    A socket whose C{ZMQ_EVENTS} the test sets, counting reads.
    """

    def __init__(self, events):
        self.events = events
        self.reads = 0

    def getsockopt(self, option):
        assert option == EVENTS
        self.reads += 1
        return self.events


class WritableTests(SynchronousTestCase):
    """
    Whether a socket takes a message: from the events read after a send,
    or read again.
    """

    def test_known(self):
        """
        Events read after a send that said C{POLLOUT} answer without a new
        read; events not read, or saying no, are read again.
        """
        socket = Socket(POLLOUT)
        writable = Writable(socket)
        writable.sent(POLLOUT | POLLIN)
        self.assertTrue(writable())
        self.assertEqual(socket.reads, 0)
        writable.sent(None)
        self.assertTrue(writable())
        self.assertEqual(socket.reads, 1)
        writable.sent(POLLIN)
        socket.events = 0
        self.assertFalse(writable())
        self.assertFalse(writable())
        self.assertEqual(socket.reads, 3)
        socket.events = POLLOUT
        self.assertTrue(writable())
