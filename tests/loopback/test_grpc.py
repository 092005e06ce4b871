# -*- test-case-name: tests.loopback.test_grpc -*-
"""
The gRPC ends end to end: real C{uhppoted-tunnel} processes on 127.0.0.1
joined by C{grpc/} and C{grpcs/}, the controller emulator, and the
C{uhppoted} client as the application; a plain grpcio client with stubs
generated from the shipped C{.proto}; refusals, restarts and signals.
"""

import datetime
import os
import re
import signal
import socket
import ssl
import sys

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests import certs
from tests.loopback.processes import (
    Client,
    emulator_sent_line,
    free_port,
    listening_line,
    lockfile,
    run_tunnel,
    spawn,
    start_emulator,
    start_event_emulator,
    start_host,
    start_site,
    stop,
    workdir,
)
from tests.loopback.eventpairs import COUNT, EventTunnels
from tests.loopback.eventpairs import A as EVENT_CONTROLLER
from tests.loopback.pairs import A, B, Pairs
from tests.loopback.tinyproxy import PASSWORD, USER, connect_line, start_tinyproxy
from uhppoted_tunnel.transports.grpc import proto

#: The service as installed with the package.
PROTO = os.path.join(proto.__path__[0], "tunnel.proto")


def grpc_listening(kind="grpc"):
    """
    :return: a regex for the line a gRPC server end logs once it listens
        (group 1: the port).
    """
    return r"\b" + kind.upper() + r"\s+listening on 127\.0\.0\.1:(\d+)\s*$"


def grpc_connected(kind="grpc", port=None):
    """
    :return: a regex for the line a gRPC end logs once its call is ready.
    """
    return r"\b" + kind.upper() + r"\s+connected to 127\.0\.0\.1:" + (r"\d+" if port is None else str(port)) + r"\s*$"


def grpc_retrying(kind, port, reason=".*"):
    """
    :return: a regex for a gRPC client end's warning that an attempt
        failed and when it tries again.
    """
    return (r"WARN\s+" + kind.upper() + r"\s+could not connect to 127\.0\.0\.1:" + str(port) + r" \(" + reason
            + r"\): retrying in (\d+)s")


class _GRPCPairs(Pairs):
    """
    Tunnel pairs joined by gRPC, and the certificates they use.
    """

    timeout = 120

    def certificates(self, prefix=""):
        files = self.__dict__.setdefault("_files", {})
        if prefix not in files:
            files[prefix] = certs.make(os.path.join(workdir(self), "certs-" + (prefix or "main")), prefix=prefix)
        return files[prefix]

    def tls_flags(self, role, client_auth=False, prefix="", ca_prefix=""):
        cert, key = self.certificates(prefix)[role]
        ca = self.certificates(ca_prefix)["ca"][0]
        return ["--ca-cert", ca, "--cert", cert, "--key", key] + (["--client-auth"] if client_auth else [])

    @inlineCallbacks
    def connect(self, kind="grpc", reverse=False, server_flags=(), client_flags=(), command=None):
        """
        Start the emulator (controllers A and B), a host half (udp/listen
        -> KIND) and a site half (KIND -> udp/broadcast), one the server
        and the other the client, and wait until both ends have the call.

        :param command: how to run the halves (L{run_tunnel}'s).

        :return: a Deferred firing with C{(host, site, client)}.
        """
        emulator_process, emulator_port = yield start_emulator(self, A, B)
        broadcast = "udp/broadcast:127.0.0.1:{}".format(emulator_port)
        if not reverse:
            host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out",
                              "{}/server:127.0.0.1:0".format(kind), *server_flags, command=command)
            port = int((yield host.waitFor(grpc_listening(kind))).group(1))
            site = run_tunnel(self, "site", "--in", "{}/client:127.0.0.1:{}".format(kind, port), "--out", broadcast,
                              "--udp-timeout", "1s", *client_flags, command=command)
            yield site.waitFor(grpc_connected(kind, port))
            yield host.waitFor(grpc_connected(kind))
        else:
            site = run_tunnel(self, "site", "--in", "{}/server:127.0.0.1:0".format(kind), "--out", broadcast,
                              "--udp-timeout", "1s", *server_flags)
            port = int((yield site.waitFor(grpc_listening(kind))).group(1))
            host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out",
                              "{}/client:127.0.0.1:{}".format(kind, port), *client_flags)
            yield host.waitFor(grpc_connected(kind, port))
            yield site.waitFor(grpc_connected(kind))
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        self.emulator_process = emulator_process
        return host, site, Client(udp_port)

    @inlineCallbacks
    def assertRequests(self, client):
        """
        Discovery gets both controllers, get-time and get-controller reach
        the controller named, and a card written to A reads back from A
        alone.
        """
        yield self.assertDiscovers(client)
        yield self.assertUnicast(client)
        for serial in (A, B):
            reply = yield client.get_time(serial)
            self.assertEqual(reply.controller, serial)
            self.assertIsInstance(reply.datetime, datetime.datetime)
        start, end = datetime.date(2024, 1, 1), datetime.date(2025, 12, 31)
        stored = yield client.put_card(A, 8165538, start, end, (1, 0, 29, 1), 7531)
        self.assertEqual((stored.controller, stored.stored), (A, True))
        card = yield client.get_card(A, 8165538)
        self.assertEqual((card.controller, card.card_number, card.start_date, card.end_date, card.door_1,
                          card.door_3, card.pin), (A, 8165538, start, end, 1, 29, 7531))
        other = yield client.get_card(B, 8165538)
        self.assertEqual((other.controller, other.card_number), (B, 0))


class GRPCTunnelTests(_GRPCPairs, TestCase):
    """
    Tunnels joined by gRPC carry the uhppoted client's requests, both
    ways of dialling, plain and over TLS with client certificates.
    """

    @inlineCallbacks
    def test_forward(self):
        """
        Site dialling host over grpc/: the uhppoted client's requests are
        answered; the plain server on loopback is not warned of.
        """
        host, site, client = yield self.connect()
        yield self.assertRequests(client)
        self.assertNotIn("plain GRPC end on a network address", host.output())

    @inlineCallbacks
    def test_reverse(self):
        """
        Host dialling site over grpc/: the uhppoted client's requests are
        answered.
        """
        host, site, client = yield self.connect(reverse=True)
        yield self.assertRequests(client)

    @inlineCallbacks
    def test_turn_end_reactor(self):
        """
        Both halves run under the tunnel's own reactor (TurnEndReactor,
        which a gRPC half no longer trades for asyncio's) on one thread:
        no grpcio threads, no loop thread; the uhppoted client's requests
        are answered.
        """
        # each half says which reactor it installed
        command = [sys.executable, "-c", "import sys; from uhppoted_tunnel.app import cli; "
                   "install = cli.install_reactor; cli.install_reactor = lambda options: (install(options), "
                   "print('reactor', type(sys.modules['twisted.internet.reactor']).__name__, file=sys.stderr, "
                   "flush=True)); sys.exit(cli.main())"]
        host, site, client = yield self.connect(command=command)
        yield self.assertRequests(client)
        for half in (host, site):
            yield half.waitFor(r"^reactor TurnEndReactor$")
            threads = os.listdir("/proc/{}/task".format(half.pid))
            self.assertEqual(len(threads), 1, threads)

    @inlineCallbacks
    def test_epoll_reactor(self):
        """
        Both halves under Twisted's epoll reactor, chosen before the
        tunnel starts (a half otherwise runs under TurnEndReactor): the
        calls write at the end of a timed call instead of the turn's end,
        and the uhppoted client's requests are answered.
        """
        command = [sys.executable, "-c", "from twisted.internet import epollreactor; epollreactor.install(); "
                   "import sys; from uhppoted_tunnel.app.cli import main; sys.exit(main())"]
        host, site, client = yield self.connect(command=command)
        yield self.assertRequests(client)

    @inlineCallbacks
    def test_tls(self):
        """
        Site dialling host over grpcs/ with --client-auth and client
        certificates: the requests are answered.
        """
        host, site, client = yield self.connect("grpcs", server_flags=self.tls_flags("server", client_auth=True)
                                                + ["--handshake-timeout", "1s"],
                                                client_flags=self.tls_flags("client"))
        yield self.assertRequests(client)
        # a client that got its call is no refusal: nothing warned of once
        # the handshake timeout is well past
        yield deferLater(reactor, 2.5, lambda: None)
        self.assertNotIn("started no call", host.output())

    @inlineCallbacks
    def test_tls_reverse(self):
        """
        Host dialling site over grpcs/ with client certificates: the
        requests are answered.
        """
        host, site, client = yield self.connect("grpcs", reverse=True,
                                                server_flags=self.tls_flags("server", client_auth=True),
                                                client_flags=self.tls_flags("client"))
        yield self.assertDiscovers(client)
        yield self.assertUnicast(client)


class GRPCRefusalTests(_GRPCPairs, TestCase):
    """
    A client that cannot have its link says why in one warning per
    attempt, and backs off.
    """

    @inlineCallbacks
    def test_client_from_another_ca(self):
        """
        A grpcs/ client whose certificate another CA signed is refused by
        a server with --client-auth: it warns once per attempt that the
        server refused its certificate, and backs off (5 s, then 10 s);
        nothing it would relay reaches the host. Besides the two, only the
        TLS layer's own line for each refused connection is warned of (as
        for tls/).
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "grpcs/server:127.0.0.1:0",
                          *self.tls_flags("server", client_auth=True))
        port = int((yield host.waitFor(grpc_listening("grpcs"))).group(1))
        site = run_tunnel(self, "site", "--in", "grpcs/client:127.0.0.1:{}".format(port), "--out",
                          "udp/broadcast:127.0.0.1:{}".format(free_port()),
                          *self.tls_flags("client", prefix="other-", ca_prefix=""))
        first = yield site.waitFor(grpc_retrying("grpcs", port, ".*refused this end's certificate.*"))
        self.assertEqual(first.group(1), "5")
        second = yield site.waitFor(grpc_retrying("grpcs", port), since=site.mark(), timeout=20)
        self.assertEqual(second.group(1), "10")
        warnings = [line for line in site.output().splitlines() if "WARN" in line]
        retries = [line for line in warnings if "could not connect" in line]
        self.assertEqual(len(retries), 2, site.recent())
        self.assertTrue(all("TLS connection with" in line for line in warnings if line not in retries), warnings)
        self.assertNotIn("connected to", host.output())
        self.assertNotIn("Traceback", site.output() + host.output())

    @inlineCallbacks
    def test_server_warns_of_refused_clients(self):
        """
        A grpcs/ server with --client-auth warns, throttled, of the clients
        it refused (issue 25, item 11), in the TLS layer's words: one with a
        certificate from another CA, one with none at all (a plain TLS
        client); and of a client whose handshake succeeded but which
        started no call within --handshake-timeout.
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "grpcs/server:127.0.0.1:0",
                          "--handshake-timeout", "2s", *self.tls_flags("server", client_auth=True))
        port = int((yield host.waitFor(grpc_listening("grpcs"))).group(1))
        site = run_tunnel(self, "site", "--in", "grpcs/client:127.0.0.1:{}".format(port), "--out",
                          "udp/broadcast:127.0.0.1:{}".format(free_port()),
                          *self.tls_flags("client", prefix="other-", ca_prefix=""))
        yield site.waitFor(grpc_retrying("grpcs", port, ".*refused this end's certificate.*"))
        yield stop(site)
        yield host.waitFor(r"WARN\s+GRPCS\s+TLS handshake with 127\.0\.0\.1:\d+ failed: .*not signed by the CA in "
                           r"this end's --ca-cert")
        ca = self.certificates()["ca"][0]
        cert, key = self.certificates()["client"]

        def connect(with_certificate):
            context = ssl.create_default_context(cafile=ca)
            context.check_hostname = False
            context.set_alpn_protocols(["h2"])
            if with_certificate:
                context.load_cert_chain(cert, key)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
                try:
                    with context.wrap_socket(raw) as tls:
                        # an idle client reads the server's settings, then
                        # waits for the server to close it
                        while tls.recv(4096):
                            pass
                except (OSError, ssl.SSLError):
                    pass

        yield deferToThread(connect, False)
        yield host.waitFor(r"WARN\s+GRPCS\s+.*the client gave no certificate, and this server requires one")
        yield deferToThread(connect, True)
        warning = yield host.waitFor(r"WARN\s+GRPCS\s+(\d+) client connection\(s\) started no call within 2s",
                                     timeout=30)
        self.assertGreaterEqual(int(warning.group(1)), 1)
        self.assertNotIn("Traceback", host.output())

    @inlineCallbacks
    def test_client_to_tcp_server(self):
        """
        A grpc/ client dialling a tcp/server end is told it is not a gRPC
        server, and backs off; the tcp/server end says the peer looks
        like an HTTP/2 client.
        """
        host, _ = yield start_host(self, "tcp/server:127.0.0.1:0")
        port = int((yield host.waitFor(listening_line("TCP"))).group(1))
        site = run_tunnel(self, "site", "--in", "grpc/client:127.0.0.1:{}".format(port), "--out",
                          "udp/broadcast:127.0.0.1:{}".format(free_port()))
        match = yield site.waitFor(grpc_retrying("grpc", port, ".*not a gRPC server.*"))
        self.assertEqual(match.group(1), "5")
        yield host.waitFor(r"the data starts like HTTP/2: is the peer a gRPC client\?")
        self.assertNotIn("Traceback", site.output() + host.output())

    @inlineCallbacks
    def test_out_of_retries(self):
        """
        With --max-retries 0, a grpc/ client whose server does not exist
        exits 1 naming the address.
        """
        port = free_port()
        site = run_tunnel(self, "site", "--in", "grpc/client:127.0.0.1:{}".format(port), "--out",
                          "udp/broadcast:127.0.0.1:{}".format(free_port()), "--max-retries", "0")
        code = yield site.exited()
        self.assertEqual(code, 1, site.recent())
        self.assertRegex(site.output(), r"ERROR\s+GRPC\s+could not connect to 127\.0\.0\.1:{} after 1 attempt\(s\): "
                                        r"connection refused".format(port))
        self.assertNotIn("Traceback", site.output())

    @inlineCallbacks
    def test_port_in_use(self):
        """
        A grpc/server on a port another grpc/server holds exits 1 with
        "cannot listen" and the system's reason.
        """
        first = run_tunnel(self, "first", "--in", "udp/listen:127.0.0.1:0", "--out", "grpc/server:127.0.0.1:0")
        port = int((yield first.waitFor(grpc_listening())).group(1))
        second = run_tunnel(self, "second", "--in", "udp/listen:127.0.0.1:0", "--out",
                            "grpc/server:127.0.0.1:{}".format(port))
        code = yield second.exited()
        self.assertEqual(code, 1, second.recent())
        self.assertRegex(second.output(), r"cannot listen on 127\.0\.0\.1:{}: Address already in use".format(port))
        self.assertNotIn("Traceback", second.output())


class GRPCReloadTests(_GRPCPairs, TestCase):
    """
    A grpcs/ server reads its certificates again on SIGHUP.
    """

    @inlineCallbacks
    def test_sighup(self):
        """
        After its files are replaced by those of another CA and it is sent
        SIGHUP, a grpcs/ server says it reloaded them, and a client of the
        new CA connects.
        """
        folder = os.path.join(workdir(self), "live")
        os.makedirs(folder)
        live = {name: os.path.join(folder, name) for name in ("ca.cert", "server.cert", "server.key")}

        def install(files):
            for role, name in (("ca", "ca.cert"), ("server", "server.cert")):
                with open(files[role][0], "rb") as f, open(live[name], "wb") as g:
                    g.write(f.read())
            with open(files["server"][1], "rb") as f, open(live["server.key"], "wb") as g:
                g.write(f.read())

        install(self.certificates())
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "grpcs/server:127.0.0.1:0",
                          "--ca-cert", live["ca.cert"], "--cert", live["server.cert"], "--key", live["server.key"],
                          "--client-auth")
        port = int((yield host.waitFor(grpc_listening("grpcs"))).group(1))
        install(self.certificates("other-"))
        host.send_signal("HUP")
        yield host.waitFor(r"GRPCS\s+reloaded the TLS certificates: new connections use them")
        site = run_tunnel(self, "site", "--in", "grpcs/client:127.0.0.1:{}".format(port), "--out",
                          "udp/broadcast:127.0.0.1:{}".format(free_port()),
                          *self.tls_flags("client", prefix="other-", ca_prefix="other-"))
        yield site.waitFor(grpc_connected("grpcs", port))
        self.assertNotIn("Traceback", host.output() + site.output())


class GRPCProxyTests(_GRPCPairs, TestCase):
    """
    A grpc/ client reaches its server through an HTTP proxy (Debian's
    tinyproxy), as tcp/ clients do.
    """

    @inlineCallbacks
    def through(self, kind, auth=None, server_flags=(), client_flags=()):
        tinyproxy, proxy_port = yield start_tinyproxy(self, auth)
        proxy = "127.0.0.1:{}".format(proxy_port)
        if auth is not None:
            proxy = "{}:{}@{}".format(auth[0], auth[1], proxy)
        host, site, client = yield self.connect(kind, server_flags=server_flags,
                                                client_flags=["--proxy", "http://" + proxy] + list(client_flags))
        port = int(re.search(grpc_listening(kind), host.output(), re.M).group(1))
        yield tinyproxy.waitFor(connect_line(port))
        self.assertRegex(site.output(), r"INFO\s+{}\s+dialling 127\.0\.0\.1:{} through HTTP proxy 127\.0\.0\.1:{} "
                                        r"\(--proxy\)".format(kind.upper(), port, proxy_port))
        yield self.assertDiscovers(client)
        yield self.assertUnicast(client)

    def test_plain(self):
        """
        A grpc/ site given --proxy dials its host through it, and relays.
        """
        return self.through("grpc")

    def test_tls_basic_auth(self):
        """
        A grpcs/ site dials through a proxy that wants a password, TLS
        end to end through the tunnel the proxy opens.
        """
        return self.through("grpcs", (USER, PASSWORD), self.tls_flags("server", client_auth=True),
                            self.tls_flags("client"))


class GRPCLimitTests(_GRPCPairs, TestCase):
    """
    What a gRPC server end bounds, it says when it bites.
    """

    @inlineCallbacks
    def test_idleFloodDoesNotLockOut(self):
        """
        Idle TCP connections from one address (that never speak HTTP/2)
        meet the end's own caps: past --max-connections-per-source they are
        refused with a warning naming the flag, and a real client from
        another address is served while they stay open.
        """
        emulator, emulator_port = yield start_emulator(self, A)
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "grpc/server:127.0.0.1:0",
                          "--max-connections", "20", "--max-connections-per-source", "10",
                          "--handshake-timeout", "60s")
        port = int((yield host.waitFor(grpc_listening())).group(1))
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        idle = []
        self.addCleanup(lambda: [sock.close() for sock in idle])
        for _ in range(110):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            idle.append(sock)
            sock.bind(("127.0.0.2", 0))
            sock.settimeout(5)
            try:
                sock.connect(("127.0.0.1", port))
            except OSError:
                pass
        yield host.waitFor(r"WARN\s+GRPC\s+refused \d+ connection\(s\), the last from 127\.0\.0\.2:\d+: 10 open "
                           r"connections from 127\.0\.0\.2 already \(--max-connections-per-source")
        site = run_tunnel(self, "site", "--in", "grpc/client:127.0.0.1:{}".format(port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s")
        yield site.waitFor(grpc_connected("grpc", port), timeout=8)
        reply = yield Client(udp_port).get_controller(A, timeout=3.0)
        self.assertEqual(reply.controller, A)
        self.assertNotIn("Traceback", host.output())

    @inlineCallbacks
    def test_max_connections(self):
        """
        A server with --max-connections 1 refuses a second client's call:
        the server warns, naming the cap, and the client is told why and
        backs off; the first link carries on.
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "grpc/server:127.0.0.1:0",
                          "--max-connections", "1")
        port = int((yield host.waitFor(grpc_listening())).group(1))
        out = "udp/broadcast:127.0.0.1:{}".format(free_port())
        first = run_tunnel(self, "first", "--in", "grpc/client:127.0.0.1:{}".format(port), "--out", out)
        yield first.waitFor(grpc_connected("grpc", port))
        second = run_tunnel(self, "second", "--in", "grpc/client:127.0.0.1:{}".format(port), "--out", out)
        yield second.waitFor(grpc_retrying("grpc", port, "the server refused the link: too many connections"))
        yield host.waitFor(r"WARN\s+GRPC\s+refused 1 connection\(s\), the last from 127\.0\.0\.1:\d+: 1 open "
                           r"connections already \(--max-connections; 1 open\)")
        self.assertNotIn("closed", first.output())

    @inlineCallbacks
    def test_peer_not_reading(self):
        """
        A peer that takes the call and then reads nothing: what the host
        would send it past --max-send-queue is dropped with a warning, and
        after --stall-timeout the call is ended with another.
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "grpc/server:127.0.0.1:0",
                          "--max-send-queue", "1024", "--stall-timeout", "2s", "--rate-limit", "100000",
                          "--rate-limit-burst", "100000")
        port = int((yield host.waitFor(grpc_listening())).group(1))
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        script = os.path.join(workdir(self), "deaf.py")
        with open(script, "w") as f:
            f.write(DEAF)
        deaf = spawn(self, [sys.executable, script, "127.0.0.1:{}".format(port)], "deaf")
        yield host.waitFor(grpc_connected())
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(sender.close)
        request = bytes([0x17, 0x94, 0, 0]) + A.to_bytes(4, "little") + bytes(56)
        stalled = host.waitFor(r"closed 1 connection\(s\) that read nothing")
        # at a pace the host keeps up with, until its writes wait for the
        # peer (64 KiB on) and what is queued passes the limit
        for _ in range(1000):
            if stalled.called:
                break
            for _ in range(10):
                sender.sendto(request, ("127.0.0.1", udp_port))
            yield deferLater(reactor, 0.01, lambda: None)
        yield stalled
        yield host.waitFor(r"WARN\s+GRPC\s+dropped \d+ frame\(s\) for peers that are not reading what is sent "
                           r"to them \(--max-send-queue 1024 bytes each\)")
        yield host.waitFor(r"WARN\s+GRPC\s+closed 1 connection\(s\) that read nothing sent to them for 2s, the "
                           r"last to 127\.0\.0\.1:\d+ \(--stall-timeout\)")
        yield host.waitFor(r"GRPC\s+connection to 127\.0\.0\.1:\d+ closed")
        self.assertTrue(deaf.running)
        self.assertNotIn("Traceback", host.output())

    @inlineCallbacks
    def test_dead_peer(self):
        """
        A host that stops answering (SIGSTOP) is noticed by its site's
        keepalive pings within --dead-peer-timeout, and the site dials
        again.
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "grpc/server:127.0.0.1:0")
        port = int((yield host.waitFor(grpc_listening())).group(1))
        site = run_tunnel(self, "site", "--in", "grpc/client:127.0.0.1:{}".format(port), "--out",
                          "udp/broadcast:127.0.0.1:{}".format(free_port()), "--dead-peer-timeout", "4s")
        yield site.waitFor(grpc_connected("grpc", port))
        mark = site.mark()
        host.send_signal(signal.SIGSTOP)
        self.addCleanup(host.send_signal, signal.SIGCONT)
        started = reactor.seconds()
        yield site.waitFor(r"GRPC\s+connection to 127\.0\.0\.1:{} closed".format(port), since=mark, timeout=15)
        self.assertLess(reactor.seconds() - started, 8)
        yield site.waitFor(r"GRPC\s+reconnecting to 127\.0\.0\.1:{} in 5s".format(port), since=mark)


class GRPCShutdownTests(_GRPCPairs, TestCase):
    """
    SIGTERM stops each half cleanly: exit 0, no traceback, lockfile
    removed.
    """

    @inlineCallbacks
    def test_sigterm_server_then_client(self):
        """
        SIGTERM stops a connected host (the server), then the site while
        it waits to dial again.
        """
        host, site, client = yield self.connect()
        mark = site.mark()
        yield self.assertCleanStop(host, "TERM", lockfile(self, "host"))
        yield site.waitFor(r"GRPC\s+reconnecting to 127\.0\.0\.1:\d+ in 5s", since=mark)
        yield self.assertCleanStop(site, "TERM", lockfile(self, "site"))

    @inlineCallbacks
    def test_sigterm_client_then_server(self):
        """
        SIGTERM stops a connected site (the client), then the host, over
        grpcs/.
        """
        host, site, client = yield self.connect("grpcs", server_flags=self.tls_flags("server", client_auth=True),
                                                client_flags=self.tls_flags("client"))
        yield self.assertCleanStop(site, "TERM", lockfile(self, "site"))
        yield host.waitFor(r"GRPCS\s+connection to 127\.0\.0\.1:\d+ closed")
        yield self.assertCleanStop(host, "TERM", lockfile(self, "host"))


class GRPCEventTests(EventTunnels, TestCase):
    """
    An event tunnel over gRPC loses nothing across a restart of one half.
    """

    timeout = 120

    @inlineCallbacks
    def test_host_killed(self):
        """
        Over grpc/, a host killed (SIGKILL) while events stream, with
        events sent to it and not acknowledged, and started again on the
        same port with the same lockfile (and so the same record of what
        it forwarded), is dialled again by the site, which sends what was
        not acknowledged: each of the 200 events arrives exactly once,
        those after the restart in order.
        """
        host = self.host("grpc/server:127.0.0.1:0")
        port = int((yield host.waitFor(grpc_listening())).group(1))
        site = self.site(0, "grpc/client:127.0.0.1:{}".format(port), "--debug")
        yield site.waitFor(grpc_connected("grpc", port))
        site_port = yield self.site_port(site)
        emulator_process, _ = yield start_event_emulator(self, site_port, COUNT, "20ms", serials=[EVENT_CONTROLLER])
        yield self.events.waitForCount(50)
        # killed at a moment when it has recorded every event it forwarded
        # (a host killed in between forwards that one again, on any
        # transport)
        yield self.freeze(host, site)
        mark = site.mark()
        host.send_signal("KILL")
        yield host.exited()
        before = len(self.events.keys)
        self.assertLess(before, COUNT)
        host = self.host("grpc/server:127.0.0.1:{}".format(port), name="host")
        yield host.waitFor(grpc_listening())
        yield site.waitFor(grpc_connected("grpc", port), since=mark)
        yield emulator_process.waitFor(emulator_sent_line(COUNT))
        yield self.events.waitForKey((EVENT_CONTROLLER, COUNT))
        yield self.finish(site_port)
        received = self.events.of(EVENT_CONTROLLER)
        self.assertEqual(sorted(received), list(range(1, COUNT + 1)), "lost or duplicated events")
        after = [index for serial, index in self.events.keys[before:] if serial == EVENT_CONTROLLER]
        self.assertEqual(after, sorted(after), "events after the restart out of order")
        self.assertNotIn("Traceback", site.output() + host.output())


class InteropTests(TestCase):
    """
    Any gRPC stack can speak to a tunnel half from the shipped .proto.
    """

    timeout = 60

    @inlineCallbacks
    def stubs(self):
        """
        :return: a Deferred firing with a new folder holding what
            grpc_tools generates from the shipped .proto.
        """
        out = os.path.abspath(self.mktemp())
        os.makedirs(out)
        proto = os.path.abspath(PROTO)
        stdout, stderr, code = yield getProcessOutputAndValue(sys.executable, [
            "-m", "grpc_tools.protoc", "-I", os.path.dirname(proto), "--python_out", out, "--grpc_python_out", out,
            os.path.basename(proto)], env=dict(os.environ))
        self.assertEqual(code, 0, stderr)
        return out

    @inlineCallbacks
    def test_generated_stubs(self):
        """
        A plain grpcio client, with stubs that grpc_tools generates from
        the shipped tunnel.proto and no tunnel code, calls Relay on a
        site's grpc/server in end with a get-controller request in a
        Frame, and gets controller A's reply back with the request's id.
        """
        emulator_process, emulator_port = yield start_emulator(self, A, B)
        site = start_site(self, "grpc/server:127.0.0.1:0", emulator_port)
        port = int((yield site.waitFor(grpc_listening())).group(1))
        out = yield self.stubs()
        script = os.path.join(out, "client.py")
        with open(script, "w") as f:
            f.write(CLIENT)
        request = bytes([0x17, 0x94, 0, 0]) + A.to_bytes(4, "little") + bytes(56)
        stdout, stderr, code = yield getProcessOutputAndValue(
            sys.executable, [script, "127.0.0.1:{}".format(port), request.hex()], path=out,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": out})
        self.assertEqual(code, 0, stderr)
        frame_id, reply = stdout.decode().split()
        reply = bytes.fromhex(reply)
        self.assertEqual((int(frame_id), reply[:2], int.from_bytes(reply[4:8], "little")), (77, b"\x17\x94", A))

    @inlineCallbacks
    def test_generated_stubs_relays(self):
        """
        The same client calls Relays with a get-controller request for
        each controller in one Frames, and gets both replies back, each
        with its request's id.
        """
        emulator_process, emulator_port = yield start_emulator(self, A, B)
        site = start_site(self, "grpc/server:127.0.0.1:0", emulator_port)
        port = int((yield site.waitFor(grpc_listening())).group(1))
        out = yield self.stubs()
        script = os.path.join(out, "client.py")
        with open(script, "w") as f:
            f.write(BATCH_CLIENT)
        requests = [bytes([0x17, 0x94, 0, 0]) + serial.to_bytes(4, "little") + bytes(56) for serial in (A, B)]
        stdout, stderr, code = yield getProcessOutputAndValue(
            sys.executable, [script, "127.0.0.1:{}".format(port)] + [r.hex() for r in requests], path=out,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": out})
        self.assertEqual(code, 0, stderr)
        replies = {}
        for line in stdout.decode().splitlines():
            frame_id, reply = line.split()
            replies[int(frame_id)] = bytes.fromhex(reply)
        self.assertEqual({frame_id: (reply[:2], int.from_bytes(reply[4:8], "little"))
                          for frame_id, reply in replies.items()}, {77: (b"\x17\x94", A), 78: (b"\x17\x94", B)})

    @inlineCallbacks
    def test_server_without_relays(self):
        """
        A client end whose server serves Relay alone (a tunnel from before
        Relays: here a server from the generated stubs that sends every
        frame back) takes the link over Relay: a request sent through it
        comes back.
        """
        out = yield self.stubs()
        script = os.path.join(out, "server.py")
        with open(script, "w") as f:
            f.write(OLD_SERVER)
        server = spawn(self, [sys.executable, script], "old-server", env={"PYTHONPATH": out})
        port = int((yield server.waitFor(r"^listening (\d+)$")).group(1))
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out",
                          "grpc/client:127.0.0.1:{}".format(port))
        yield host.waitFor(grpc_connected("grpc", port))
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        request = bytes([0x17, 0x94, 0, 0]) + A.to_bytes(4, "little") + bytes(56)
        echoed = yield deferToThread(_udp_exchange, udp_port, request)
        self.assertEqual(echoed, request)
        self.assertFalse(re.search(r"\bWARN\b.*GRPC", host.output()), host.output())

    @inlineCallbacks
    def relay_through_grpcio(self, secure):
        """
        A client end (grpcs/ with certificates if C{secure}) relays through
        a plain grpcio server serving Relays from the generated stubs,
        which sends every frame back: a request comes back through it, and
        the link is a Relays call.
        """
        out = yield self.stubs()
        script = os.path.join(out, "server.py")
        with open(script, "w") as f:
            f.write(RELAYS_SERVER)
        args, flags = [], []
        if secure:
            files = certs.make(os.path.join(os.path.abspath(self.mktemp()), "certs"))
            args = [files["ca"][0], files["server"][0], files["server"][1]]
            flags = ["--ca-cert", files["ca"][0], "--cert", files["client"][0], "--key", files["client"][1]]
        server = spawn(self, [sys.executable, script] + args, "relays-server", env={"PYTHONPATH": out})
        port = int((yield server.waitFor(r"^listening (\d+)$")).group(1))
        kind = "grpcs" if secure else "grpc"
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out",
                          "{}/client:127.0.0.1:{}".format(kind, port), *flags)
        yield host.waitFor(grpc_connected(kind, port))
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        request = bytes([0x17, 0x94, 0, 0]) + A.to_bytes(4, "little") + bytes(56)
        echoed = yield deferToThread(_udp_exchange, udp_port, request)
        self.assertEqual(echoed, request)
        yield server.waitFor(r"^Relays$")
        self.assertFalse(re.search(r"\bWARN\b.*GRPC", host.output()), host.output())

    def test_client_through_grpcio(self):
        """
        The tunnel's client end relays through a plain grpcio server
        serving Relays.
        """
        return self.relay_through_grpcio(False)

    def test_client_through_grpcio_tls(self):
        """
        The same over TLS (grpcs/, with a client certificate, ALPN h2 and
        the server-name check).
        """
        return self.relay_through_grpcio(True)

    @inlineCallbacks
    def test_generated_stubs_tls(self):
        """
        A plain grpcio client over TLS (a client certificate, ALPN h2)
        calls Relay on a site's grpcs/server in end with --client-auth and
        gets controller A's reply back with the request's id.
        """
        emulator_process, emulator_port = yield start_emulator(self, A, B)
        files = certs.make(os.path.join(os.path.abspath(self.mktemp()), "certs"))
        site = start_site(self, "grpcs/server:127.0.0.1:0", emulator_port, "--ca-cert", files["ca"][0], "--cert",
                          files["server"][0], "--key", files["server"][1], "--client-auth")
        port = int((yield site.waitFor(grpc_listening("grpcs"))).group(1))
        out = yield self.stubs()
        script = os.path.join(out, "client.py")
        with open(script, "w") as f:
            f.write(CLIENT)
        request = bytes([0x17, 0x94, 0, 0]) + A.to_bytes(4, "little") + bytes(56)
        stdout, stderr, code = yield getProcessOutputAndValue(
            sys.executable, [script, "127.0.0.1:{}".format(port), request.hex(), files["ca"][0], files["client"][0],
                             files["client"][1]], path=out,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": out})
        self.assertEqual(code, 0, stderr)
        frame_id, reply = stdout.decode().split()
        reply = bytes.fromhex(reply)
        self.assertEqual((int(frame_id), reply[:2], int.from_bytes(reply[4:8], "little")), (77, b"\x17\x94", A))


def _udp_exchange(port, request):
    """
    Send C{request} to C{port} on 127.0.0.1 and return what comes back.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(10)
        s.sendto(request, ("127.0.0.1", port))
        return s.recvfrom(2048)[0]


#: A client of the Tunnel service that knows nothing of the tunnel but the
#: generated stubs: sends one Frames of a Frame per request, prints the id
#: and payload of each frame back until it has one a request.
BATCH_CLIENT = '''
import sys
import threading

import grpc

import tunnel_pb2
import tunnel_pb2_grpc

answered = threading.Event()
requests = sys.argv[2:]


def batches():
    yield tunnel_pb2.Frames(frames=[tunnel_pb2.Frame(id=77 + i, payload=bytes.fromhex(r))
                                    for i, r in enumerate(requests)])
    answered.wait(10)


with grpc.insecure_channel(sys.argv[1]) as channel:
    seen = 0
    for batch in tunnel_pb2_grpc.TunnelStub(channel).Relays(batches(), timeout=10):
        for frame in batch.frames:
            print(frame.id, frame.payload.hex())
            seen += 1
        if seen >= len(requests):
            break
    answered.set()
'''


#: A server of the Tunnel service as a tunnel from before Relays served
#: it (Relay alone, from the generated messages), which sends every frame
#: back as it comes.
OLD_SERVER = '''
import sys
from concurrent import futures

import grpc

import tunnel_pb2


def relay(frames, context):
    # a tunnel's server end answers with its headers once it has the link
    context.send_initial_metadata(())
    for frame in frames:
        yield tunnel_pb2.Frame(id=frame.id, payload=frame.payload)


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
handler = grpc.stream_stream_rpc_method_handler(relay, request_deserializer=tunnel_pb2.Frame.FromString,
                                                response_serializer=tunnel_pb2.Frame.SerializeToString)
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("uhppoted.tunnel.Tunnel", {"Relay": handler}),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("listening", port, flush=True)
server.wait_for_termination(120)
'''


#: A server of the Tunnel service from the generated stubs alone, serving
#: Relays (and Relay), which sends every frame back as it comes, and says
#: which method was called; over TLS with a CA, certificate and key given.
RELAYS_SERVER = '''
import sys
from concurrent import futures

import grpc

import tunnel_pb2
import tunnel_pb2_grpc


class Tunnel(tunnel_pb2_grpc.TunnelServicer):
    def Relays(self, batches, context):
        print("Relays", flush=True)
        context.send_initial_metadata(())
        for batch in batches:
            yield tunnel_pb2.Frames(frames=batch.frames)

    def Relay(self, frames, context):
        print("Relay", flush=True)
        context.send_initial_metadata(())
        for frame in frames:
            yield frame


server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
tunnel_pb2_grpc.add_TunnelServicer_to_server(Tunnel(), server)
if len(sys.argv) > 1:
    ca, cert, key = (open(path, "rb").read() for path in sys.argv[1:4])
    credentials = grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=True)
    port = server.add_secure_port("127.0.0.1:0", credentials)
else:
    port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("listening", port, flush=True)
server.wait_for_termination(120)
'''


#: A client that takes the call and never reads what it is sent (with the
#: window a tunnel's end keeps: 64 KiB).
DEAF = '''
import sys
import threading

import grpc

with grpc.insecure_channel(sys.argv[1], options=[("grpc.http2.bdp_probe", 0)]) as channel:
    call = channel.stream_stream("/uhppoted.tunnel.Tunnel/Relay")(iter(threading.Event().wait, True))
    call.initial_metadata()
    threading.Event().wait(120)
'''


#: A client of the Tunnel service that knows nothing of the tunnel but the
#: generated stubs: sends one Frame, prints the id and payload of the
#: first one back.
CLIENT = '''
import sys
import threading

import grpc

import tunnel_pb2
import tunnel_pb2_grpc

answered = threading.Event()


def requests():
    yield tunnel_pb2.Frame(id=77, payload=bytes.fromhex(sys.argv[2]))
    # the link lasts while the stream is open
    answered.wait(10)




def channel():
    if len(sys.argv) == 3:
        return grpc.insecure_channel(sys.argv[1])
    # over TLS: the CA, this client's certificate and key
    ca, cert, key = (open(path, "rb").read() for path in sys.argv[3:6])
    return grpc.secure_channel(sys.argv[1], grpc.ssl_channel_credentials(ca, key, cert))


with channel() as channel:
    replies = tunnel_pb2_grpc.TunnelStub(channel).Relay(requests(), timeout=10)
    reply = next(replies)
    answered.set()
    print(reply.id, reply.payload.hex())
'''
