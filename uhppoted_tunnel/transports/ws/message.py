# -*- test-case-name: tests.unit.test_websocket -*-
"""
What the end's protocol writes to once a WebSocket upgrade has
succeeded: L{MessageTransport} sends each write as one binary message,
written by L{binary_frame} rather than through autobahn's
C{sendMessage}, whose generality (fragments, compression, statistics,
debug formatting) cost more than a frame's whole way through a half.
"""

import random

from autobahn.websocket.protocol import WebSocketProtocol

from uhppoted_tunnel.link.framed import underlying

OPEN = WebSocketProtocol.STATE_OPEN


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


class MessageTransport:
    """
    The transport the end's protocol is connected to once the upgrade has
    succeeded: each write is sent as one binary message; the producer and
    tuning calls go to the socket under the WebSocket (and TLS) layers,
    whose buffer holds what is queued for the peer (see
    L{uhppoted_tunnel.link.framed.FramedProtocol} and
    L{uhppoted_tunnel.link.framed.tune}).
    """

    disconnecting = False

    def __init__(self, websocket, peer, limit):
        """
        :param websocket: the upgraded autobahn protocol.
        :param peer: the peer's address, for the log (a trusted proxy's
            client, see L{uhppoted_tunnel.transports.ws.upgrade.ForwardedAddress}).
        :param limit: the longest message the peer accepts.
        """
        self._websocket = websocket
        self._socket = underlying(websocket.transport)
        self._peer = peer
        self._limit = limit
        self._masked = not websocket.factory.isServer

    def write(self, data):
        websocket = self._websocket
        if websocket.state == OPEN and len(data) <= self._limit:
            websocket.transport.write(binary_frame(data, self._masked))

    def writeSequence(self, data):
        self.write(b"".join(data))

    def loseConnection(self):
        self.disconnecting = True
        self._websocket.closeGracefully()

    def abortConnection(self):
        self.disconnecting = True
        self._websocket.transport.abortConnection()

    def getPeer(self):
        return self._peer

    def getHost(self):
        return self._websocket.transport.getHost()

    def registerProducer(self, producer, streaming):
        self._socket.registerProducer(producer, streaming)

    def unregisterProducer(self):
        self._socket.unregisterProducer()

    def pauseProducing(self):
        self._socket.pauseProducing()

    def resumeProducing(self):
        self._socket.resumeProducing()

    @property
    def bufferSize(self):
        return self._socket.bufferSize

    @bufferSize.setter
    def bufferSize(self, size):
        self._socket.bufferSize = size

    def __getattr__(self, name):
        # setTcpNoDelay, setTcpKeepAlive, getHandle: the socket's, if it
        # has them
        if name.startswith("__") or name in ("_socket", "_websocket"):
            raise AttributeError(name)
        return getattr(self._socket, name)
