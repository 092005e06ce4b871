# -*- test-case-name: tests.unit.test_wire -*-
"""
The stream wire format shared with the Go uhppoted-tunnel.

Every message on a TCP or TLS stream is one frame::

    [length: u16 big-endian][id: u32 big-endian][payload: length bytes]

The length counts the payload only. The Go reader parses each C{read()} on
its own; L{FrameDecoder} reassembles frames across reads and refuses
impossible lengths instead. An empty frame carries no packet: the ends
never forward one (the Go tunnel sends it on as a 0-byte datagram), and in
an event tunnel it acknowledges the event frame with the same id.

Pure: no I/O, no reactor. The connection that feeds a decoder from a byte
stream is L{uhppoted_tunnel.link.framed.FramedProtocol}.
"""

import struct


HEADER = struct.Struct("!HI")


HEADER_SIZE = HEADER.size


#: UHPPOTE packets are 64 bytes (a few newer ones are longer); anything near
#: the u16 limit is a peer speaking another protocol.
DEFAULT_MAX_PAYLOAD = 1024


#: The first bytes of a TLS ClientHello (handshake record, TLS 1.0 version).
_TLS_RECORD = b"\x16\x03"


class FrameTooLong(Exception):
    """
    A frame header announced a payload longer than the decoder accepts.
    """

    def __init__(self, length, limit, head):
        """
        :param length: the announced payload length.
        :param limit: the largest payload the decoder accepts.
        :param head: the first bytes of the offending frame, for diagnosis.
        """
        Exception.__init__(self, length, limit, head)
        self.length = length
        self.limit = limit
        self.head = bytes(head)

    def __str__(self):
        return describe_bad_length(self.length, self.limit, self.head)


def describe_bad_length(length, limit, head):
    """
    Explain an impossible frame length in a way an operator can act on.

    :param length: the announced payload length.
    :param limit: the largest payload accepted.
    :param head: the first bytes received from the peer.
    :return: a one-line message.
    """
    message = "frame of {} bytes exceeds the {} byte limit".format(length, limit)
    if head.startswith(_TLS_RECORD):
        return message + " (the data starts like a TLS handshake: is the peer using TLS?)"
    if head.startswith(b"PRI * HTTP/2"):
        return message + " (the data starts like HTTP/2: is the peer a gRPC client?)"
    if head[:4] in (b"GET ", b"POST", b"HEAD", b"PUT ", b"HTTP"):
        return message + " (the data looks like HTTP: is the peer an HTTP client?)"
    return message + " (is the peer a uhppoted-tunnel?)"


def encode(frame_id, payload):
    """
    Encode one frame.

    :param frame_id: the u32 request id.
    :param payload: the packet, at most 65535 bytes.
    :return: the frame as bytes.
    """
    return HEADER.pack(len(payload), frame_id) + payload


class FrameDecoder:
    """
    Incremental frame decoder: feed it whatever the transport delivered,
    get back every whole frame (empty ones included).
    """

    __slots__ = ("max_payload", "_buffer")

    def __init__(self, max_payload=DEFAULT_MAX_PAYLOAD):
        """
        :param max_payload: the longest payload accepted; a longer one makes
            L{feed} raise L{FrameTooLong}.
        """
        self.max_payload = max_payload
        self._buffer = b""

    def feed(self, data):
        """
        Add received bytes.

        :param data: bytes from the transport.
        :return: a list of C{(frame_id, payload)} for each frame completed.
        :raise FrameTooLong: when a header announces more than
            C{max_payload}; the decoder should then be discarded with its
            connection.
        """
        buffer = self._buffer + data if self._buffer else data
        frames = []
        offset = 0
        end = len(buffer)
        unpack = HEADER.unpack_from
        limit = self.max_payload
        while end - offset >= HEADER_SIZE:
            length, frame_id = unpack(buffer, offset)
            if length > limit:
                self._buffer = b""
                raise FrameTooLong(length, limit, buffer[offset : offset + 16])
            stop = offset + HEADER_SIZE + length
            if stop > end:
                break
            frames.append((frame_id, buffer[offset + HEADER_SIZE : stop]))
            offset = stop
        self._buffer = buffer[offset:] if offset else buffer
        return frames

    @property
    def pending(self):
        """
        The number of bytes held waiting for the rest of a frame.
        """
        return len(self._buffer)
