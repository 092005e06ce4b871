"""
Tests for L{uhppoted_tunnel.transports.grpc.conf} with no socket: the
C{Frame} codec against hostile bytes, the generated code against the
shipped C{.proto}, grpc's options, and the diagnosis of failed attempts.
"""

import os

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2
from google.protobuf.message import DecodeError
from grpc_tools import protoc
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.transports.grpc import conf as grpcconf
from uhppoted_tunnel.transports.grpc.loop import MessageTooLong, NotAFrame
from uhppoted_tunnel.transports.grpc.proto import tunnel_pb2

SETTINGS = {"max-payload": 1024, "dead-peer-timeout": 60.0, "handshake-timeout": 15.0, "max-connections": 512}


class CodecTests(SynchronousTestCase):
    """
    Frames as gRPC messages, and what a hostile peer can send instead.
    """

    def test_roundTrip(self):
        """
        C{(id, payload)} encodes as a Frame that decodes to the same id and
        payload, for every id from 0 to 2**32-1 and empty payloads.
        """
        for frame in ((1, b"\x17\x94" + bytes(62)), (0, b""), (0xFFFFFFFF, b"x" * 1024)):
            message = grpcconf.decode(grpcconf.encode(frame))
            self.assertEqual((message.id, message.payload), frame)

    def test_limit(self):
        """
        The message limit covers the largest payload with the largest id.
        """
        self.assertLessEqual(len(grpcconf.encode((0xFFFFFFFF, b"x" * 65535))), grpcconf.message_limit(65535))
        self.assertLessEqual(len(grpcconf.encode((0xFFFFFFFF, b"x" * 1024))), grpcconf.message_limit(1024))

    def test_hostile(self):
        """
        Bytes that are not a Frame raise C{DecodeError}; an id wider than
        32 bits keeps its low 32; unknown fields are skipped; an empty
        message is frame 0 with no payload; a repeated field's last value
        counts.
        """
        for garbage in (b"\xff\xff\xff", b"\x12\x05ab", b"\x08" + b"\xff" * 11):
            self.assertRaises(DecodeError, grpcconf.decode, garbage)
        wide = grpcconf.decode(b"\x08\xff\xff\xff\xff\xff\xff\xff\xff\x7f\x12\x02ab")
        self.assertEqual((wide.id, wide.payload), (0xFFFFFFFF, b"ab"))
        unknown = grpcconf.decode(b"\x08\x05\x18\x07\x22\x03xyz\x12\x01p")
        self.assertEqual((unknown.id, unknown.payload), (5, b"p"))
        empty = grpcconf.decode(b"")
        self.assertEqual((empty.id, empty.payload), (0, b""))
        twice = grpcconf.decode(b"\x08\x01\x12\x01a\x08\x02\x12\x01b")
        self.assertEqual((twice.id, twice.payload), (2, b"b"))


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
        self.assertEqual(grpcconf.METHOD, "/uhppoted.tunnel.Tunnel/Relay")
        method = tunnel_pb2.DESCRIPTOR.services_by_name["Tunnel"].methods_by_name["Relay"]
        self.assertEqual((method.input_type.full_name, method.output_type.full_name),
                         ("uhppoted.tunnel.Frame", "uhppoted.tunnel.Frame"))
        self.assertTrue(method.client_streaming and method.server_streaming)


class OptionsTests(SynchronousTestCase):
    """
    What grpc is told: everything bounded, nothing done behind the ends'
    backs.
    """

    def test_client(self):
        """
        A channel takes and sends messages up to the limit, pings every
        15 s and gives a dead peer the rest of --dead-peer-timeout, pings
        however long nothing is sent, and neither retries nor takes a
        proxy from the environment.
        """
        options = dict(grpcconf.channel_options(SETTINGS))
        self.assertEqual(options["grpc.max_receive_message_length"], 1024 + grpcconf.MESSAGE_OVERHEAD)
        self.assertEqual(options["grpc.max_send_message_length"], 1024 + grpcconf.MESSAGE_OVERHEAD)
        self.assertEqual((options["grpc.keepalive_time_ms"], options["grpc.keepalive_timeout_ms"],
                          options["grpc.http2.ping_timeout_ms"]), (15000, 45000, 45000))
        self.assertEqual((options["grpc.http2.max_pings_without_data"], options["grpc.enable_retries"],
                          options["grpc.enable_http_proxy"]), (0, 0, 0))

    def test_proxy(self):
        """
        A proxy the end chose is given to grpc, credentials
        percent-encoded in the URL; without one, grpc takes none from the
        environment either.
        """
        from uhppoted_tunnel.transports.proxy import Proxy

        plain = dict(grpcconf.channel_options(SETTINGS, Proxy("127.0.0.1", 3128)))
        self.assertEqual((plain["grpc.enable_http_proxy"], plain["grpc.http_proxy"]), (1, "http://127.0.0.1:3128"))
        secret = dict(grpcconf.channel_options(SETTINGS, Proxy("::1", 3128, b"tunnel:p@ss:w/rd")))
        self.assertEqual(secret["grpc.http_proxy"], "http://tunnel:p%40ss%3Aw%2Frd@[::1]:3128")
        self.assertNotIn("grpc.http_proxy", dict(grpcconf.channel_options(SETTINGS)))

    def test_server(self):
        """
        A server takes twice --max-connections connections (the end caps
        the calls at --max-connections itself), a few streams each,
        gives a handshake and an idle connection --handshake-timeout, takes
        the clients' pings, and has its port to itself.
        """
        options = dict(grpcconf.server_options(dict(SETTINGS, **{"max-connections": 7})))
        self.assertEqual(options["grpc.max_allowed_incoming_connections"], 14)
        self.assertEqual(options["grpc.max_concurrent_streams"], grpcconf.STREAMS_PER_CONNECTION)
        self.assertEqual((options["grpc.server_handshake_timeout_ms"], options["grpc.max_connection_idle_ms"]),
                         (15000, 15000))
        self.assertLessEqual(options["grpc.http2.min_ping_interval_without_data_ms"],
                             options["grpc.keepalive_time_ms"])
        self.assertEqual(options["grpc.so_reuseport"], 0)

    def test_shortDeadPeerTimeout(self):
        """
        A short --dead-peer-timeout pings more often: a dead peer is still
        noticed within it.
        """
        self.assertEqual(grpcconf.keepalive(4.0), (2000, 2000))


def rpc_error(code, details):
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details)


class DiagnosisTests(SynchronousTestCase):
    """
    A failed attempt or a stream that ended says why in terms an operator
    can act on.
    """

    ADDRESS = "127.0.0.1:4000"

    def failure(self, details, code=grpc.StatusCode.UNAVAILABLE, secure=False):
        return grpcconf.dial_failure(code, details, self.ADDRESS, secure)

    def test_refused(self):
        """
        Nothing listening.
        """
        self.assertEqual(self.failure("failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:4000: "
                                      "Failed to connect to remote host: Connection refused"), "connection refused")

    def test_notGRPC(self):
        """
        A server that closes on the HTTP/2 preface is not a gRPC server
        (or wants TLS); over TLS, one that closes during the handshake
        refused the client's certificate (or is not a grpcs/ end); one
        that answers nothing is probably not a gRPC server either.
        """
        closed = ("failed to connect to all addresses; last error: UNAVAILABLE: ipv4:127.0.0.1:4000: "
                  "Socket closed")
        self.assertIn("127.0.0.1:4000 is not a gRPC server (a tcp/ or tls/ end?)", self.failure(closed))
        self.assertIn("it refused this end's certificate", self.failure(closed, secure=True))
        reset = "last error: UNAVAILABLE: ipv4:127.0.0.1:4000: recvmsg:Connection reset by peer (104)"
        self.assertIn("is not a gRPC server", self.failure(reset))
        silent = ("last error: UNKNOWN: ipv4:127.0.0.1:4000: connection attempt timed out before receiving "
                  "SETTINGS frame")
        self.assertEqual(self.failure(silent), "no HTTP/2 answer from 127.0.0.1:4000: is it a gRPC server?")

    def test_tls(self):
        """
        TLS failures name OpenSSL's reason, and a plain server is
        recognised.
        """
        untrusted = ("last error: UNKNOWN: ipv4:127.0.0.1:4000: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
                     "SSL_ERROR_SSL: error:1000007d:SSL routines:OPENSSL_internal:CERTIFICATE_VERIFY_FAILED: "
                     "unable to get local issuer certificate: OK")
        self.assertEqual(self.failure(untrusted, secure=True),
                         "TLS handshake failed: certificate verify failed: unable to get local issuer certificate: OK")
        plain = ("last error: UNKNOWN: ipv4:127.0.0.1:4000: Tls handshake failed (TSI_PROTOCOL_FAILURE): "
                 "SSL_ERROR_SSL: error:100000f7:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER: Invalid "
                 "certificate verification context: OK")
        self.assertIn("(is the server a plain grpc/ end?)", self.failure(plain, secure=True))
        name = ("last error: UNKNOWN: ipv4:127.0.0.1:4000: Custom verification check failed with error: "
                "UNAUTHENTICATED: Hostname Verification Check failed.")
        self.assertEqual(self.failure(name, secure=True),
                         "the server's certificate does not name 127.0.0.1 (TLS hostname verification failed)")

    def test_statuses(self):
        """
        A gRPC server without the service, and one over its caps, are
        named; other statuses are given as they are.
        """
        self.assertIn("is a gRPC server without /uhppoted.tunnel.Tunnel/Relay",
                      self.failure("Method not found!", grpc.StatusCode.UNIMPLEMENTED))
        self.assertEqual(self.failure("too many connections", grpc.StatusCode.RESOURCE_EXHAUSTED),
                         "the server refused the link: too many connections")
        self.assertEqual(self.failure("nope", grpc.StatusCode.PERMISSION_DENIED), "PERMISSION_DENIED: nope")

    def test_streamErrors(self):
        """
        A message that is not a Frame, one over the limit, and a failed
        call each end a stream with their own reason.
        """
        self.assertIsInstance(grpcconf.diagnose(DecodeError("Error parsing message: Wire format was corrupt")),
                              NotAFrame)
        too_long = grpcconf.diagnose(rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                               "Received message larger than max (2005 vs. 1034)"))
        self.assertIsInstance(too_long, MessageTooLong)
        self.assertIn("is the peer's --max-payload larger?", str(too_long))
        lost = grpcconf.diagnose(rpc_error(grpc.StatusCode.UNAVAILABLE, "Socket closed"))
        self.assertIsInstance(lost, ConnectionLost)
        self.assertIn("UNAVAILABLE: Socket closed", str(lost))
        import asyncio

        self.assertIsInstance(grpcconf.diagnose(asyncio.InvalidStateError("RPC already finished.")), ConnectionDone)


class AddressTests(SynchronousTestCase):
    def test_peer(self):
        """
        grpc's peer names become Twisted addresses, for the log and the
        caps per source.
        """
        self.assertEqual(grpcconf.parse_peer("ipv4:127.0.0.1:5000"), IPv4Address("TCP", "127.0.0.1", 5000))
        self.assertEqual(grpcconf.parse_peer("ipv6:[::1]:5000"), IPv6Address("TCP", "::1", 5000))
        self.assertEqual(grpcconf.parse_peer("ipv6:[fe80::1%25eth0]:5000"), IPv6Address("TCP", "fe80::1%eth0", 5000))
        self.assertEqual(grpcconf.parse_peer("unix:/run/x").host, "unix:/run/x")

    def test_target(self):
        self.assertEqual(grpcconf.target("::1", 5), "[::1]:5")
        self.assertEqual(grpcconf.target("example.org", 5), "example.org:5")
