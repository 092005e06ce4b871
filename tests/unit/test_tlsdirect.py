"""
Tests for L{uhppoted_tunnel.link.tlsdirect}: what TLS encrypts goes to a
TCP socket at once, without the reactor watching it for writability, and
to any other transport with its own C{write}; the record counter that
the receiving relies on.
"""

from OpenSSL.SSL import WantReadError
from twisted.internet.abstract import FileDescriptor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions
from twisted.internet.tcp import Connection
from twisted.internet.testing import MemoryReactor, StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.test_writes import FakeSocket
from uhppoted_tunnel.link.tlsdirect import DirectTLSFactory, DirectTLSProtocol, RecordCounter

#: a TLS 1.2 record of application data, 3 bytes long
RECORD = b"\x17\x03\x03\x00\x03abc"


class FakeTLSConnection:
    """
    What L{DirectTLSProtocol._flushSendBIO} reads of an OpenSSL
    connection: C{bio_read} hands out what waits, or raises
    C{WantReadError} when nothing does.
    """

    def __init__(self, waiting):
        self.waiting = list(waiting)

    def bio_read(self, size):
        if not self.waiting:
            raise WantReadError()
        return self.waiting.pop(0)


def protocol_on(transport, waiting):
    protocol = DirectTLSProtocol(DirectTLSFactory(CertificateOptions(), True, Factory.forProtocol(Protocol)), Protocol())
    protocol.transport = transport
    protocol._tlsConnection = FakeTLSConnection(waiting)
    return protocol


class DirectTLSTests(SynchronousTestCase):
    def test_factory(self):
        """
        L{DirectTLSFactory} makes L{DirectTLSProtocol}s, which are Twisted's
        TLS protocol, and Twisted's TLS protocol writes what it encrypted
        through the method L{DirectTLSProtocol} overrides.
        """
        self.assertIs(DirectTLSFactory.protocol, DirectTLSProtocol)
        self.assertTrue(issubclass(DirectTLSProtocol, TLSMemoryBIOProtocol))
        self.assertIn("_flushSendBIO", vars(TLSMemoryBIOProtocol))

    def test_sentAtOnce(self):
        """
        Records for a TCP connection with nothing queued go to its socket
        at once; the reactor is not asked to watch it.
        """
        reactor = MemoryReactor()
        sock = FakeSocket()
        connection = Connection(sock, Protocol(), reactor)
        connection.connected = True
        protocol_on(connection, [b"record"])._flushSendBIO()
        self.assertEqual(sock.sent, [b"record"])
        self.assertEqual(reactor.getWriters(), [])

    def test_restQueued(self):
        """
        What the kernel does not take is queued as the connection queues
        it.
        """
        reactor = MemoryReactor()
        sock = FakeSocket()
        sock.room = 2
        connection = Connection(sock, Protocol(), reactor)
        connection.connected = True
        protocol_on(connection, [b"record"])._flushSendBIO()
        self.assertEqual(sock.sent, [b"re"])
        self.assertEqual(reactor.getWriters(), [connection])

    def test_wrapperClosed(self):
        """
        Under a wrapper whose C{write} is the connection's own (the
        connection caps'), the connection's own state counts: once it is
        closed, nothing is sent, whatever the wrapper says.
        """
        reactor = MemoryReactor()
        sock = FakeSocket()
        connection = Connection(sock, Protocol(), reactor)
        connection.connected = True

        class Wrapper:
            connected = True
            disconnecting = False
            write = connection.write

            def __getattr__(self, name):
                return getattr(connection, name)

        protocol = protocol_on(Wrapper(), [b"record", b"late"])
        protocol._flushSendBIO()
        self.assertEqual(sock.sent, [b"record"])
        # as tcp.Connection.connectionLost leaves it when the protocols hear of it
        FileDescriptor.connectionLost(connection, None)
        del connection.socket
        protocol._flushSendBIO()
        self.assertEqual(sock.sent, [b"record"])

    def test_nothingWaiting(self):
        """
        Nothing is written when the TLS connection has nothing to send.
        """
        transport = StringTransport()
        protocol_on(transport, [])._flushSendBIO()
        self.assertEqual(transport.value(), b"")

    def test_otherTransport(self):
        """
        Any other transport is written to with its own C{write}.
        """
        transport = StringTransport()
        protocol_on(transport, [b"record"])._flushSendBIO()
        self.assertEqual(transport.value(), b"record")

    def test_transportReplaced(self):
        """
        The TCP connection found for a transport is found again for
        another transport.
        """
        reactor = MemoryReactor()
        sock = FakeSocket()
        connection = Connection(sock, Protocol(), reactor)
        connection.connected = True
        protocol = protocol_on(connection, [b"record", b"later"])
        protocol._flushSendBIO()
        self.assertEqual(protocol._sink, (connection, connection))
        transport = StringTransport()
        protocol.transport = transport
        protocol._flushSendBIO()
        self.assertEqual(sock.sent, [b"record"])
        self.assertEqual(transport.value(), b"later")


class RecordCounterTests(SynchronousTestCase):
    def test_whole(self):
        """
        A piece of whole records completes each.
        """
        self.assertEqual(RecordCounter().completed(RECORD * 3), 3)

    def test_split(self):
        """
        A record cut in its header or body is completed by the piece with
        its last byte.
        """
        for cut in range(1, len(RECORD)):
            counter = RecordCounter()
            self.assertEqual(counter.completed(RECORD[:cut]), 0, cut)
            self.assertEqual(counter.completed(RECORD[cut:] + RECORD[:cut]), 1, cut)
            self.assertEqual(counter.completed(RECORD[cut:]), 1, cut)
            self.assertEqual((counter.left, counter.head), (0, b""), cut)

    def test_byteAtATime(self):
        """
        Fed a byte at a time, records complete on their last bytes.
        """
        counter = RecordCounter()
        data = RECORD * 2
        self.assertEqual([counter.completed(data[i:i + 1]) for i in range(len(data))],
                         [0] * 7 + [1] + [0] * 7 + [1])

    def test_notTLS(self):
        """
        A header that is not TLS's (another content type, another version)
        loses the count for good.
        """
        for data in (b"GET / HTTP/1.1\r\n", b"\x17\x02\x00\x00\x00", b"\x80\x2e\x01\x03\x01"):
            counter = RecordCounter()
            self.assertEqual(counter.completed(data), 0)
            self.assertTrue(counter.lost)
            self.assertEqual(counter.completed(RECORD), 0)
