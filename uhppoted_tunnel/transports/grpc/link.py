# -*- test-case-name: tests.loopback.test_grpc -*-
"""
What the gRPC ends ask of grpcio: a server and a dialler as Twisted
endpoints, whose connections are gRPC streams
(L{uhppoted_tunnel.transports.grpc.loop}); how they are set up is
L{uhppoted_tunnel.transports.grpc.conf}.

Imported only when a gRPC end is built, so that the plugin scan of every
tunnel does not load grpcio.

One call of C{uhppoted.tunnel.Tunnel/Relays} (C{uhppoted_tunnel/transports/grpc/proto/
tunnel.proto}), or of C{Relay} with a server from before C{Relays}, is
one link: the server serves both, the dialler calls C{Relays} and, if the
server answers C{UNIMPLEMENTED}, C{Relay}. The dialler's channel is made
for the attempt and closed with it, so backoff and C{--max-retries} are
the client end's own. An attempt has succeeded once the server has answered the call with
its headers (a server end sends them once it has taken the link), and has
failed when the call fails first or when nothing has answered within the
dial timeout (C{--handshake-timeout} more over TLS); the reason names what
the peer probably is.
"""

import asyncio
import socket
from functools import partial

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionAborted, ConnectionDone
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.link.limits import DEFAULT_MAX_CONNECTIONS, LISTEN_BACKLOG, limit_connections
from uhppoted_tunnel.transports.endpoints import DIAL_TIMEOUT
from uhppoted_tunnel.transports.grpc.refusals import HandshakeWatch
from uhppoted_tunnel.transports.grpc.conf import (
    BATCH_METHOD,
    METHOD,
    SERVICE,
    DialFailed,
    address_of,
    channel_options,
    decode,
    decode_batch,
    diagnose,
    dial_failure,
    encode,
    encode_batch,
    grpc,
    parse_peer,
    server_options,
    target,
)
from uhppoted_tunnel.transports.grpc.front import BACKEND_HOST, FRONT_CONNECTIONS, FrontDoor, Peers
from uhppoted_tunnel.transports.grpc.loop import CLOSE_TIMEOUT, GIVE_UP, LoopThread, ReactorLoop, call_soon
from uhppoted_tunnel.transports.grpc.pump import FramePump
from uhppoted_tunnel.transports.grpc.transport import StreamTransport
from uhppoted_tunnel.transports.tls.handshake import note_subject, pem_subject

#: Seconds a stopping server gives its calls before it cancels them.
STOP_GRACE = 2.0

#: What L{ClientEndpoint._call} says of a server without C{Relays}.
UNIMPLEMENTED = "UNIMPLEMENTED"

#: The loop every gRPC end of the process shares.
LOOP = LoopThread("grpc")


def loops_for(reactor):
    """
    Where the streams of an end on C{reactor} run: on the reactor's own
    loop under the asyncio reactor, else on L{LOOP}'s thread.
    """
    if isinstance(reactor, AsyncioSelectorReactor):
        # Twisted names the reactor's loop only privately
        return ReactorLoop(reactor._asyncioEventloop)
    return LOOP


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
    built by the listening factory (which may refuse it: the caps). The
    public port is the server's front door
    (L{uhppoted_tunnel.transports.grpc.front}): the TCP connections are
    accepted under the tunnel's caps and relayed to grpc's server on a
    loopback port.
    """

    def __init__(self, reactor, host, port, settings, certificates=None):
        """
        :param host: the IP address to listen on.
        :param port: the port, 0 for any.
        :param settings: the tunnel's options.
        :param certificates: L{Certificates} for TLS, or C{None}.
        """
        self.reactor = reactor
        self.loops = loops_for(reactor)
        self.host = host
        self.port = port
        self.settings = settings
        self.certificates = certificates
        self.peers = Peers()
        #: connections grpc began and calls started, to warn of refused
        #: clients (grpcs/ only)
        self.handshakes = None
        if certificates is not None:
            self.reloadCertificates = certificates.reloadCertificates
            self.handshakes = HandshakeWatch(reactor, settings["handshake-timeout"], certificates.log_tag)

    def listen(self, factory):
        job = None
        listening = Deferred(lambda _: job.cancel())
        stopped = Deferred()
        if self.handshakes is not None:
            stopped.addCallback(lambda _: self.handshakes.stop())
        loop, job = self.loops.submit(self._serve, factory, listening, stopped)
        return listening

    def _fetch(self):
        # grpc asks at each handshake (on a thread of its own)
        self.reactor.callFromThread(self.handshakes.begun)
        fresh, self.certificates.fresh = self.certificates.fresh, None
        return fresh

    async def _serve(self, factory, listening, stopped):
        reactor = self.reactor
        settings = self.settings
        server = grpc.aio.server(options=server_options(settings),
                                 maximum_concurrent_rpcs=settings["max-connections"] * 2)
        handlers = {
            "Relay": grpc.stream_stream_rpc_method_handler(partial(self._relay, factory, False),
                                                           request_deserializer=decode, response_serializer=encode),
            "Relays": grpc.stream_stream_rpc_method_handler(partial(self._relay, factory, True),
                                                            request_deserializer=decode_batch,
                                                            response_serializer=encode_batch),
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        stop = asyncio.Event()
        try:
            backend = self._bind(server)
            await server.start()
            reactor.callFromThread(self._open, listening, backend,
                                   partial(call_soon, asyncio.get_running_loop(), stop.set), stopped)
            await stop.wait()
        except Exception as e:
            reactor.callFromThread(_settle, listening, Failure(OSError(str(e) or type(e).__name__)))
        finally:
            await server.stop(STOP_GRACE)
            reactor.callFromThread(stopped.callback, None)

    def _open(self, listening, backend, stop, stopped):
        """
        Open the front door on the public port, in front of grpc's server
        on C{backend}; if it cannot, stop grpc's server.
        """
        # twice as many connections as calls (grpc's own cap was so), so
        # that a call over --max-connections is refused by the end, which
        # tells the client why, rather than at the door
        settings = dict(self.settings)
        settings["max-connections"] = FRONT_CONNECTIONS * (settings.get("max-connections") or DEFAULT_MAX_CONNECTIONS)
        front = limit_connections(FrontDoor(self.reactor, (BACKEND_HOST, backend), self.peers), settings,
                                  self.reactor, "GRPC")
        try:
            port = self.reactor.listenTCP(self.port, front, backlog=LISTEN_BACKLOG, interface=self.host)
        except Exception as e:
            stop()
            _settle(listening, Failure(OSError(_cannot_bind(self.host, self.port, e))))
            return
        self.host_address = address_of(self.host, port.getHost().port)

        def stopBoth():
            front.flush()
            port.stopListening()
            stop()

        _settle(listening, ServerPort(self.host_address, stopBoth, stopped, self.reactor))

    def _bind(self, server):
        """
        :return: the loopback port grpc's server listens on.
        :raise OSError: with the system's reason if it cannot.
        """
        address = target(BACKEND_HOST, 0)
        try:
            if self.certificates is None:
                return server.add_insecure_port(address)
            self.certificates.fresh = None
            credentials = grpc.dynamic_ssl_server_credentials(
                self.certificates.current, self._fetch,
                require_client_authentication=bool(self.settings["client-auth"]))
            return server.add_secure_port(address, credentials)
        except RuntimeError as e:
            raise OSError(_cannot_bind(self.host, self.port, e)) from None

    async def _relay(self, factory, batched, requests, context):
        """
        One C{Relay} call, or C{Relays} (C{batched}): one connection, if
        the factory takes it.
        """
        reactor = self.reactor
        if self.handshakes is not None:
            reactor.callFromThread(self.handshakes.called)
        loop = asyncio.get_running_loop()
        settings = self.settings
        pump = FramePump(context.read, context.write, None, diagnose, settings["max-payload"],
                         settings["stall-timeout"], eof=grpc.aio.EOF, batched=batched)
        relayed = parse_peer(context.peer())
        transport = StreamTransport(pump, loop, self.peers.peer(relayed), self.host_address,
                                    settings["max-send-queue"], reactor, self.loops.reactor_caller(reactor),
                                    self.loops.call_soon)
        pump.deliver = transport.arrived
        # grpcs/ with a client certificate: the site is known by its subject
        pems = context.auth_context().get("x509_pem_cert")
        identity = pem_subject(pems[0]) if pems else None
        taken = loop.create_future()
        reactor.callFromThread(self._take, factory, transport, taken, partial(self.peers.called, relayed), identity)
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
    def _take(factory, transport, taken, called, identity=None):
        protocol = factory.buildProtocol(transport.peer_address)
        if protocol is not None:
            called()
            if identity is not None:
                note_subject(protocol, identity)
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

    def __init__(self, reactor, host, port, settings, certificates=None, proxy=None):
        """
        :param host: the host name or IP address to dial (over TLS, the
            server's certificate must name it).
        :param port: the port.
        :param settings: the tunnel's options.
        :param certificates: L{Certificates} for TLS, or C{None}.
        :param proxy: the HTTP proxy to dial through, or C{None}.
        """
        self.reactor = reactor
        self.loops = loops_for(reactor)
        self.host = host
        self.port = port
        self.address = target(host, port)
        self.settings = settings
        self.certificates = certificates
        self.proxy = proxy
        self.timeout = DIAL_TIMEOUT + (settings["handshake-timeout"] if certificates is not None else 0)
        if certificates is not None:
            self.reloadCertificates = certificates.reloadCertificates

    def connect(self, factory):
        job = None

        def cancel(_):
            job.cancel()

        connecting = Deferred(cancel)
        loop, job = self.loops.submit(self._dial, factory, connecting)
        return connecting

    def _channel(self):
        options = channel_options(self.settings, self.proxy)
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
            for batched in (True, False):
                call, failed = await self._call(channel, batched)
                if failed != UNIMPLEMENTED:
                    break
                # a server from before Relays
                call.cancel()
            if failed is None:
                pump = FramePump(call.read, call.write, None, diagnose, settings["max-payload"],
                                 settings["stall-timeout"], eof=grpc.aio.EOF, half_close=call.done_writing,
                                 close_timeout=CLOSE_TIMEOUT, batched=batched)
                transport = StreamTransport(pump, asyncio.get_running_loop(), address_of(self.host, self.port),
                                            address_of("0.0.0.0", 0), settings["max-send-queue"], reactor,
                                            self.loops.reactor_caller(reactor), self.loops.call_soon)
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

    async def _call(self, channel, batched):
        """
        Call C{Relays} (C{batched}) or C{Relay}, and wait for the server to
        take the link.

        :return: C{(call, failed)}: C{failed} is C{None} once the server
            has taken it, L{UNIMPLEMENTED} if the server does not serve
            C{Relays}, else why the attempt failed.
        """
        if batched:
            call = channel.stream_stream(BATCH_METHOD, request_serializer=encode_batch,
                                         response_deserializer=decode_batch)(wait_for_ready=False)
        else:
            call = channel.stream_stream(METHOD, request_serializer=encode, response_deserializer=decode)(
                wait_for_ready=False)
        try:
            async with asyncio.timeout(self.timeout):
                await call.initial_metadata()
        except TimeoutError:
            return call, "no answer within {:g}s: is {} a gRPC server?".format(self.timeout, self.address)
        if not call.done():
            return call, None
        code = await call.code()
        if batched and code == grpc.StatusCode.UNIMPLEMENTED:
            return call, UNIMPLEMENTED
        return call, dial_failure(code, await call.details(), self.address, self.certificates is not None)

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
