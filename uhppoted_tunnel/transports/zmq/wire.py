# -*- test-case-name: tests.unit.test_zmq,tests.unit.test_zmqwire -*-
"""
What a C{zmq/} socket carries and how it is set up: the frames of a
message (L{decode}), the options every socket gets, and the addresses
libzmq and Twisted each write.

A message holds one or more frames back to back, each exactly the bytes a
TCP stream carries for it (L{uhppoted_tunnel.core.frames.encode})::

    [length: u16 big-endian][id: u32 big-endian][payload: length bytes] ...

One part only (ids as a second part would double the messages). An end
sends several frames in a message only to a peer that announced, in its
ZMTP handshake, that it reads them, and how long a message it reads (the
socket property L{FRAMES}; older ends send and read one frame per
message, and get one frame per message). A message is never longer than
the longest frame of either end (C{--max-payload} + 6, its
C{ZMQ_MAXMSGSIZE}), so the high-water marks bound the bytes queued as
before, and a peer with a lower C{--max-payload} is never sent more than
it reads. A message that is not wholly frames (empty,
cut inside a frame, a frame over C{--max-payload}) is refused whole.
"""

import ipaddress
import socket as sockets

import zmq

from uhppoted_tunnel.core.addresses import host_port, parse_host_port, tcp_address
from uhppoted_tunnel.core.frames import HEADER, HEADER_SIZE
from uhppoted_tunnel.link.framed import KEEPALIVE

#: Go's dial timeout.
CONNECT_TIMEOUT = 5.0

#: The ZAP domain of server ends (any non-empty one makes libzmq ask the
#: ZAP handler about plain connections too, for the caps).
ZAP_DOMAIN = b"uhppoted-tunnel"


#: The ZMTP metadata property an end announces to say that it reads
#: several frames in a message; its value is the longest message it reads,
#: in bytes (its C{ZMQ_MAXMSGSIZE}).
FRAMES = "X-Tunnel-Frames"


class BadMessage(Exception):
    """
    A message that is not wholly frames.
    """

    def __str__(self):
        return "{} (is the peer a uhppoted-tunnel zmq/ end?)".format(self.args[0])


def decode(message, max_payload):
    """
    The frames in one message.

    :param message: the message's one part.
    :param max_payload: the longest payload accepted.
    :return: C{[(frame_id, payload)]}, in order (an empty payload is an
        acknowledgement).
    :raise BadMessage: when the message is not wholly frames: empty, cut
        inside a frame, or holding a frame over C{max_payload}.
    """
    end = len(message)
    if end < HEADER_SIZE:
        raise BadMessage("a message of {} bytes is shorter than a frame header".format(end))
    length, frame_id = HEADER.unpack_from(message)
    if length == end - HEADER_SIZE and length <= max_payload:
        return [(frame_id, message[HEADER_SIZE:])]
    frames = []
    offset = 0
    unpack = HEADER.unpack_from
    while offset < end:
        if end - offset < HEADER_SIZE:
            raise BadMessage("a message of {} bytes ends with {} byte(s) that are not a frame".format(
                end, end - offset))
        length, frame_id = unpack(message, offset)
        if length > max_payload:
            raise BadMessage("frame of {} bytes exceeds the {} byte limit".format(length, max_payload))
        stop = offset + HEADER_SIZE + length
        if stop > end:
            raise BadMessage("a message of {} bytes holds a frame of {} bytes cut short".format(
                end, length + HEADER_SIZE))
        frames.append((frame_id, message[offset + HEADER_SIZE : stop]))
        offset = stop
    return frames


def frames_limit(message):
    """
    How long a message of several frames the peer a message came from
    reads (its handshake announced L{FRAMES}).

    :param message: a C{zmq.Frame} (received with C{copy=False}).
    :return: the bytes, or 0 if it reads one frame a message (an older
        end).
    """
    try:
        value = message.get(FRAMES)
    except zmq.ZMQError:
        return 0
    return int(value) if value.isdigit() else 0


def socket_options(settings):
    """
    The options every socket of a zmq/ end gets.

    :return: a list of C{(option, value)}.
    """
    max_payload = settings["max-payload"]
    # what may queue for one peer, each way: at most --max-send-queue bytes
    hwm = max(1, settings["max-send-queue"] // (max_payload + HEADER_SIZE))
    heartbeat = int(KEEPALIVE * 1000)
    dead = int(settings["dead-peer-timeout"] * 1000)
    return [
        (zmq.LINGER, 0),
        (zmq.SNDHWM, hwm),
        (zmq.RCVHWM, hwm),
        (zmq.MAXMSGSIZE, max_payload + HEADER_SIZE),
        (zmq.METADATA, "{}:{}".format(FRAMES, max_payload + HEADER_SIZE).encode("ascii")),
        (zmq.HANDSHAKE_IVL, int(settings["handshake-timeout"] * 1000)),
        (zmq.HEARTBEAT_IVL, heartbeat),
        (zmq.HEARTBEAT_TIMEOUT, dead),
        (zmq.HEARTBEAT_TTL, dead),
        (zmq.TCP_KEEPALIVE, 1),
        (zmq.TCP_KEEPALIVE_IDLE, KEEPALIVE),
        (zmq.TCP_KEEPALIVE_INTVL, KEEPALIVE),
    ]


def make_socket(context, kind, options):
    """
    :return: a new socket of C{kind} in C{context}, with C{options}.
    """
    socket = context.socket(kind)
    for option, value in options:
        socket.setsockopt(option, value)
    return socket


def zmq_endpoint(host, port):
    """
    :return: C{tcp://HOST:PORT} (C{*} for port 0, brackets for IPv6).
    """
    return "tcp://{}:{}".format("[{}]".format(host) if ":" in host else host, port or "*")


def parse_endpoint(endpoint):
    """
    :param endpoint: C{tcp://HOST:PORT} as C{ZMQ_LAST_ENDPOINT} says it.
    :return: the Twisted address.
    """
    return tcp_address(*parse_host_port(endpoint.split("://", 1)[-1]))


def libzmq_host(host):
    """
    A host as libzmq wants it: an IP address, or a name it resolves.
    """
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


def is_loopback(host):
    """
    Whether C{host} is a loopback IP address (a name is not).
    """
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0]).is_loopback
    except ValueError:
        return False


def twisted_address(peer):
    """
    :param peer: C{host:port} as L{peer_name} writes it (C{?} for a port
        not known).
    :return: the Twisted address (port 0 if not known).
    """
    host, _, port = peer.rpartition(":")
    host = host.strip("[]")
    return tcp_address(host, int(port) if port.isdigit() else 0)


def peer_name(fd):
    """
    The peer address of a connection libzmq holds, as C{host:port}, or
    C{None} if the descriptor is no longer a connected socket.
    """
    try:
        sock = sockets.socket(fileno=fd)
    except OSError:
        return None
    try:
        address = sock.getpeername()
    except OSError:
        return None
    finally:
        sock.detach()
    if not isinstance(address, tuple):
        return None
    return host_port(*address[:2])


def shut_down(fd):
    """
    Shut down the TCP connection under libzmq's descriptor C{fd}, which
    libzmq then drops (ZeroMQ has no call to close one peer of a ROUTER).
    """
    sock = sockets.socket(fileno=fd)
    try:
        sock.shutdown(sockets.SHUT_RDWR)
    except OSError:
        pass
    finally:
        sock.detach()
