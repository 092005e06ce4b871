"""
The TLS connectors for real: tunnels on 127.0.0.1 in this process, the
command line, and the certificate recipe of docs/howto/tls.rst.
"""

import os
import re
import sys

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.threads import deferToThread
from twisted.internet.utils import getProcessOutputAndValue
from twisted.trial.unittest import TestCase

from tests import certs
from tests.tools import require
from uhppoted_tunnel import emulator
from uhppoted_tunnel.app import config
from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.testing import LogWatcher
from uhppoted_tunnel.app.tunnel import TunnelService

SERIALS = emulator.DEFAULT_SERIALS
RECIPE = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "docs", "howto", "tls.rst")


def settings(**values):
    base = {"ca-cert": None, "cert": None, "key": None, "client-auth": False}
    base.update(values)
    return base


class Silent(Protocol):
    """
    Connects and says nothing.
    """

    def __init__(self):
        self.lost = Deferred()

    def connectionLost(self, reason):
        self.lost.callback(None)


class TLSTunnelTests(TestCase):
    timeout = 60

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.files = certs.make(self.mktemp())
        self.other = certs.make(self.mktemp(), prefix="other-")
        self.log = LogWatcher()
        self.addCleanup(self.log.stop)
        self.controllers = emulator.listen(reactor, [emulator.Controller(serial) for serial in SERIALS])
        self.addCleanup(self.controllers.stopListening)

    def tunnel(self, *args):
        options = Options()
        options.parseOptions(list(args) + ["--rate-limit", "1000", "--ca-cert", self.files["ca"][0]])
        service = TunnelService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    def identity(self, role, files=None):
        cert, key = (files or self.files)[role]
        return ["--cert", cert, "--key", key]

    @inlineCallbacks
    def host(self, out, *args):
        host = self.tunnel("--in", "udp/listen:127.0.0.1:0", "--out", out, *args)
        if "/server:" in out:
            port = yield host.out.whenListening()
            host.stream_port = port.getHost().port
        return host

    def site(self, in_, *args):
        return self.tunnel("--in", in_, "--out", "udp/broadcast:127.0.0.1:{}".format(self.controllers.getHost().port),
                           "--udp-timeout", "1s", *args)

    def discover(self, host):
        from uhppoted.uhppote import Uhppote

        client = Uhppote(bind="127.0.0.1", broadcast="127.0.0.1:{}".format(host.in_.port.getHost().port),
                         listen="127.0.0.1:0")
        return deferToThread(client.get_all_controllers, timeout=1.5)

    @inlineCallbacks
    def test_mutualAuth(self):
        """
        A TLS tunnel with client authentication carries the uhppoted client's
        requests.
        """
        host = yield self.host("tls/server:127.0.0.1:0", "--client-auth", *self.identity("server"))
        self.site("tls/client:127.0.0.1:{}".format(host.stream_port), *self.identity("client"))
        yield self.log.waitFor("connected to", reactor)
        replies = yield self.discover(host)
        self.assertEqual(sorted(r.controller for r in replies), sorted(SERIALS))

    @inlineCallbacks
    def test_reverseWithoutClientCertificate(self):
        """
        Without --client-auth a client that has no certificate is accepted;
        the reverse arrangement (host dials the site) works over TLS.
        """
        site = self.site("tls/server:127.0.0.1:0", *self.identity("server"))
        port = yield site.in_.whenListening()
        host = yield self.host("tls/client:127.0.0.1:{}".format(port.getHost().port))
        yield self.log.waitFor("connected to", reactor)
        replies = yield self.discover(host)
        self.assertEqual(sorted(r.controller for r in replies), sorted(SERIALS))

    @inlineCallbacks
    def test_clientFromAnotherCA(self):
        """
        A client whose certificate comes from another CA is refused, the
        refusal is logged with OpenSSL's reason, and nothing it sends
        reaches a controller.
        """
        host = yield self.host("tls/server:127.0.0.1:0", "--client-auth", *self.identity("server"))
        site = self.site("tls/client:127.0.0.1:{}".format(host.stream_port), *self.identity("client", self.other))
        yield self.log.waitFor("TLS handshake with", reactor)
        yield self.log.waitFor("retrying in 5s", reactor)
        failures = [m for m in self.log.messages() if "handshake" in m and "failed" in m]
        self.assertTrue(any("certificate" in m for m in failures), failures)
        self.assertEqual(host.out.connections, [])
        self.assertEqual(site.in_.failures, 1)
        self.assertEqual(self.controllers.protocol.received, 0)

    @inlineCallbacks
    def test_tlsClientToPlainServer(self):
        """
        A TLS client dialling a plain TCP server: the server says the peer
        seems to be using TLS and drops it; the client retries with its
        backoff.
        """
        host = yield self.host("tcp/server:127.0.0.1:0")
        self.site("tls/client:127.0.0.1:{}".format(host.stream_port))
        yield self.log.waitFor("is the peer using TLS?", reactor)
        yield self.log.waitFor("retrying in 5s", reactor)

    @inlineCallbacks
    def test_plainClientToTLSServer(self):
        """
        A plain TCP client dialling a TLS server sends no handshake: the
        server drops it when the handshake timeout runs out, and says why.
        """
        host = yield self.host("tls/server:127.0.0.1:0", "--handshake-timeout", "500ms", *self.identity("server"))
        self.site("tcp/client:127.0.0.1:{}".format(host.stream_port))
        event = yield self.log.waitFor("timed out after 0.5s: is the peer a plain TCP connector?", reactor)
        self.assertEqual(event["log_tag"] if "log_tag" in event else event["log_source"].log_tag, "TLS")

    @inlineCallbacks
    def test_silentPeerDropped(self):
        """
        A peer that connects and says nothing is dropped when the handshake
        timeout runs out.
        """
        from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol

        host = yield self.host("tls/server:127.0.0.1:0", "--handshake-timeout", "500ms", *self.identity("server"))
        silent = Silent()
        yield connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", host.stream_port), silent)
        yield silent.lost
        yield self.log.waitFor("is the peer a plain TCP connector?", reactor)

    @inlineCallbacks
    def test_silentServerCountsAsFailedAttempt(self):
        """
        A TLS client whose server never answers the handshake gives up on
        it after the timeout and counts a failed attempt: with
        --max-retries 0 the tunnel stops with an error naming the address.
        """
        listening = reactor.listenTCP(0, Factory.forProtocol(Silent), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        address = "127.0.0.1:{}".format(listening.getHost().port)
        options = Options()
        options.parseOptions(["--in", "tls/client:" + address, "--out", "udp/broadcast:127.0.0.1:60005",
                              "--ca-cert", self.files["ca"][0], "--max-retries", "0", "--handshake-timeout", "500ms"])
        site = TunnelService(options, reactor)
        failed = Deferred()
        site.on_failure = failed.callback
        site.startService()
        self.addCleanup(site.stopService)
        message = yield failed
        self.assertEqual(message, "could not connect to {} after 1 attempt(s): TLS handshake timed out after "
                                  "0.5s".format(address))


class CommandLineTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_missingCertificateExits2(self):
        """
        The command with a missing certificate prints one line naming the
        file and exits 2 before listening.
        """
        directory = self.mktemp()
        files = certs.make(directory)
        out, err, code = yield getProcessOutputAndValue(
            sys.executable,
            ["-m", "uhppoted_tunnel.app.cli", "--in", "udp/listen:127.0.0.1:0", "--out", "tls/server:127.0.0.1:0",
             "--ca-cert", files["ca"][0], "--cert", os.path.join(directory, "missing.cert"),
             "--lockfile", os.path.join(directory, "lock.pid")],
            env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
        )
        self.assertEqual(code, 2, (out, err))
        self.assertEqual(err.decode().splitlines(), [
            "uhppoted-tunnel: --cert '{}': No such file or directory".format(os.path.join(directory, "missing.cert"))])
        self.assertNotIn(b"listening", out)


class RecipeTests(TestCase):
    timeout = 60

    @inlineCallbacks
    def test_readmeRecipe(self):
        """
        The documentation's openssl recipe makes certificates that the TLS ends
        load and that verify each other.
        """
        require("openssl", "openssl")
        with open(RECIPE) as f:
            text = f.read()
        recipe = re.search(r"\.\. begin certificate recipe\n(.*?)\.\. end certificate recipe", text, re.S).group(1)
        commands = "\n".join(line[4:] for line in recipe.splitlines() if line.startswith("    "))
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        out, err, code = yield getProcessOutputAndValue("/bin/bash", ["-e", "-c", commands], path=directory,
                                                        env=dict(os.environ))
        self.assertEqual(code, 0, err)
        path = lambda name: os.path.join(directory, name)  # noqa: E731
        server = tls.server_options(settings(**{"ca-cert": path("ca.cert"), "cert": path("server.cert"),
                                                "key": path("server.key"), "client-auth": True}))
        client = tls.client_options(settings(**{"ca-cert": path("ca.cert"), "cert": path("client.cert"),
                                                "key": path("client.key")}), "127.0.0.1")
        yield _handshake(server, client)


def _handshake(server_options, client_options):
    """
    Complete a TLS handshake over loopback between the two contexts.
    """
    from twisted.internet.endpoints import (
        TCP4ClientEndpoint,
        TCP4ServerEndpoint,
        connectProtocol,
        wrapClientTLS,
    )
    from twisted.internet.interfaces import IHandshakeListener
    from zope.interface import implementer

    @implementer(IHandshakeListener)
    class Shake(Protocol):
        def __init__(self):
            self.done = Deferred()

        def handshakeCompleted(self):
            self.done.callback(None)
            self.transport.loseConnection()

    from uhppoted_tunnel.transports.tls.secure import SecureServerEndpoint

    server = SecureServerEndpoint(TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1"), lambda: server_options, reactor, 15)

    @inlineCallbacks
    def run():
        port = yield server.listen(Factory.forProtocol(Protocol))
        try:
            client = Shake()
            closed = Deferred()
            client.connectionLost = lambda reason: closed.callback(None)
            endpoint = wrapClientTLS(client_options, TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port))
            yield connectProtocol(endpoint, client)
            yield client.done
            yield closed
        finally:
            yield port.stopListening()

    return run()
