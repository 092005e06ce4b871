"""
Tests for L{uhppoted_tunnel.link.tlsdirect}'s receiving: once the
handshake is done, each TLS record received is decrypted with one C{recv},
without Twisted's loop to C{WantReadError}, and whatever is not a record of
application data (a post-handshake message, a renegotiation, close_notify,
a peer gone mid-record) is handled as Twisted's protocol handles it. Real
pyOpenSSL contexts (the tunnel's own, from L{tests.certs}), in memory.
"""

from OpenSSL import SSL
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, TLSVersion
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests import certs
from uhppoted_tunnel.link.tlsdirect import (
    DirectTLSFactory, DirectTLSProtocol, RECEIVE_CHUNK, TWISTED_STATE, twisted_state)
from uhppoted_tunnel.transports.tls import certs as tls

class Recorder(Protocol):
    """
    Keeps what it receives, and why its connection ended.
    """

    def __init__(self):
        self.received = []
        self.lost = None

    def dataReceived(self, data):
        self.received.append(data)

    def connectionLost(self, reason):
        self.lost = reason


class Counting(DirectTLSProtocol):
    """
    L{DirectTLSProtocol}, counting the times Twisted's receive loop runs,
    and Twisted's writes.
    """

    loops = 0
    writes = 0

    def _flushReceiveBIO(self):
        self.loops += 1
        DirectTLSProtocol._flushReceiveBIO(self)

    def _write(self, data):
        self.writes += 1
        DirectTLSProtocol._write(self, data)


class Plain(TLSMemoryBIOProtocol):
    """
    Twisted's own TLS protocol, counting the same, to show what
    L{DirectTLSProtocol} saves.
    """

    loops = 0

    def _flushReceiveBIO(self):
        self.loops += 1
        TLSMemoryBIOProtocol._flushReceiveBIO(self)


def settings(files, role, **values):
    base = {"ca-cert": files["ca"][0], "cert": files[role][0], "key": files[role][1], "client-auth": True}
    base.update(values)
    return base


class Pair:
    """
    A TLS client and server, each on a L{StringTransport}, and what moves
    the bytes between them.
    """

    def __init__(self, server_options, client_creator, protocol=Counting):
        self.ends = {}
        self.apps = {}
        for side, creator, is_client in (("server", server_options, False), ("client", client_creator, True)):
            factory = DirectTLSFactory(creator, is_client, Factory.forProtocol(Recorder))
            factory.protocol = protocol
            end = factory.buildProtocol(None)
            end.makeConnection(StringTransport())
            self.ends[side] = end
            self.apps[side] = end.wrappedProtocol
        self.server, self.client = self.ends["server"], self.ends["client"]

    def app(self, side):
        return self.apps[side]

    def sent(self, side):
        """
        What C{side} has written and not yet delivered.
        """
        transport = self.ends[side].transport
        data = transport.value()
        transport.clear()
        return data

    def pump(self, pieces=None):
        """
        Deliver what each side wrote to the other until nothing moves,
        cut by C{pieces} (a function of the bytes, giving the pieces) if
        given.
        """
        moved = True
        while moved:
            moved = False
            for side, other in (("client", "server"), ("server", "client")):
                data = self.sent(side)
                if data:
                    moved = True
                    for piece in (pieces(data) if pieces else [data]):
                        self.ends[other].dataReceived(piece)


def client_creator(files, **values):
    return tls.client_options(settings(files, "client", **values), "localhost")


class ReceiveTests(SynchronousTestCase):
    def setUp(self):
        self.files = certs.make(self.mktemp())
        self.pair = Pair(tls.server_options(settings(self.files, "server")), client_creator(self.files))
        self.pair.pump()
        # the server's session tickets, after its handshake, have gone too
        self.pair.client.write(b"hello")
        self.pair.pump()
        self.pair.app("server").received.clear()
        self.pair.server.loops = self.pair.client.loops = 0

    def test_guarded(self):
        """
        This Twisted's TLS protocol has the state and methods the receiving
        uses; a class without them does not.
        """
        self.assertTrue(twisted_state())
        self.assertFalse(twisted_state(Protocol))
        for name in TWISTED_STATE:
            self.assertTrue(hasattr(TLSMemoryBIOProtocol, name), name)

    def test_oneRecv(self):
        """
        A record of application data reaches the application without
        Twisted's receive loop, both ways; Twisted's own protocol runs it for
        every read.
        """
        self.pair.client.write(b"request")
        self.pair.pump()
        self.pair.server.write(b"reply")
        self.pair.pump()
        self.assertEqual(self.pair.app("server").received, [b"request"])
        self.assertEqual(self.pair.app("client").received, [b"reply"])
        self.assertEqual((self.pair.server.loops, self.pair.client.loops), (0, 0))

        plain = Pair(tls.server_options(settings(self.files, "server")), client_creator(self.files), Plain)
        plain.pump()
        plain.client.write(b"request")
        plain.pump()
        plain.server.loops = 0
        plain.client.write(b"request")
        plain.pump()
        self.assertEqual(plain.server.loops, 1)

    def test_nothingSent(self):
        """
        Receiving a record of application data sends nothing back.
        """
        self.pair.client.write(b"request")
        self.pair.server.dataReceived(self.pair.sent("client"))
        self.assertEqual(self.pair.sent("server"), b"")

    def test_manyRecords(self):
        """
        Several records in one read are each delivered, in order.
        """
        for word in (b"one", b"two", b"three"):
            self.pair.client.write(word)
        self.pair.pump()
        self.assertEqual(self.pair.app("server").received, [b"one", b"two", b"three"])
        self.assertEqual(self.pair.server.loops, 0)

    def test_splitRecords(self):
        """
        Records cut anywhere (in a header, in a body, a byte at a time)
        are delivered whole once their last byte comes, each once.
        """
        for cut in (1, 2, 3, 4, 5, 7, 50):
            self.pair.app("server").received.clear()
            self.pair.client.write(b"first")
            self.pair.client.write(b"second")
            self.pair.pump(lambda data: [data[i:i + cut] for i in range(0, len(data), cut)])
            self.assertEqual(b"".join(self.pair.app("server").received), b"firstsecond", cut)
        self.assertEqual(self.pair.server.loops, 0)

    def test_largeRecords(self):
        """
        Writes larger than a record are delivered whole, in records of at
        most 16 KiB cut in any pieces.
        """
        data = bytes(range(256)) * 300
        self.pair.client.write(data)
        self.pair.pump(lambda data: [data[i:i + 1000] for i in range(0, len(data), 1000)])
        self.assertEqual(b"".join(self.pair.app("server").received), data)

    def test_closeNotify(self):
        """
        A close_notify after the last record is answered with one and the
        connection closed, after the data before it is delivered; the
        application hears of it as a clean close.
        """
        self.pair.client.write(b"last")
        self.pair.client.loseConnection()
        self.pair.server.dataReceived(self.pair.sent("client"))
        self.assertEqual(self.pair.app("server").received, [b"last"])
        self.assertTrue(self.pair.server.transport.disconnecting)
        self.assertEqual(self.pair.server.loops, 0)
        # the server's close_notify (TLS 1.3: an alert inside a record of
        # application data)
        self.assertEqual(self.pair.sent("server")[:1], b"\x17")
        self.pair.server.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(self.pair.app("server").lost.value, ConnectionDone)

    def test_lostWhileDelivering(self):
        """
        A connection lost while a record is delivered (its connectionLost
        nested in the delivery, which lets the TLS connection go) ends the
        read there: nothing is received or sent on the connection gone,
        and nothing fails.
        """
        app = self.pair.app("server")
        server = self.pair.server

        def lose(data):
            app.received.append(data)
            if len(app.received) == 1:
                # as a transport reports it: once
                server.connectionLost(Failure(ConnectionLost()))
        app.dataReceived = lose
        self.pair.client.write(b"one")
        self.pair.client.write(b"two")
        server.dataReceived(self.pair.sent("client"))
        # the rest delivered by Twisted's connectionLost, once
        self.assertEqual(app.received, [b"one", b"two"])
        self.assertIsInstance(app.lost.value, ConnectionLost)
        self.assertIsNone(server._tlsConnection)

    def test_vanishedMidRecord(self):
        """
        A peer gone with half a record sent: nothing of the record is
        delivered, and the application hears the connection was lost.
        """
        self.pair.client.write(b"never")
        data = self.pair.sent("client")
        self.pair.server.dataReceived(data[:len(data) // 2])
        self.assertEqual(self.pair.server.loops, 0)
        self.pair.server.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.pair.app("server").received, [])
        self.assertIsInstance(self.pair.app("server").lost.value, ConnectionLost)

    def test_garbage(self):
        """
        Bytes that are not TLS records end the connection with an error,
        as Twisted's protocol ends it.
        """
        self.pair.server.dataReceived(b"GET / HTTP/1.1\r\n\r\n")
        self.assertTrue(self.pair.server.transport.disconnecting)
        self.pair.server.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(self.pair.app("server").lost.value, SSL.Error)

    def test_corruptRecord(self):
        """
        A record that does not decrypt ends the connection with an error
        and delivers nothing.
        """
        self.pair.client.write(b"request")
        data = bytearray(self.pair.sent("client"))
        data[-1] ^= 1
        self.pair.server.dataReceived(bytes(data))
        self.assertEqual(self.pair.app("server").received, [])
        self.assertEqual(self.pair.server.loops, 0)
        self.assertTrue(self.pair.server.transport.disconnecting)
        self.pair.server.connectionLost(Failure(ConnectionDone()))
        self.assertIsInstance(self.pair.app("server").lost.value, SSL.Error)


class WriteTests(SynchronousTestCase):
    def setUp(self):
        self.files = certs.make(self.mktemp())
        self.pair = Pair(tls.server_options(settings(self.files, "server")), client_creator(self.files))

    def test_beforeHandshake(self):
        """
        What is written before the handshake is done waits for it, and is
        then sent, in order with what follows.
        """
        self.pair.client.write(b"early")
        self.pair.pump()
        self.pair.client.write(b"later")
        self.pair.pump()
        self.assertEqual(self.pair.app("server").received, [b"early", b"later"])

    def test_oneRecord(self):
        """
        A write that fits one record is encrypted and sent at once, without
        Twisted's write loop; a larger one goes through it.
        """
        self.pair.pump()
        self.pair.client.writes = 0
        self.pair.client.write(b"request")
        self.assertEqual(self.pair.client.writes, 0)
        self.assertEqual(self.pair.sent("client")[:1], b"\x17")
        self.pair.client.write(b"x" * 20000)
        self.assertEqual(self.pair.client.writes, 1)

    def test_nothing(self):
        """
        Writing nothing sends nothing, and the connection carries on.
        """
        self.pair.pump()
        self.pair.client.write(b"")
        self.assertEqual(self.pair.sent("client"), b"")
        self.assertFalse(self.pair.client.transport.disconnecting)
        self.pair.client.write(b"after")
        self.pair.pump()
        self.assertEqual(self.pair.app("server").received, [b"after"])

    def test_afterClose(self):
        """
        What is written after loseConnection is dropped, and nothing after
        the TLS connection is gone.
        """
        self.pair.pump()
        self.pair.client.loseConnection()
        self.pair.sent("client")
        self.pair.client.write(b"dropped")
        self.assertEqual(self.pair.sent("client"), b"")
        self.pair.server.write(b"x")
        self.pair.server._tlsShutdownFinished(None)
        self.pair.sent("server")
        self.pair.server.disconnecting = False
        self.pair.server.write(b"dropped")
        self.assertEqual(self.pair.sent("server"), b"")


class PostHandshakeTests(SynchronousTestCase):
    def setUp(self):
        self.files = certs.make(self.mktemp())

    def test_sessionTickets(self):
        """
        A TLS 1.3 server's session tickets, which come after its
        handshake, in front of the first record of application data, are
        handled by Twisted's loop, and the record behind them delivered.
        """
        pair = Pair(tls.server_options(settings(self.files, "server")), client_creator(self.files))
        # ClientHello; the server's flight; the client's certificate and
        # Finished, after which the server sends its tickets
        pair.server.dataReceived(pair.sent("client"))
        pair.client.dataReceived(pair.sent("server"))
        pair.server.dataReceived(pair.sent("client"))
        self.assertEqual(pair.server._tlsConnection.get_protocol_version_name(), "TLSv1.3")
        pair.server.write(b"first")
        pair.client.loops = 0
        pair.client.dataReceived(pair.sent("server"))
        self.assertEqual(pair.app("client").received, [b"first"])
        self.assertEqual(pair.client.loops, 1)
        pair.server.write(b"second")
        pair.pump()
        self.assertEqual(pair.app("client").received, [b"first", b"second"])
        self.assertEqual(pair.client.loops, 1)

    def test_renegotiationRefused(self):
        """
        A TLS 1.2 client that asks to renegotiate is refused with a
        warning alert (the server's C{no_renegotiation}), sent at once,
        and the server carries on (OpenSSL's client gives up on hearing
        it).
        """
        server = tls.server_options(settings(self.files, "server"))
        identity = tls.load_identity(*self.files["client"])
        client = CertificateOptions(privateKey=identity.privateKey.original, certificate=identity.original,
                                    lowerMaximumSecurityTo=TLSVersion.TLSv1_2)
        pair = Pair(server, client)
        pair.pump()
        self.assertEqual(pair.server._tlsConnection.get_protocol_version_name(), "TLSv1.2")
        pair.server.loops = 0
        pair.client._tlsConnection.renegotiate()
        try:
            pair.client._tlsConnection.do_handshake()
        except SSL.WantReadError:
            pass
        pair.client._flushSendBIO()
        pair.server.dataReceived(pair.sent("client"))
        # an alert, encrypted
        self.assertEqual(pair.sent("server")[:1], b"\x15")
        self.assertEqual(pair.server.loops, 1)
        self.assertFalse(pair.server.transport.disconnecting)
        pair.server.write(b"after")
        self.assertEqual(pair.sent("server")[:1], b"\x17")


class ScriptedTLS:
    """
    What L{DirectTLSProtocol.dataReceived} uses of an OpenSSL connection,
    handing out scripted plaintexts, then C{WantReadError}.
    """

    def __init__(self, plaintexts):
        self.plaintexts = list(plaintexts)
        self.fed = []

    def bio_write(self, data):
        self.fed.append(data)

    def recv(self, size):
        if not self.plaintexts:
            raise SSL.WantReadError()
        return self.plaintexts.pop(0)

    def bio_read(self, size):
        raise SSL.WantReadError()


class FullChunkTests(SynchronousTestCase):
    def test_fullChunk(self):
        """
        A C{recv} that fills the whole chunk asked for may have left some of
        its record: the rest is read with Twisted's loop.
        """
        protocol = Counting(DirectTLSFactory(CertificateOptions(), True, Factory.forProtocol(Recorder)), Recorder())
        protocol.transport = StringTransport()
        protocol._appSendBuffer = []
        protocol._handshakeDone = True
        full = b"x" * RECEIVE_CHUNK
        protocol._tlsConnection = ScriptedTLS([full, b"rest"])
        protocol.dataReceived(b"\x17\x03\x03\x00\x01z")
        self.assertEqual(protocol.wrappedProtocol.received, [full, b"rest"])
        self.assertEqual(protocol.loops, 1)
