# -*- test-case-name: tests.unit.test_grpcconf -*-
"""
What the gRPC ends tell grpcio and read from it: the C{Frame} codec, the
options of channels and servers (every size, count and time bounded), TLS
from the C{tls/} flags (read again on SIGHUP), peers' names, and why a
call failed, in words an operator can act on.

grpc core's own log lines go to stderr in a layout of their own: unless
C{GRPC_VERBOSITY} is set, they are off, and the ends log what matters.
"""

import asyncio
import os
import re
from urllib.parse import quote

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel import __version__
from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.interfaces import ICertificateReloader
from uhppoted_tunnel.transports.grpc.loop import BATCH_OVERHEAD, MessageTooLong, NotAFrame

# before grpc is imported, by this module alone (the others import grpc
# from here)
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402
import grpc.aio  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402

from uhppoted_tunnel.transports.grpc.proto.tunnel_pb2 import DESCRIPTOR, Frame, Frames  # noqa: E402

#: C{uhppoted.tunnel.Tunnel}, and the paths of its C{Relay} and C{Relays}
#: methods, as the .proto names them
SERVICE = DESCRIPTOR.services_by_name["Tunnel"].full_name
METHOD = "/{}/{}".format(SERVICE, DESCRIPTOR.services_by_name["Tunnel"].methods_by_name["Relay"].name)
BATCH_METHOD = "/{}/{}".format(SERVICE, DESCRIPTOR.services_by_name["Tunnel"].methods_by_name["Relays"].name)

#: What a message adds to the payload of its one frame at most: a Frame
#: the id's tag and varint (6 bytes) and the payload's tag and length (4
#: for up to 65535); a Frames (L{BATCH_OVERHEAD}) the frame's own tag and
#: length (4) too.
MESSAGE_OVERHEAD = BATCH_OVERHEAD

#: Go: TCP keepalive every 15 s; the gRPC ends ping as often (or more, for
#: a short --dead-peer-timeout).
KEEPALIVE = 15.0

#: The shortest interval between a client's pings that a server takes
#: (grpc's default, 5 minutes, would refuse the keepalive above).
MIN_PING_INTERVAL = 1.0

#: HTTP/2 streams one connection may carry at once: a tunnel's client
#: opens one per connection.
STREAMS_PER_CONNECTION = 4


def encode(frame):
    """
    The request and response serializer: C{(id, payload)} -> bytes.
    """
    return Frame(id=frame[0], payload=frame[1]).SerializeToString()


#: The deserializer: bytes -> a C{Frame} (C{id}, C{payload}); an id sent
#: wider than 32 bits keeps its low 32, unknown fields are skipped, and
#: bytes that are not a Frame raise C{DecodeError}.
decode = Frame.FromString


def encode_batch(frames):
    """
    The serializer of C{Relays}: a list of C{(id, payload)} -> the bytes
    of one C{Frames}.
    """
    message = Frames()
    add = message.frames.add
    for frame_id, payload in frames:
        add(id=frame_id, payload=payload)
    return message.SerializeToString()


#: The deserializer of C{Relays}: bytes -> a C{Frames} (C{frames}), as
#: L{decode}.
decode_batch = Frames.FromString


def message_limit(max_payload):
    """
    :return: the longest message a gRPC end sends or takes, both ways.
    """
    return max_payload + MESSAGE_OVERHEAD


def keepalive(dead_peer_timeout):
    """
    :return: C{(interval, timeout)} in milliseconds of the keepalive pings
        that notice a dead peer within C{--dead-peer-timeout}.
    """
    interval = min(KEEPALIVE, dead_peer_timeout / 2)
    return int(interval * 1000), int((dead_peer_timeout - interval) * 1000)


def _common_options(settings):
    limit = message_limit(settings["max-payload"])
    interval, timeout = keepalive(settings["dead-peer-timeout"])
    return [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
        ("grpc.keepalive_time_ms", interval),
        ("grpc.keepalive_timeout_ms", timeout),
        # what this grpc waits for a ping's answer (60 s by default,
        # whatever the keepalive timeout)
        ("grpc.http2.ping_timeout_ms", timeout),
        ("grpc.keepalive_permit_without_calls", 1),
        # the window stays at 64 KiB: what a peer that does not read can
        # hold up is bounded, and tiny frames need no more
        ("grpc.http2.bdp_probe", 0),
    ]


def channel_options(settings, proxy=None):
    """
    The options of a client's channel: message sizes, keepalive, the
    proxy the end chose, and nothing grpc would do on its own (retries, a
    proxy from the environment).

    :param proxy: the L{uhppoted_tunnel.transports.proxy.Proxy} to dial
        through (C{CONNECT}), or C{None}.
    """
    return _common_options(settings) + [
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 0),
        ("grpc.primary_user_agent", "uhppoted-tunnel/" + __version__),
    ] + _proxy_options(proxy)


def _proxy_options(proxy):
    if proxy is None:
        return [("grpc.enable_http_proxy", 0)]
    userinfo = ""
    if proxy.credentials is not None:
        user, _, password = proxy.credentials.partition(b":")
        userinfo = "{}:{}@".format(quote(user, safe=""), quote(password, safe=""))
    return [("grpc.enable_http_proxy", 1), ("grpc.http_proxy", "http://{}{}".format(userinfo, proxy))]


def server_options(settings):
    """
    The options of a server: message sizes, keepalive both ways, and the
    bounds: connections, streams per connection, a handshake
    (C{--handshake-timeout}, also how long a connection may stay without a
    call), and an exclusive port (grpc shares it by default).

    The links (calls) are capped at C{--max-connections} by the end
    itself, which warns and answers the refused client why; grpc's own cap
    on connections is twice that, a backstop that refuses without a word.
    """
    handshake = int(settings["handshake-timeout"] * 1000)
    return _common_options(settings) + [
        ("grpc.http2.min_ping_interval_without_data_ms", int(MIN_PING_INTERVAL * 1000)),
        ("grpc.max_allowed_incoming_connections", 2 * settings["max-connections"]),
        ("grpc.max_concurrent_streams", STREAMS_PER_CONNECTION),
        ("grpc.server_handshake_timeout_ms", handshake),
        ("grpc.max_connection_idle_ms", handshake),
        ("grpc.so_reuseport", 0),
    ]


def diagnose(error):
    """
    Why a stream ended, from what its read or write raised.

    :return: an exception: L{NotAFrame}, L{MessageTooLong}, or
        C{ConnectionLost} with grpc's status.
    """
    if isinstance(error, DecodeError):
        return NotAFrame(str(error).split(": ")[-1])
    if isinstance(error, grpc.aio.AioRpcError):
        details = error.details() or ""
        if error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in details:
            return MessageTooLong(details)
        return ConnectionLost("{}: {}".format(error.code().name, details))
    if isinstance(error, asyncio.InvalidStateError):
        # a write after the call ended: its end is read next
        return ConnectionDone()
    return ConnectionLost(str(error) or type(error).__name__)


_LAST_ERROR = re.compile(r"last error: \w+: (?:ipv[46]|unix):\S+: (.*)$")
_SSL_REASON = re.compile(r"OPENSSL_internal:([A-Z_]+)(?:: (.*))?")


class DialFailed(Exception):
    """
    An attempt to reach a gRPC server failed; the message says why.
    """


def dial_failure(code, details, address, secure):
    """
    One line saying why an attempt failed, naming what the peer probably
    is.

    :param code: the call's C{grpc.StatusCode}.
    :param details: its details.
    :param address: C{HOST:PORT} as dialled.
    :param secure: whether the client dialled with TLS.
    """
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return "{} is a gRPC server without {} (is it a tunnel's grpc/ end?)".format(address, METHOD)
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return "the server refused the link: {}".format(details)
    if code != grpc.StatusCode.UNAVAILABLE:
        return "{}: {}".format(code.name, details)
    match = _LAST_ERROR.search(details)
    reason = match.group(1) if match else details
    if "Connection refused" in reason:
        return "connection refused"
    if "Hostname Verification" in reason:
        return "the server's certificate does not name {} (TLS hostname verification failed)".format(
            address.rpartition(":")[0].strip("[]"))
    if "Tls handshake failed" in reason or "SSL_ERROR" in reason:
        ssl = _SSL_REASON.search(reason)
        why = reason if ssl is None else ssl.group(1).lower().replace("_", " ") + (
            ": " + ssl.group(2) if ssl.group(2) else "")
        if ssl and ssl.group(1) == "WRONG_VERSION_NUMBER":
            return "TLS handshake failed: {} (is the server a plain grpc/ end?)".format(why)
        return "TLS handshake failed: {}".format(why)
    if "Socket closed" in reason or "reset by peer" in reason or "Broken pipe" in reason:
        if secure:
            return ("the server closed the connection during the TLS handshake: it refused this end's certificate "
                    "(--cert, --key: is it signed by the CA the server's --ca-cert names, and is one required?), "
                    "or it is not a grpcs/ end")
        return ("the server closed the connection during the HTTP/2 handshake: {} is not a gRPC server (a tcp/ or "
                "tls/ end?), or it wants TLS (grpcs/)".format(address))
    if "SETTINGS frame" in reason:
        return "no HTTP/2 answer from {}: is it a gRPC server?".format(address)
    return reason


def parse_peer(text):
    """
    A peer as C{grpc} names it (C{ipv4:1.2.3.4:5}, C{ipv6:[::1]:5}) as a
    Twisted address, for the log and the connection caps.
    """
    kind, _, rest = text.partition(":")
    host, _, port = rest.rpartition(":")
    if kind in ("ipv4", "ipv6") and port.isdigit():
        host = host.strip("[]").replace("%25", "%")
        return (IPv4Address if kind == "ipv4" else IPv6Address)("TCP", host, int(port))
    return IPv4Address("TCP", text, 0)


def address_of(host, port):
    """
    :return: C{host}, C{port} as a Twisted address (the dialled host may be
        a name).
    """
    return (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)


def target(host, port):
    """
    :return: C{HOST:PORT} as grpc takes it (an IPv6 host in brackets).
    """
    return ("[{}]:{}" if ":" in host else "{}:{}").format(host, port)


@implementer(ICertificateReloader)
class Certificates:
    """
    The certificates of a C{grpcs/} end, read again on SIGHUP: a bad file
    is a warning and those in use stay.

    :ivar current: what L{read} last made.
    """

    log = Logger()

    def __init__(self, read, log_tag):
        """
        :param read: reads and checks the files, making what grpc takes;
            raises C{ValueError} naming a bad file.
        """
        self.read = read
        self.log_tag = log_tag
        self.current = read()
        self.fresh = None

    def reloadCertificates(self):
        """
        :return: True if reloaded.
        """
        try:
            self.current = self.fresh = self.read()
        except ValueError as e:
            self.log.warn("could not reload the TLS certificates ({reason}): keeping those in use", reason=e)
            return False
        self.log.info("reloaded the TLS certificates: new connections use them")
        return True


def server_certificates(settings, log_tag):
    """
    A server end's certificate, key and CA, as grpc takes them.
    """

    def read():
        cert, key = settings["cert"] or "server.cert", settings["key"] or "server.key"
        tls.load_identity(cert, key)
        tls.load_ca(settings["ca-cert"])
        identity = (tls.read_file(key, "--key"), tls.read_file(cert, "--cert"))
        return grpc.ssl_server_certificate_configuration(
            [identity], root_certificates=tls.read_file(settings["ca-cert"], "--ca-cert"))

    return Certificates(read, log_tag)


def client_certificates(settings, log_tag):
    """
    A client end's CA and (optional, as for C{tls/client}) certificate and
    key, as grpc takes them.
    """

    def read():
        tls.load_ca(settings["ca-cert"])
        cert, key = settings["cert"], settings["key"]
        identity = {}
        if cert or key:
            cert, key = cert or "client.cert", key or "client.key"
            tls.load_identity(cert, key)
        else:
            # as tls/client: client.cert and client.key if they are there
            try:
                cert, key = "client.cert", "client.key"
                tls.load_identity(cert, key)
            except ValueError:
                cert = key = None
        if cert:
            identity = {"private_key": tls.read_file(key, "--key"), "certificate_chain": tls.read_file(cert, "--cert")}
        return grpc.ssl_channel_credentials(tls.read_file(settings["ca-cert"], "--ca-cert"), **identity)

    return Certificates(read, log_tag)
