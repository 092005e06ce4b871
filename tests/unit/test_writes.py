"""
Tests for L{uhppoted_tunnel.link.writes}: a TCP connection's frames go to
the kernel at once when nothing is queued before them, without a reactor
turn, and whatever the kernel does not take is queued as Twisted queues it.
"""

import errno

from twisted.internet import main
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.internet.tcp import Connection
from twisted.internet.testing import MemoryReactor, MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from uhppoted_tunnel.link.framed import FramedProtocol
from uhppoted_tunnel.link.writes import TurnGatherer, TurnWriter, write_now, writer
from uhppoted_tunnel.testing import TurnEndClock
from uhppoted_tunnel.transports.ws.connection import WSConnection


class FakeSocket:
    """
    What a TCP connection needs of its socket: C{send} takes up to
    C{room} bytes, or raises C{error}.
    """

    def __init__(self):
        self.sent = []
        self.room = 1 << 20
        self.error = None

    def setblocking(self, flag):
        pass

    def fileno(self):
        return 7

    def setsockopt(self, *args):
        pass

    def send(self, data):
        if self.error is not None:
            raise OSError(self.error, "fake")
        taken = bytes(data[:self.room])
        self.sent.append(taken)
        return len(taken)


class WriteNowTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactor()
        self.socket = FakeSocket()
        self.connection = Connection(self.socket, Protocol(), self.reactor)
        self.connection.connected = True

    def test_sentAtOnce(self):
        """
        With nothing queued, the data goes to the kernel at once and the
        reactor is not asked to watch the socket for writability.
        """
        write_now(self.connection, b"frame")
        self.assertEqual(self.socket.sent, [b"frame"])
        self.assertEqual(self.reactor.getWriters(), [])

    def test_restQueued(self):
        """
        What the kernel does not take is queued, in order, and sent when
        the socket is writable again.
        """
        self.socket.room = 2
        write_now(self.connection, b"frame")
        self.assertEqual(self.socket.sent, [b"fr"])
        self.assertEqual(self.reactor.getWriters(), [self.connection])
        self.socket.room = 100
        self.connection.doWrite()
        self.assertEqual(self.socket.sent, [b"fr", b"ame"])
        self.assertEqual(self.reactor.getWriters(), [])

    def test_behindQueued(self):
        """
        Data written while something is queued goes behind it, never ahead.
        """
        self.socket.room = 0
        write_now(self.connection, b"one")
        self.socket.room = 100
        write_now(self.connection, b"two")
        self.assertEqual(self.socket.sent, [b""])
        self.connection.doWrite()
        self.assertEqual(self.socket.sent, [b"", b"onetwo"])

    def test_wouldBlock(self):
        """
        A socket whose send buffer is full (C{EWOULDBLOCK}) gets the data
        queued.
        """
        self.socket.error = errno.EWOULDBLOCK
        write_now(self.connection, b"frame")
        self.assertEqual(self.reactor.getWriters(), [self.connection])
        self.socket.error = None
        self.connection.doWrite()
        self.assertEqual(self.socket.sent, [b"frame"])

    def test_errorLeftToDoWrite(self):
        """
        A send that fails queues the data, so that the transport's own
        C{doWrite} meets the error on the next turn and the connection is
        reported lost there, as for any write.
        """
        self.socket.error = errno.ECONNRESET
        write_now(self.connection, b"frame")
        self.assertEqual(self.reactor.getWriters(), [self.connection])
        self.assertIs(self.connection.doWrite(), main.CONNECTION_LOST)

    def test_closingQueued(self):
        """
        A connection that is closing gets the data as its C{write} would
        take it, not sent behind its back.
        """
        self.connection.disconnecting = True
        write_now(self.connection, b"frame")
        self.assertEqual(self.socket.sent, [])


class WriterTests(SynchronousTestCase):
    def test_connection(self):
        """
        A TCP connection is written to with a L{TurnWriter}.
        """
        connection = Connection(FakeSocket(), Protocol(), MemoryReactor())
        chosen = writer(connection, RecordingFactory(MemoryReactorClock()))
        self.assertIsInstance(chosen, TurnWriter)
        self.assertIs(chosen.connection, connection)

    def test_passThroughWrapper(self):
        """
        So is a wrapper whose C{write} is the connection's own (the
        connection caps' wrapper).
        """
        connection = Connection(FakeSocket(), Protocol(), MemoryReactor())

        class Wrapper:
            write = connection.write

        chosen = writer(Wrapper(), RecordingFactory(MemoryReactorClock()))
        self.assertIs(chosen.connection, connection)

    def test_otherBuffers(self):
        """
        A TCP connection without the buffer state L{write_now} reads (a
        Twisted that keeps its buffers otherwise) is written to with its
        own C{write}.
        """
        connection = Connection(FakeSocket(), Protocol(), MemoryReactor())
        del connection._tempDataLen
        self.assertEqual(writer(connection, RecordingFactory(MemoryReactorClock())), connection.write)

    def test_other(self):
        """
        Any other transport is written to with its own C{write}.
        """
        transport = StringTransport()
        self.assertEqual(writer(transport, object()), transport.write)


@implementer(ISSLTransport)
class FakeTLSTransport(StringTransport):
    """
    A TLS transport (as Twisted's C{TLSMemoryBIOProtocol} is one) that
    records each C{write}: each would be encrypted on its own.
    """

    def __init__(self):
        StringTransport.__init__(self)
        self.writes = []

    def write(self, data):
        self.writes.append(data)
        StringTransport.write(self, data)


class TLSWriterTests(SynchronousTestCase):
    def test_chosen(self):
        """
        A TLS transport is written to with a L{TurnGatherer}; so is a
        wrapper whose C{write} is a TLS transport's own.
        """
        transport = FakeTLSTransport()
        chosen = writer(transport, RecordingFactory(MemoryReactorClock()))
        self.assertIsInstance(chosen, TurnGatherer)
        self.assertIs(chosen.connection, transport)

        class Wrapper:
            write = transport.write

        self.assertIs(writer(Wrapper(), RecordingFactory(MemoryReactorClock())).connection, transport)

    def test_twistedTLS(self):
        """
        Twisted's own TLS transport is one.
        """
        from twisted.protocols.tls import TLSMemoryBIOProtocol

        self.assertTrue(ISSLTransport.implementedBy(TLSMemoryBIOProtocol))

    def test_oneWritePerTurn(self):
        """
        What one reactor turn writes to a TLS transport goes to it in one
        C{write} at the turn's end; a frame closed behind goes before the
        close.
        """
        reactor = MemoryReactorClock()
        transport = FakeTLSTransport()
        protocol = FramedProtocol()
        protocol.factory = RecordingFactory(reactor)
        protocol.makeConnection(transport)
        protocol.sendFrame(1, b"payload")
        protocol.sendFrame(2, b"payload")
        self.assertEqual(transport.writes, [])
        reactor.advance(0)
        self.assertEqual(len(transport.writes), 1)
        self.assertEqual(len(transport.writes[0]), 2 * (6 + len(b"payload")))
        protocol.sendFrame(3, b"payload")
        protocol.close()
        self.assertEqual(len(transport.writes), 2)
        self.assertTrue(transport.disconnecting)
        reactor.advance(0)
        self.assertEqual(len(transport.writes), 2)


class NamedConnection(Connection):
    """
    A TCP connection to a peer with an address.
    """

    def getPeer(self):
        return "peer"


class TurnWriterTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.socket = FakeSocket()
        self.connection = Connection(self.socket, Protocol(), self.reactor)
        self.connection.connected = True
        self.write = TurnWriter(self.connection, self.reactor)

    def test_oneSendPerTurn(self):
        """
        What one reactor turn writes goes in one send at its end, without
        the reactor watching the socket for writability.
        """
        self.write(b"one")
        self.write(b"two")
        self.assertEqual(self.socket.sent, [])
        self.reactor.advance(0)
        self.assertEqual(self.socket.sent, [b"onetwo"])
        self.assertEqual((self.reactor.getWriters(), self.reactor.getDelayedCalls()), ([], []))
        self.write(b"three")
        self.reactor.advance(0)
        self.assertEqual(self.socket.sent, [b"onetwo", b"three"])

    def test_flush(self):
        """
        C{flush} sends what waits at once; the end of the turn then has
        nothing left to send.
        """
        self.write(b"one")
        self.write.flush()
        self.assertEqual(self.socket.sent, [b"one"])
        self.reactor.advance(0)
        self.assertEqual(self.socket.sent, [b"one"])


class TurnEndWriterTests(SynchronousTestCase):
    def setUp(self):
        self.reactor = TurnEndClock()
        self.socket = FakeSocket()
        self.connection = Connection(self.socket, Protocol(), self.reactor)
        self.connection.connected = True
        self.write = TurnWriter(self.connection, self.reactor)

    def test_oneSendPerTurn(self):
        """
        Under a reactor with end-of-turn calls, what one turn writes goes in
        one send at the turn's end, asked for once and with no timed call.
        """
        self.write(b"one")
        self.write(b"two")
        self.assertEqual((self.socket.sent, len(self.reactor.turn_end), self.reactor.getDelayedCalls()),
                         ([], 1, []))
        self.reactor.endTurn()
        self.assertEqual(self.socket.sent, [b"onetwo"])
        self.write(b"three")
        self.reactor.endTurn()
        self.assertEqual(self.socket.sent, [b"onetwo", b"three"])


class RecordingFactory:
    stall_timeout = None
    max_send_queue = 256 * 1024
    dead_peer_timeout = 60.0

    def __init__(self, clock):
        self.clock = clock

    def connectionReady(self, protocol):
        pass


class FramedWriteTests(SynchronousTestCase):
    def test_frameSentAtOnce(self):
        """
        Frames sent on a TCP connection reach the kernel at the end of the
        reactor turn, in one send, without waiting for the reactor to report
        the socket writable; closing sends what waits first.
        """
        reactor = MemoryReactorClock()
        sock = FakeSocket()
        protocol = FramedProtocol()
        protocol.factory = RecordingFactory(reactor)
        connection = NamedConnection(sock, protocol, reactor)
        connection.connected = True
        protocol.makeConnection(connection)
        protocol.sendFrame(1, b"payload")
        protocol.sendFrame(2, b"payload")
        reactor.advance(0)
        self.assertEqual(len(sock.sent), 1)
        self.assertEqual(reactor.getWriters(), [])
        protocol.sendFrame(3, b"payload")
        protocol.close()
        self.assertEqual(len(sock.sent), 2)


class FakeWebSocket:
    """
    What a L{WSConnection} reads of its WebSocket protocol, open, over a
    TCP connection.
    """

    STATE_OPEN = 1
    state = STATE_OPEN
    peer = "127.0.0.1:50000"
    maxMessagePayloadSize = 1024

    class factory:
        isServer = True

    def __init__(self, transport):
        self.transport = transport


class WebSocketWriteTests(SynchronousTestCase):
    def test_messageSentAtOnce(self):
        """
        A frame sent on a WebSocket over TCP reaches the kernel at the end
        of the turn, as one binary message.
        """
        reactor = MemoryReactorClock()
        sock = FakeSocket()
        connection = NamedConnection(sock, Protocol(), reactor)
        connection.connected = True
        protocol = WSConnection()
        protocol.factory = RecordingFactory(reactor)
        protocol.makeConnection(FakeWebSocket(connection))
        protocol.sendFrame(1, b"payload")
        reactor.advance(0)
        self.assertEqual(len(sock.sent), 1)
        self.assertEqual(sock.sent[0][0], 0x82)
        self.assertEqual(reactor.getWriters(), [])
