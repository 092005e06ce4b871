"""
Tests for L{uhppoted_tunnel.tls} with no sockets: certificates and keys.
"""

import os

from twisted.trial.unittest import SynchronousTestCase

from tests import certs
from uhppoted_tunnel import emulator, tls

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
        self.assertEqual(str(e), "--key '{}' does not match --cert '{}'".format(key, cert))

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
