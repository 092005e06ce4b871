# -*- test-case-name: tests.unit.test_grpclink,tests.loopback.test_grpc -*-
"""
What the gRPC ends ask of grpcio: a server and a dialler as Twisted
endpoints, whose connections are gRPC streams
(L{uhppoted_tunnel.connectors.grpcloop}), and TLS from the C{tls/} flags.

Imported only when a gRPC end is built, so that the plugin scan of every
tunnel does not load grpcio.

One call of C{uhppoted.tunnel.Tunnel/Relay} (C{uhppoted_tunnel/proto/
tunnel.proto}) is one link: the dialler's channel is made for the attempt
and closed with it, so backoff and C{--max-retries} are the client end's
own. An attempt has succeeded once the server has answered the call with
its headers (a server end sends them once it has taken the link), and has
failed when the call fails first or when nothing has answered within the
dial timeout (C{--handshake-timeout} more over TLS); the reason names what
the peer probably is.

grpc core's own log lines go to stderr in a layout of their own: unless
C{GRPC_VERBOSITY} is set, they are off, and the ends log what matters.
"""

import asyncio
import os
import re
import socket
from functools import partial

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel import __version__, tls
from uhppoted_tunnel.connectors.endpoints import DIAL_TIMEOUT
from uhppoted_tunnel.connectors.grpcloop import (
    CLOSE_TIMEOUT,
    GIVE_UP,
    FramePump,
    LoopThread,
    MessageTooLong,
    NotAFrame,
    StreamTransport,
    call_soon,
)

os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402
import grpc.aio  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402

from uhppoted_tunnel.proto.tunnel_pb2 import DESCRIPTOR, Frame  # noqa: E402

#: C{uhppoted.tunnel.Tunnel}, and the path of its C{Relay} method, as the
#: .proto names them
SERVICE = DESCRIPTOR.services_by_name["Tunnel"].full_name
METHOD = "/{}/{}".format(SERVICE, DESCRIPTOR.services_by_name["Tunnel"].methods_by_name["Relay"].name)

#: What a Frame message adds to its payload at most: the id's tag and
#: varint (6 bytes), the payload's tag and length (4 for up to 65535).
MESSAGE_OVERHEAD = 10

#: Go: TCP keepalive every 15 s; the gRPC ends ping as often (or more, for
#: a short --dead-peer-timeout).
KEEPALIVE = 15.0

#: The shortest interval between a client's pings that a server takes
#: (grpc's default, 5 minutes, would refuse the keepalive above).
MIN_PING_INTERVAL = 1.0

#: HTTP/2 streams one connection may carry at once: a tunnel's client
#: opens one per connection.
STREAMS_PER_CONNECTION = 4

#: Seconds a stopping server gives its calls before it cancels them.
STOP_GRACE = 2.0

#: The loop every gRPC end of the process shares.
LOOP = LoopThread("grpc")


def encode(frame):
    """
    The request and response serializer: C{(id, payload)} -> bytes.
    """
    return Frame(id=frame[0], payload=frame[1]).SerializeToString()


#: The deserializer: bytes -> a C{Frame} (C{id}, C{payload}); an id sent
#: wider than 32 bits keeps its low 32, unknown fields are skipped, and
#: bytes that are not a Frame raise C{DecodeError}.
decode = Frame.FromString


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
        ("grpc.keepalive_permit_without_calls", 1),
        # the window stays at 64 KiB: what a peer that does not read can
        # hold up is bounded, and tiny frames need no more
        ("grpc.http2.bdp_probe", 0),
    ]


def channel_options(settings):
    """
    The options of a client's channel: message sizes, keepalive, and
    nothing grpc would do on its own (retries, proxies from the
    environment).
    """
    return _common_options(settings) + [
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.enable_retries", 0),
        ("grpc.enable_http_proxy", 0),
        ("grpc.primary_user_agent", "uhppoted-tunnel/" + __version__),
    ]


def server_options(settings):
    """
    The options of a server: message sizes, keepalive both ways, and the
    bounds: connections (C{--max-connections}), streams per connection, a
    handshake (C{--handshake-timeout}, also how long a connection may stay
    without a call), and an exclusive port (grpc shares it by default).
    """
    handshake = int(settings["handshake-timeout"] * 1000)
    return _common_options(settings) + [
        ("grpc.http2.min_ping_interval_without_data_ms", int(MIN_PING_INTERVAL * 1000)),
        ("grpc.max_allowed_incoming_connections", settings["max-connections"]),
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


def _read(path, flag):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ValueError("{} '{}': {}".format(flag, path, e.strerror or e)) from None


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
        return grpc.ssl_server_certificate_configuration([(_read(key, "--key"), _read(cert, "--cert"))],
                                                         root_certificates=_read(settings["ca-cert"], "--ca-cert"))

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
            identity = {"private_key": _read(key, "--key"), "certificate_chain": _read(cert, "--cert")}
        return grpc.ssl_channel_credentials(_read(settings["ca-cert"], "--ca-cert"), **identity)

    return Certificates(read, log_tag)


def _cannot_bind(host, port, error):
    """
    Why grpc could not bind (it says only that it failed): the system's
    reason, from binding a socket the same way.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    probe = socket.socket(family, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    except OSError as e:
        return e.strerror or str(e)
    finally:
        probe.close()
    return str(error).split(";")[0]


@implementer(IListeningPort)
class ServerPort:
    """
    A listening gRPC server.
    """

    def __init__(self, address, stop, stopped, clock):
        self.address = address
        self._stop = stop
        self._stopped = stopped
        self.clock = clock

    def getHost(self):
        return self.address

    def startListening(self):
        pass

    def stopListening(self):
        """
        Stop the server: calls still open are cancelled after
        L{STOP_GRACE} seconds.

        :return: a Deferred that fires once it has stopped (or after
            L{GIVE_UP} seconds if the loop does not say so).
        """
        self._stop()
        done = Deferred()
        timer = self.clock.callLater(GIVE_UP, lambda: done.called or done.callback(None))

        def stopped(_):
            if timer.active():
                timer.cancel()
            if not done.called:
                done.callback(None)

        self._stopped.addBoth(stopped)
        return done


@implementer(IStreamServerEndpoint)
class ServerEndpoint:
    """
    Listens with a gRPC server whose every C{Relay} call is a connection
    built by the listening factory (which may refuse it: the caps).
    """

    log = Logger()

    def __init__(self, reactor, host, port, settings, certificates=None, log_tag="GRPC"):
        """
        :param host: the IP address to listen on.
        :param port: the port, 0 for any.
        :param settings: the tunnel's options.
        :param certificates: L{Certificates} for TLS, or C{None}.
        """
        self.reactor = reactor
        self.host = host
        self.port = port
        self.settings = settings
        self.certificates = certificates
        self.log_tag = log_tag
        if certificates is not None:
            self.reloadCertificates = certificates.reloadCertificates

    def listen(self, factory):
        job = None
        listening = Deferred(lambda _: job.cancel())
        loop, job = LOOP.submit(self._serve, factory, listening, Deferred())
        return listening

    def _fetch(self):
        # grpc asks at each handshake (on a thread of its own)
        fresh, self.certificates.fresh = self.certificates.fresh, None
        return fresh

    async def _serve(self, factory, listening, stopped):
        reactor = self.reactor
        settings = self.settings
        server = grpc.aio.server(options=server_options(settings),
                                 maximum_concurrent_rpcs=settings["max-connections"] * 2)
        handler = grpc.stream_stream_rpc_method_handler(partial(self._relay, factory), request_deserializer=decode,
                                                        response_serializer=encode)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, {"Relay": handler}),))
        address = target(self.host, self.port)
        try:
            if self.certificates is None:
                port = server.add_insecure_port(address)
            else:
                self.certificates.fresh = None
                credentials = grpc.dynamic_ssl_server_credentials(self.certificates.current, self._fetch,
                                                                  require_client_authentication=bool(
                                                                      settings["client-auth"]))
                port = server.add_secure_port(address, credentials)
        except RuntimeError as e:
            reactor.callFromThread(_settle, listening, Failure(OSError(_cannot_bind(self.host, self.port, e))))
            return
        stop = asyncio.Event()
        try:
            await server.start()
            self.host_address = address_of(self.host, port)
            reactor.callFromThread(_settle, listening, ServerPort(
                self.host_address, partial(call_soon, asyncio.get_running_loop(), stop.set), stopped, reactor))
            await stop.wait()
        finally:
            await server.stop(STOP_GRACE)
            reactor.callFromThread(stopped.callback, None)

    async def _relay(self, factory, requests, context):
        """
        One C{Relay} call: one connection, if the factory takes it.
        """
        reactor = self.reactor
        loop = asyncio.get_running_loop()
        settings = self.settings
        pump = FramePump(context.read, context.write, None, diagnose, settings["max-payload"],
                         settings["stall-timeout"], eof=grpc.aio.EOF)
        transport = StreamTransport(pump, loop, parse_peer(context.peer()), self.host_address,
                                    settings["max-send-queue"], reactor, reactor.callFromThread)
        pump.deliver = transport.arrived
        taken = loop.create_future()
        reactor.callFromThread(self._take, factory, transport, taken)
        reason = ConnectionAborted()
        try:
            if not await taken:
                await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "too many connections")
            await context.send_initial_metadata(())
            reason = await pump.run()
        finally:
            reactor.callFromThread(transport.ended, reason)
        if not isinstance(reason, (ConnectionDone, ConnectionAborted)):
            await context.abort(grpc.StatusCode.ABORTED, str(reason))

    @staticmethod
    def _take(factory, transport, taken):
        protocol = factory.buildProtocol(transport.peer_address)
        if protocol is not None:
            transport.protocol = protocol
            protocol.makeConnection(transport)
        call_soon(transport.loop, lambda: taken.done() or taken.set_result(protocol is not None))


@implementer(IStreamClientEndpoint)
class ClientEndpoint:
    """
    Dials a gRPC server: C{connect} fires with the connection once the
    server has taken the call, and fails with L{DialFailed} saying why if
    it does not.
    """

    def __init__(self, reactor, host, port, settings, certificates=None):
        """
        :param host: the host name or IP address to dial (over TLS, the
            server's certificate must name it).
        :param port: the port.
        :param settings: the tunnel's options.
        :param certificates: L{Certificates} for TLS, or C{None}.
        """
        self.reactor = reactor
        self.host = host
        self.port = port
        self.address = target(host, port)
        self.settings = settings
        self.certificates = certificates
        self.timeout = DIAL_TIMEOUT + (settings["handshake-timeout"] if certificates is not None else 0)
        if certificates is not None:
            self.reloadCertificates = certificates.reloadCertificates

    def connect(self, factory):
        job = None

        def cancel(_):
            job.cancel()

        connecting = Deferred(cancel)
        loop, job = LOOP.submit(self._dial, factory, connecting)
        return connecting

    def _channel(self):
        options = channel_options(self.settings)
        if self.certificates is None:
            return grpc.aio.insecure_channel(self.address, options=options)
        return grpc.aio.secure_channel(self.address, self.certificates.current, options=options)

    async def _dial(self, factory, connecting):
        reactor = self.reactor
        settings = self.settings
        channel = self._channel()
        call = transport = failed = None
        reason = ConnectionAborted()
        try:
            call = channel.stream_stream(METHOD, request_serializer=encode, response_deserializer=decode)(
                wait_for_ready=False)
            try:
                async with asyncio.timeout(self.timeout):
                    await call.initial_metadata()
            except TimeoutError:
                failed = "no answer within {:g}s: is {} a gRPC server?".format(self.timeout, self.address)
            else:
                if call.done():
                    failed = dial_failure(await call.code(), await call.details(), self.address,
                                          self.certificates is not None)
            if failed is None:
                pump = FramePump(call.read, call.write, None, diagnose, settings["max-payload"],
                                 settings["stall-timeout"], eof=grpc.aio.EOF, half_close=call.done_writing,
                                 close_timeout=CLOSE_TIMEOUT)
                transport = StreamTransport(pump, asyncio.get_running_loop(), address_of(self.host, self.port),
                                            address_of("0.0.0.0", 0), settings["max-send-queue"], reactor,
                                            reactor.callFromThread)
                pump.deliver = transport.arrived
                reactor.callFromThread(self._connected, factory, connecting, transport)
                reason = await pump.run()
        except asyncio.CancelledError:
            pass
        except Exception as e:
            failed = str(e) or type(e).__name__
        finally:
            if call is not None:
                call.cancel()
            # nothing may keep the call, and so the channel, alive: a
            # channel still referred to reconnects on its own
            call = None
            await channel.close()
            channel = None
            if failed is not None:
                # a new exception, with no traceback holding this frame
                reactor.callFromThread(_settle, connecting, Failure(DialFailed(failed)))
            if transport is not None:
                reactor.callFromThread(transport.ended, reason)

    @staticmethod
    def _connected(factory, connecting, transport):
        if connecting.called:
            # cancelled meanwhile
            transport.abortConnection()
            return
        protocol = factory.buildProtocol(transport.peer_address)
        if protocol is None:
            transport.abortConnection()
            connecting.errback(Failure(DialFailed("refused by the client end")))
            return
        transport.protocol = protocol
        protocol.makeConnection(transport)
        connecting.callback(protocol)


def _settle(deferred, result):
    if not deferred.called:
        if isinstance(result, Failure):
            deferred.errback(result)
        else:
            deferred.callback(result)
