"""
Tests for L{uhppoted_tunnel.transports.grpc.messages} with no socket: the
gRPC message framing and the C{Frame} and C{Frames} codec, against
hostile bytes, and the generated code against the shipped C{.proto}.
"""

import os

from google.protobuf import descriptor_pb2
from grpc_tools import protoc
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.core.frames import FrameTooLong
from uhppoted_tunnel.transports.grpc import messages
from uhppoted_tunnel.transports.grpc.messages import (
    MAX_BATCH,
    Compressed,
    MessageDecoder,
    MessageTooLong,
    NotAFrame,
    TooManyFrames,
    frame_bytes,
    frames_bytes,
    message_limit,
)
from uhppoted_tunnel.transports.grpc.proto import tunnel_pb2


def prefixed(body, flag=0):
    """
    :return: C{body} as one gRPC message on the wire.
    """
    return bytes([flag]) + len(body).to_bytes(4, "big") + body


class CodecTests(SynchronousTestCase):
    """
    Frames as gRPC messages, both methods, and what a hostile peer can
    send instead.
    """

    def test_roundTrip(self):
        """
        Frames encode as one message (a C{Frames} on C{Relays}, a C{Frame}
        each on C{Relay}) that decodes to the same ids and payloads, for
        ids from 0 to 2**32-1 and empty payloads.
        """
        frames = [(1, b"\x17\x94" + bytes(62)), (0, b""), (0xFFFFFFFF, b"x" * 1024)]
        self.assertEqual(MessageDecoder(1024, True).feed(frames_bytes(frames[:2]) + frames_bytes(frames[2:])), frames)
        self.assertEqual(MessageDecoder(1024, False).feed(b"".join(frame_bytes(*f) for f in frames)), frames)

    def test_limit(self):
        """
        The message limit covers one frame of the largest payload with the
        largest id, on either method.
        """
        for limit in (1024, 65535):
            big = [(0xFFFFFFFF, b"x" * limit)]
            self.assertLessEqual(len(frames_bytes(big)) - 5, message_limit(limit))
            self.assertLessEqual(len(frame_bytes(*big[0])) - 5, message_limit(limit))

    def test_pieces(self):
        """
        A message split anywhere is whole once its last byte has come, and
        no frame comes before.
        """
        data = frames_bytes([(7, b"abc"), (8, b"def")]) + frames_bytes([(9, b"g")])
        for cut in range(len(data) + 1):
            decoder = MessageDecoder(1024, True)
            got = decoder.feed(data[:cut]) + decoder.feed(data[cut:])
            self.assertEqual(got, [(7, b"abc"), (8, b"def"), (9, b"g")], cut)

    def test_lengthRefusedUnbuffered(self):
        """
        A prefix announcing a message longer than --max-payload + 14 is
        refused from its 5 bytes, before any of the message is held; one
        of exactly the limit is taken.
        """
        decoder = MessageDecoder(1024, True)
        e = self.assertRaises(MessageTooLong, decoder.feed, b"\x00" + (1024 + 15).to_bytes(4, "big"))
        self.assertIn("1039 bytes, more than the 1038", str(e))
        self.assertEqual(decoder.buffered, 0)
        self.assertRaises(MessageTooLong, MessageDecoder(1024, False).feed, b"\x00\xff\xff\xff\xff")
        self.assertEqual(MessageDecoder(1024, True).feed(b"\x00" + (1038).to_bytes(4, "big") + b"\x0a"), [])

    def test_compressed(self):
        """
        A message flagged compressed is refused: no compression is
        negotiated.
        """
        e = self.assertRaises(Compressed, MessageDecoder(1024, True).feed, prefixed(b"", flag=1))
        self.assertIn("no compression was negotiated", str(e))

    def test_tooManyFrames(self):
        """
        A C{Frames} of 64 frames is taken, one of 65 refused.
        """
        self.assertEqual(len(MessageDecoder(1024, True).feed(frames_bytes([(i, b"") for i in range(MAX_BATCH)]))),
                         MAX_BATCH)
        body = tunnel_pb2.Frames(frames=[tunnel_pb2.Frame(id=i) for i in range(MAX_BATCH + 1)]).SerializeToString()
        e = self.assertRaises(TooManyFrames, MessageDecoder(1024, True).feed, prefixed(body))
        self.assertIn("65 frames, more than the 64", str(e))

    def test_payloadTooLong(self):
        """
        A frame whose payload is over --max-payload is refused, though its
        message is within the limit.
        """
        self.assertRaises(FrameTooLong, MessageDecoder(10, True).feed, frames_bytes([(1, b"x" * 11)]))
        self.assertRaises(FrameTooLong, MessageDecoder(10, False).feed, frame_bytes(1, b"x" * 11))

    def test_hostile(self):
        """
        Bytes that are not a Frame are refused, naming what the peer
        probably is; an id wider than 32 bits keeps its low 32; unknown
        fields are skipped; an empty message is frame 0 with no payload.
        """
        for garbage in (b"\xff\xff\xff", b"\x12\x05ab", b"\x08" + b"\xff" * 11):
            e = self.assertRaises(NotAFrame, MessageDecoder(1024, False).feed, prefixed(garbage))
            self.assertIn("is the peer a uhppoted-tunnel?", str(e))
        decode = MessageDecoder(1024, False).feed
        self.assertEqual(decode(prefixed(b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x12\x02ab")),
                         [(0xFFFFFFFF, b"ab")])
        self.assertEqual(decode(prefixed(b"\x08\x05\x18\x07\x22\x03xyz\x12\x01p")), [(5, b"p")])
        self.assertEqual(decode(prefixed(b"")), [(0, b"")])


class GeneratedCodeTests(SynchronousTestCase):
    """
    The committed C{tunnel_pb2.py} is what protoc makes of the shipped
    C{tunnel.proto}. After changing the .proto, make it again from the
    top of the tree::

        .venv/bin/python -m grpc_tools.protoc -I . --python_out=. uhppoted_tunnel/transports/grpc/proto/tunnel.proto

    (and raise the protobuf floor in setup.cfg to the version it names).
    """

    def test_current(self):
        """
        The descriptor in C{tunnel_pb2} is the one protoc compiles from the
        .proto now (json names aside, which protoc adds to descriptor sets
        only).
        """
        proto = os.path.join(os.path.dirname(tunnel_pb2.__file__), "tunnel.proto")
        root = proto[: -len(os.path.join(*tunnel_pb2.__name__.split('.')[:-1], 'tunnel.proto'))]
        out = os.path.abspath(self.mktemp())
        os.makedirs(out)
        code = protoc.main(["protoc", "-I", root, "--descriptor_set_out=" + os.path.join(out, "tunnel.pb"),
                            os.path.relpath(proto, root)])
        self.assertEqual(code, 0)
        with open(os.path.join(out, "tunnel.pb"), "rb") as f:
            [fresh] = descriptor_pb2.FileDescriptorSet.FromString(f.read()).file
        for message in fresh.message_type:
            for field in message.field:
                field.ClearField("json_name")
        self.assertEqual(fresh, descriptor_pb2.FileDescriptorProto.FromString(tunnel_pb2.DESCRIPTOR.serialized_pb))

    def test_service(self):
        """
        The ends serve and call the method the .proto names: a stream of
        Frames each way.
        """
        self.assertEqual(messages.METHOD, "/uhppoted.tunnel.Tunnel/Relay")
        method = tunnel_pb2.DESCRIPTOR.services_by_name["Tunnel"].methods_by_name["Relay"]
        self.assertEqual((method.input_type.full_name, method.output_type.full_name),
                         ("uhppoted.tunnel.Frame", "uhppoted.tunnel.Frame"))
        self.assertTrue(method.client_streaming and method.server_streaming)

    def test_batchService(self):
        """
        Relays carries a stream of Frames each way.
        """
        self.assertEqual(messages.BATCH_METHOD, "/uhppoted.tunnel.Tunnel/Relays")
        method = tunnel_pb2.DESCRIPTOR.services_by_name["Tunnel"].methods_by_name["Relays"]
        self.assertEqual((method.input_type.full_name, method.output_type.full_name),
                         ("uhppoted.tunnel.Frames", "uhppoted.tunnel.Frames"))
