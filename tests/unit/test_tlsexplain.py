# -*- test-case-name: tests.unit.test_tlsexplain -*-
"""
Tests for L{uhppoted_tunnel.transports.tls.explain}: each TLS failure a
sentence with the fix, never a Python repr.
"""

import os

from OpenSSL import SSL, crypto
from service_identity import VerificationError
from service_identity.exceptions import IPAddressMismatch
from service_identity.hazmat import IPAddress_ID
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from tests import certs
from uhppoted_tunnel.transports.tls.explain import EXPIRED, NOT_YET_VALID, explain, record_verify


def openssl(text):
    return Failure(SSL.Error([("SSL routines", "", text)]))


class Handle:
    """
    Stands for an C{OpenSSL.SSL.Connection}: hashable, weakly
    referenceable, and with no peer certificate.
    """

    def get_peer_certificate(self):
        return None


class ExplainTests(SynchronousTestCase):
    def test_addressNotNamed(self):
        """
        A server certificate that does not name the address dialled says
        so, and how to fix it, without the exception's repr.
        """
        error = VerificationError(errors=[IPAddressMismatch(mismatched_id=IPAddress_ID("127.0.0.2"))])
        sentence = explain(Failure(error))
        self.assertTrue(sentence.startswith("the server's certificate does not name 127.0.0.2, the address dialled"),
                        sentence)
        self.assertIn("subjectAltName includes 127.0.0.2", sentence)
        self.assertNotIn("IPAddress_ID", sentence)

    def test_alerts(self):
        """
        What the other side's alert means: it does not trust our CA, our
        certificate expired, it requires a client certificate; and a peer
        that sent no TLS at all.
        """
        self.assertIn("not signed by the CA in the other side's --ca-cert",
                      explain(openssl("tlsv1 alert unknown ca")))
        self.assertIn("as expired: renew --cert", explain(openssl("sslv3 alert certificate expired")))
        self.assertIn("requires a client certificate (--client-auth)",
                      explain(openssl("tlsv13 alert certificate required")))
        self.assertIn("is it a plain tcp/client?", explain(openssl("wrong version number")))
        self.assertIsNone(explain(openssl("something new")))

    def test_verifyFailed(self):
        """
        Why this side refused the other's certificate, as the verify
        callback noted it: expired (with the date), not yet valid, or
        another CA; and when nothing was noted, the causes and how to tell
        them apart.
        """
        files = certs.make(os.path.abspath(self.mktemp()))
        with open(files["server"][0], "rb") as f:
            certificate = crypto.load_certificate(crypto.FILETYPE_PEM, f.read())
        end = certificate.to_cryptography().not_valid_after_utc.strftime("%Y-%m-%d %H:%M UTC")
        failed = openssl("certificate verify failed")
        handle = Handle()
        self.assertTrue(record_verify(handle, certificate, 0, 0, True))
        self.assertFalse(record_verify(handle, certificate, EXPIRED, 0, False))
        self.assertEqual(explain(failed, handle),
                         "the other side's certificate expired on {}: renew its --cert".format(end))
        other = Handle()
        record_verify(other, certificate, NOT_YET_VALID, 0, False)
        self.assertIn("is not valid before", explain(failed, other))
        unknown = Handle()
        record_verify(unknown, certificate, 20, 0, False)
        self.assertIn("not signed by the CA in this end's --ca-cert", explain(failed, unknown))
        self.assertIn("it has expired, is not yet valid, or is not signed by the CA", explain(failed, Handle()))

    def test_plainServer(self):
        """
        A TLS client whose server closes the connection without a word of
        TLS is told the server may be plain.
        """
        self.assertIn("is it a plain tcp/server?", explain(Failure(ConnectionLost()), Handle()))
