"""
Tests for L{uhppoted_tunnel.link.framed}: the frame format shared with the Go
tunnel.
"""

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.link.framed import FramedProtocol

from uhppoted_tunnel.core.frames import FrameDecoder, FrameTooLong, encode

# Byte vectors from the Go tunnel's protocol/message_test.go.
GO_MESSAGE = bytes([0x01, 0x23, 0x45, 0x67, 0x89, 0xAB, 0xCD, 0xEF])
GO_FRAME = bytes([0x00, 0x08, 0x00, 0x00, 0x30, 0x39]) + GO_MESSAGE
GO_SECOND = bytes([0x00, 0x08, 0x00, 0x00, 0x30, 0x3A, 0xFE, 0xDC, 0xBA, 0x98, 0x76, 0x54, 0x32, 0x10])

# The start of a TLS ClientHello, from the Go tunnel's TODO list.
CLIENT_HELLO = bytes.fromhex("16030100d2010000ce03030f71114f96919888ea4e4043fe32c11fa2a3539bdd")


class EncodeTests(SynchronousTestCase):
    def test_goVector(self):
        """
        A frame is the payload length (u16 BE), the id (u32 BE) and the
        payload, byte for byte as the Go tunnel's Packetize writes it.
        """
        self.assertEqual(encode(12345, GO_MESSAGE), GO_FRAME)

    def test_uhppotePacket(self):
        """
        A 64-byte UHPPOTE packet gets the header 00 40 and its id.
        """
        packet = bytes([0x17, 0x94]) + bytes(62)
        self.assertEqual(encode(0xDEADBEEF, packet), b"\x00\x40\xde\xad\xbe\xef" + packet)


class DecoderTests(SynchronousTestCase):
    def test_goVector(self):
        """
        The Go test vector decodes to id 12345 and its message; bytes after
        the frame wait for more.
        """
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(GO_FRAME + b"ABCD"), [(12345, GO_MESSAGE)])
        self.assertEqual(decoder.pending, 4)

    def test_joined(self):
        """
        Two frames in one read are both delivered, in order.
        """
        decoder = FrameDecoder()
        self.assertEqual(
            decoder.feed(GO_FRAME + GO_SECOND),
            [(12345, GO_MESSAGE), (12346, bytes.fromhex("fedcba9876543210"))],
        )

    def test_splitAtEveryOffset(self):
        """
        A frame split across two reads at any offset is delivered once,
        whole (the Go reader loses it and misreads the rest).
        """
        stream = GO_FRAME + GO_SECOND
        for cut in range(len(stream) + 1):
            decoder = FrameDecoder()
            frames = decoder.feed(stream[:cut]) + decoder.feed(stream[cut:])
            self.assertEqual([frame_id for frame_id, _ in frames], [12345, 12346], cut)
            self.assertEqual(decoder.pending, 0)

    def test_byteByByte(self):
        """
        Frames fed one byte at a time come out whole.
        """
        decoder = FrameDecoder()
        frames = []
        for byte in GO_FRAME + GO_SECOND:
            frames.extend(decoder.feed(bytes([byte])))
        self.assertEqual(frames, [(12345, GO_MESSAGE), (12346, bytes.fromhex("fedcba9876543210"))])

    def test_emptyFrame(self):
        """
        A zero-length frame is decoded as an empty payload (the ends drop it,
        or read it as an event acknowledgement), and the stream goes on.
        """
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(encode(7, b"") + GO_FRAME), [(7, b""), (12345, GO_MESSAGE)])

    def test_tooLong(self):
        """
        A length over the limit raises L{FrameTooLong}; a TLS ClientHello
        is recognised in the message.
        """
        decoder = FrameDecoder(max_payload=1024)
        e = self.assertRaises(FrameTooLong, decoder.feed, CLIENT_HELLO)
        self.assertEqual(e.length, 0x1603)
        self.assertIn("is the peer using TLS?", str(e))

    def test_tooLongHTTP2(self):
        """
        An HTTP/2 client's preface (a gRPC client dialling a stream end)
        is recognised in the message.
        """
        decoder = FrameDecoder(max_payload=1024)
        e = self.assertRaises(FrameTooLong, decoder.feed, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        self.assertEqual(e.length, 0x5052)
        self.assertIn("starts like HTTP/2: is the peer a gRPC client?", str(e))

    def test_limitInclusive(self):
        """
        A payload of exactly the limit is accepted.
        """
        decoder = FrameDecoder(max_payload=64)
        self.assertEqual(decoder.feed(encode(1, bytes(64))), [(1, bytes(64))])
        self.assertRaises(FrameTooLong, decoder.feed, encode(2, bytes(65)))

    @settings(max_examples=200, deadline=None)
    @given(
        frames=st.lists(st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=100)), max_size=20),
        cuts=st.lists(st.integers(0, 3000), max_size=10),
    )
    def test_roundTrip(self, frames, cuts):
        """
        Whatever the frames and however the stream is cut into reads, the
        decoder returns the encoded frames.
        """
        stream = b"".join(encode(frame_id, payload) for frame_id, payload in frames)
        decoder = FrameDecoder()
        decoded = []
        start = 0
        for cut in sorted(c % (len(stream) + 1) for c in cuts) + [len(stream)]:
            decoded.extend(decoder.feed(stream[start:cut]))
            start = cut
        self.assertEqual(decoded, frames)
        self.assertEqual(decoder.pending, 0)


class RecordingFactory:
    """
    The factory and the relay of a L{FramedProtocol}, recording what each
    hears.
    """

    stall_timeout = None
    max_send_queue = 256 * 1024
    dead_peer_timeout = 60.0

    def __init__(self):
        self.events = []

    def connectionReady(self, protocol):
        self.events.append(("made", protocol.peer))

    def frameReceived(self, protocol, frame_id, payload):
        self.events.append(("frame", frame_id, payload))

    def connectionClosed(self, protocol, reason):
        self.events.append(("lost",))

    def frameTooLong(self, protocol, error):
        self.events.append(("too long", str(error)))


class FramedProtocolTests(SynchronousTestCase):
    def connect(self):
        protocol = FramedProtocol()
        protocol.factory = protocol.relay = RecordingFactory()
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def test_frames(self):
        """
        Frames received are passed to the factory with the connection; the
        peer is named host:port.
        """
        protocol, _ = self.connect()
        protocol.dataReceived(GO_FRAME[:3])
        protocol.dataReceived(GO_FRAME[3:])
        self.assertEqual(protocol.factory.events, [("made", "192.168.1.1:54321"), ("frame", 12345, GO_MESSAGE)])

    def test_sendFrame(self):
        """
        sendFrame writes one encoded frame.
        """
        protocol, transport = self.connect()
        protocol.sendFrame(12345, GO_MESSAGE)
        self.assertEqual(transport.value(), GO_FRAME)

    def test_impossibleLengthAborts(self):
        """
        A peer that sends an impossible length (here a TLS ClientHello) is
        disconnected at once, the factory is told why (it warns, throttled:
        see tests.unit.test_stream), and nothing it sent is delivered.
        """
        protocol, transport = self.connect()
        protocol.dataReceived(CLIENT_HELLO)
        self.assertTrue(transport.disconnecting)
        [made, (what, why)] = protocol.factory.events
        self.assertEqual((made, what), (("made", "192.168.1.1:54321"), "too long"))
        self.assertIn("is the peer using TLS?", why)
