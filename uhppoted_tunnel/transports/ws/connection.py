# -*- test-case-name: tests.unit.test_websocket,tests.loopback.test_websocket -*-
"""
A WebSocket end's connection once its upgrade has succeeded:
L{WSConnection}, built by the end's factory and connected to the upgraded
WebSocket protocol (L{uhppoted_tunnel.transports.ws.protocol}), provides
L{uhppoted_tunnel.interfaces.IFrameConnection} itself. One tunnel frame is
one binary message: each message the protocol has checked to hold exactly
one frame goes straight to the relay, and each frame sent is written as
one binary WebSocket frame by L{binary_frame} rather than through
autobahn's C{sendMessage}, whose generality (fragments, compression,
statistics, debug formatting) cost more than a frame's whole way through
a half. Flow control, the stall timeout and the closing are the byte
stream's (L{uhppoted_tunnel.link.framed.FramedProtocol}), over the socket
under the WebSocket (and TLS) layers.

Nothing here imports autobahn: the maker names this class, and autobahn
is loaded only when a WebSocket end is made.
"""

import random

from zope.interface import implementer

from uhppoted_tunnel.core.frames import HEADER_SIZE, encode
from uhppoted_tunnel.interfaces import IFrameConnection
from uhppoted_tunnel.link.framed import FramedProtocol, tune, underlying
from uhppoted_tunnel.link.writes import writer


def binary_frame(payload, masked, _random=random.getrandbits):
    """
    One final binary WebSocket frame (RFC 6455, 5.2) holding C{payload}:
    what autobahn's C{sendMessage} writes for it, without its generality
    (fragments, compression, statistics), which costs more than the rest
    of a tunnel frame's way through a half.

    :param masked: whether to mask it, as a client must.
    """
    size = len(payload)
    bit = 0x80 if masked else 0
    if size < 126:
        head = bytes((0x82, bit | size))
    elif size < 0x10000:
        head = bytes((0x82, bit | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x82, bit | 127)) + size.to_bytes(8, "big")
    if not masked:
        return head + payload
    key = _random(32).to_bytes(4, "big")
    mask = (key * (size // 4 + 1))[:size]
    return head + key + (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(size, "big")


@implementer(IFrameConnection)
class WSConnection(FramedProtocol):
    """
    One upgraded WebSocket, as a connection of a stream end. Its transport
    is the WebSocket protocol, which closes gracefully on
    C{loseConnection} (a close frame) and drops the socket on
    C{abortConnection}.
    """

    log_tag = "WS"
    _masked = False
    _limit = 0

    def connectionMade(self):
        websocket = self.transport
        # a trusted proxy's client, if the upgrade named one
        self.peer = websocket.peer
        self._masked = not websocket.factory.isServer
        self._limit = websocket.maxMessagePayloadSize
        # the socket under the WebSocket (and TLS) layers: its buffer is
        # what is queued for the peer
        self.socket_transport = underlying(websocket.transport)
        self.socket_transport.registerProducer(self, True)
        # straight to the socket when it is TCP's (see link.writes)
        factory = self.factory
        self._write = writer(websocket.transport, factory)
        tune(websocket.transport, factory.max_send_queue, factory.dead_peer_timeout)
        factory.connectionReady(self)

    def messageReceived(self, message):
        """
        A binary message holding exactly one frame (the WebSocket protocol
        checked its length) arrived: hand it to the relay.
        """
        self.relay.frameReceived(self, int.from_bytes(message[2:HEADER_SIZE], "big"), message[HEADER_SIZE:])

    def sendFrame(self, frame_id, payload):
        """
        Send one frame as one binary message, unless the peer is not
        reading.

        :return: False if the frame was dropped.
        """
        if self.stalled:
            self.factory.frameDropped(self)
            return False
        websocket = self.transport
        data = encode(frame_id, payload)
        if websocket.state == websocket.STATE_OPEN and len(data) <= self._limit:
            self._write(binary_frame(data, self._masked))
        return True
