"""
Tests for L{uhppoted_tunnel.transports.tls.certs} with no sockets: certificates and keys.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from tests import certs
from uhppoted_tunnel import emulator
from uhppoted_tunnel.transports.tls import certs as tls

SERIALS = emulator.DEFAULT_SERIALS
README = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "README.rst")


def settings(**values):
    base = {"ca-cert": None, "cert": None, "key": None, "client-auth": False}
    base.update(values)
    return base


class CertificateTests(SynchronousTestCase):
    def setUp(self):
        self.files = certs.make(self.mktemp())
        self.other = certs.make(self.mktemp(), prefix="other-")

    def test_missingFile(self):
        """
        A missing certificate is a one-line error naming the flag and file.
        """
        e = self.assertRaises(ValueError, tls.server_options, settings(**{"ca-cert": self.files["ca"][0],
                                                                         "cert": "nosuch.cert", "key": "x.key"}))
        self.assertEqual(str(e), "--cert 'nosuch.cert': No such file or directory")

    def test_notPEM(self):
        """
        A file that is not a certificate is named.
        """
        e = self.assertRaises(ValueError, tls.load_ca, self.files["ca"][1])
        self.assertIn("not a PEM certificate", str(e))

    def test_mismatchedKey(self):
        """
        A key that does not belong to the certificate is refused, naming
        both files.
        """
        cert, _ = self.files["server"]
        _, key = self.other["server"]
        e = self.assertRaises(ValueError, tls.load_identity, cert, key)
        self.assertEqual(str(e), "--key '{}' does not match --cert '{}': give the key the certificate was made "
                                 "for (or make a certificate for this key)".format(key, cert))

    def test_serverDefaults(self):
        """
        A server's certificate and key default to server.cert and
        server.key.
        """
        e = self.assertRaises(ValueError, tls.server_options, settings(**{"ca-cert": self.files["ca"][0]}))
        self.assertIn("'server.cert'", str(e))

    def test_policy(self):
        """
        The server context refuses anything older than TLS 1.2, and offers
        only forward-secret AEAD ciphers.
        """
        from OpenSSL import SSL

        cert, key = self.files["server"]
        options = tls.server_options(settings(**{"ca-cert": self.files["ca"][0], "cert": cert, "key": key}))
        context = options.getContext()
        current = context.set_options(0)
        connection = SSL.Connection(context, None)
        for name in connection.get_cipher_list():
            if not name.startswith("TLS_"):
                self.assertTrue(name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name), name)
        self.assertTrue(current & SSL.OP_NO_TLSv1_1)
        self.assertTrue(current & SSL.OP_NO_RENEGOTIATION)
        self.assertTrue(current & SSL.OP_NO_COMPRESSION)


def handshake(server_context, offered):
    """
    A TLS handshake in memory between a server context and a client that
    offers C{offered} over ALPN.

    :return: the protocol the server chose (C{b""} for none).
    :raise SSL.Error: if the handshake fails.
    """
    from OpenSSL import SSL

    client_context = SSL.Context(SSL.TLS_METHOD)
    client_context.set_alpn_protos(offered)
    client = SSL.Connection(client_context, None)
    client.set_connect_state()
    server = SSL.Connection(server_context, None)
    server.set_accept_state()
    done = {client: False, server: False}
    for _ in range(20):
        for connection in (client, server):
            if not done[connection]:
                try:
                    connection.do_handshake()
                    done[connection] = True
                except SSL.WantReadError:
                    pass
        for source, sink in ((client, server), (server, client)):
            try:
                sink.bio_write(source.bio_read(65536))
            except SSL.WantReadError:
                pass
        if all(done.values()):
            return server.get_alpn_proto_negotiated()
    raise AssertionError("handshake did not finish")


class ALPNTests(SynchronousTestCase):
    """
    A server end never aborts a handshake over ALPN.
    """

    def setUp(self):
        self.files = certs.make(self.mktemp())
        cert, key = self.files["server"]
        self.settings = settings(**{"ca-cert": self.files["ca"][0], "cert": cert, "key": key})

    def test_streamServerDeclines(self):
        """
        A tls/server end (no protocols) completes a handshake with a client
        offering h2 and http/1.1, choosing none (Twisted's own callback
        answered an empty name, which OpenSSL 3 turns into alert 80).
        """
        context = tls.server_options(self.settings).getContext()
        self.assertEqual(handshake(context, [b"h2", b"http/1.1"]), b"")

    def test_httpsChoosesHTTP11(self):
        """
        An https/ end chooses http/1.1 from a browser's offer.
        """
        context = tls.server_options(self.settings, [b"http/1.1"]).getContext()
        self.assertEqual(handshake(context, [b"h2", b"http/1.1"]), b"http/1.1")

    def test_httpsNothingInCommon(self):
        """
        A client offering only protocols the end does not speak is served
        without ALPN rather than refused.
        """
        context = tls.server_options(self.settings, [b"http/1.1"]).getContext()
        self.assertEqual(handshake(context, [b"h2"]), b"")

    def test_selector(self):
        """
        L{tls.alpn_selector} prefers the server's order.
        """
        from OpenSSL import SSL

        select = tls.alpn_selector([b"http/1.1", b"h2"])
        self.assertEqual(select(None, [b"h2", b"http/1.1"]), b"http/1.1")
        self.assertIs(select(None, [b"spdy/3"]), SSL.NO_OVERLAPPING_PROTOCOLS)


class CertificateWatchTests(SynchronousTestCase):
    """
    L{CertificateWatch} warns of a certificate near or past its end: at
    start, and a week before the end while the tunnel runs.
    """

    DAY = 86400.0

    def setUp(self):
        from twisted.internet.task import Clock
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        self.clock = Clock()
        self.clock.advance(1000 * self.DAY)
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)

    def watch(self, *days):
        from uhppoted_tunnel.transports.tls.secure import CertificateWatch

        certificates = [("--cert", "c{}.cert".format(n), self.clock.seconds() + d * self.DAY)
                        for n, d in enumerate(days)]
        watch = CertificateWatch(certificates, self.clock, "TLS")
        watch.startService()
        return watch

    def warnings(self):
        return [e for e in self.logged if e["log_level"].name == "warn"]

    def test_nearAtStart(self):
        """
        A certificate that expires within a week, or has expired, is
        warned of at start.
        """
        self.watch(3, -1)
        [soon, past] = self.warnings()
        self.assertEqual((soon["path"], round(soon["days"])), ("c0.cert", 3))
        self.assertIn("expired", past["log_format"])

    def test_aWeekBefore(self):
        """
        A certificate with 30 days left is warned of 23 days later, once.
        """
        watch = self.watch(30)
        self.assertEqual(self.warnings(), [])
        self.clock.advance(23 * self.DAY - 1)
        self.assertEqual(self.warnings(), [])
        self.clock.advance(1)
        self.assertEqual(len(self.warnings()), 1)
        watch.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stopCancels(self):
        """
        Stopping cancels the timers.
        """
        watch = self.watch(300, 400)
        self.assertEqual(len(self.clock.getDelayedCalls()), 2)
        watch.stopService()
        self.assertEqual(self.clock.getDelayedCalls(), [])
