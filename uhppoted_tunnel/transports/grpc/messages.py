# -*- test-case-name: tests.unit.test_grpcmessages -*-
"""
The messages of a gRPC call, as the gRPC-over-HTTP/2 protocol frames them
(U{https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md}): a
compressed flag, a 4-byte length and the message, a C{Frame} on a
C{uhppoted.tunnel.Tunnel/Relay} call and a C{Frames} on C{Relays}
(C{uhppoted_tunnel/transports/grpc/proto/tunnel.proto}, with protobuf's
generated C{tunnel_pb2}).

L{encode} makes the bytes of one message from the frames a turn queued;
L{MessageDecoder} takes the bytes of a call as they arrive, from a peer
that may be hostile: a length over the limit is refused before anything
of it is buffered, and so are a compressed message (no compression is
ever negotiated), a message that is no C{Frame} or C{Frames}, one of more
than L{MAX_BATCH} frames, and a frame whose payload is over
C{--max-payload}.
"""

from google.protobuf.message import DecodeError

from uhppoted_tunnel.core.frames import HEADER_SIZE, FrameTooLong
from uhppoted_tunnel.transports.grpc.proto.tunnel_pb2 import DESCRIPTOR, Frame, Frames

#: C{uhppoted.tunnel.Tunnel}, and the paths of its C{Relay} and C{Relays}
#: methods, as the .proto names them
SERVICE = DESCRIPTOR.services_by_name["Tunnel"].full_name
METHOD = "/{}/{}".format(SERVICE, DESCRIPTOR.services_by_name["Tunnel"].methods_by_name["Relay"].name)
BATCH_METHOD = "/{}/{}".format(SERVICE, DESCRIPTOR.services_by_name["Tunnel"].methods_by_name["Relays"].name)

#: gRPC's status codes, by number, as its documentation names them, and
#: those the ends send or read by name.
STATUS_NAMES = ("OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
                "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
                "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED")
OK, RESOURCE_EXHAUSTED, UNIMPLEMENTED, INTERNAL = 0, 8, 12, 13

#: What a frame costs in a send queue besides its payload: counted as the
#: stream ends count it (their header), so that C{--max-send-queue} means
#: the same on every transport.
FRAME_OVERHEAD = HEADER_SIZE

#: The most frames one C{Frames} message carries; a message of more ends
#: the call.
MAX_BATCH = 64

#: What a frame adds to its payload at most in a message: its id's tag and
#: varint (6 bytes), its payload's tag and length (4 for up to 65535), and
#: in a C{Frames} the frame's own tag and length (4). A message carries
#: frames up to C{--max-payload} plus this, so one frame of
#: C{--max-payload} always fits.
BATCH_OVERHEAD = 14

#: The length prefix of a message: the compressed flag and 4 bytes.
PREFIX_SIZE = 5


class NotAFrame(Exception):
    """
    A message that is not a C{uhppoted.tunnel.Frame} (or C{Frames}).
    """

    def __str__(self):
        return "the message is not a uhppoted.tunnel.Frame ({}): is the peer a uhppoted-tunnel?".format(self.args[0])


class TooManyFrames(Exception):
    """
    A C{uhppoted.tunnel.Frames} message of more than L{MAX_BATCH} frames.
    """

    def __str__(self):
        return "a message of {} frames, more than the {} a uhppoted.tunnel.Frames may carry: is the peer a " \
            "uhppoted-tunnel?".format(self.args[0], MAX_BATCH)


class MessageTooLong(Exception):
    """
    A message announced longer than the ends allow (C{--max-payload} and
    L{BATCH_OVERHEAD}).
    """

    def __init__(self, length, limit):
        Exception.__init__(self, length, limit)
        self.length = length
        self.limit = limit

    def __str__(self):
        return "a gRPC message of {} bytes, more than the {} allowed (is the peer's --max-payload larger?)".format(
            self.length, self.limit)


class Compressed(Exception):
    """
    A message flagged as compressed, on a call that negotiated no
    compression.
    """

    def __str__(self):
        return "a compressed gRPC message, and no compression was negotiated: is the peer a uhppoted-tunnel?"


def message_limit(max_payload):
    """
    :return: the longest message a gRPC end sends or takes, both ways.
    """
    return max_payload + BATCH_OVERHEAD


def frame_bytes(frame_id, payload):
    """
    :return: the bytes of one C{Frame} message, prefix included (a
        C{Relay} call's).
    """
    body = Frame(id=frame_id, payload=payload).SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


def frames_bytes(frames):
    """
    :param frames: a list of C{(id, payload)}, at most L{MAX_BATCH}.
    :return: the bytes of one C{Frames} message holding them, prefix
        included (a C{Relays} call's).
    """
    message = Frames()
    add = message.frames.add
    for frame_id, payload in frames:
        add(id=frame_id, payload=payload)
    body = message.SerializeToString()
    return b"\x00" + len(body).to_bytes(4, "big") + body


class MessageDecoder:
    """
    Takes the bytes of one call's DATA frames and gives the frames of each
    whole message, checked.

    :ivar buffered: bytes held for a message not yet whole (at most the
        limit and the prefix).
    """

    __slots__ = ("max_payload", "limit", "batched", "_buffer", "_need")

    def __init__(self, max_payload, batched):
        """
        :param max_payload: the longest payload accepted (C{--max-payload}).
        :param batched: whether a message is a C{Frames} (C{Relays}) rather
            than a C{Frame} (C{Relay}).
        """
        self.max_payload = max_payload
        self.limit = message_limit(max_payload)
        self.batched = batched
        self._buffer = b""
        #: the length of the message being read, or None while its prefix is
        self._need = None

    @property
    def buffered(self):
        return len(self._buffer)

    def feed(self, data):
        """
        :param data: bytes of the call, as they arrived.
        :return: a list of C{(id, payload)}, those of every message that
            is whole now.
        :raise MessageTooLong, Compressed, NotAFrame, TooManyFrames,
            FrameTooLong: the call must end.
        """
        buffer = self._buffer + data if self._buffer else data
        frames = []
        at = 0
        size = len(buffer)
        while True:
            need = self._need
            if need is None:
                if size - at < PREFIX_SIZE:
                    break
                flag = buffer[at]
                need = int.from_bytes(buffer[at + 1:at + PREFIX_SIZE], "big")
                if flag:
                    raise Compressed(flag)
                if need > self.limit:
                    raise MessageTooLong(need, self.limit)
                at += PREFIX_SIZE
                self._need = need
            if size - at < need:
                break
            self._decode(buffer[at:at + need], frames)
            at += need
            self._need = None
        self._buffer = buffer[at:] if at < size else b""
        return frames

    def _decode(self, body, frames):
        try:
            if self.batched:
                batch = Frames.FromString(body).frames
                if len(batch) > MAX_BATCH:
                    raise TooManyFrames(len(batch))
            else:
                batch = (Frame.FromString(body),)
        except DecodeError as e:
            raise NotAFrame(str(e).split(": ")[-1]) from None
        limit = self.max_payload
        for frame in batch:
            payload = frame.payload
            if len(payload) > limit:
                raise FrameTooLong(len(payload), limit, payload[:16])
            frames.append((frame.id, payload))
