# -*- test-case-name: tests.loopback.test_tls,tests.unit.test_tls -*-
"""
TLS policy for the secure transports (C{tls/}, C{https/}): certificates
and the contexts made from them. The transport itself (handshakes, their
timeout and diagnosis, endpoints) is L{uhppoted_tunnel.transports.tls.secure}.

Policy: TLS 1.2 or newer, forward-secret AEAD ciphers only (ECDHE with
AES-GCM or ChaCha20-Poly1305; every TLS 1.3 suite qualifies), no
renegotiation, no compression. Servers verify a client certificate against
the CA whenever one is presented and require one with C{--client-auth};
clients verify the server's certificate against the CA and the host name
or IP address they dialled (with C{service_identity}).

ALPN: a server never aborts a handshake because of what a client offers.
Twisted installs an ALPN callback on every server context which, when
nothing offered is acceptable (always so with no protocols configured),
answers an empty protocol name; pyOpenSSL passes that to OpenSSL as a
selection, and OpenSSL 3 ends the handshake with alert 80
(C{internal_error}), so curl and every browser were refused. L{_Options}
replaces that callback: it picks the first of the end's protocols that the
client offers (C{http/1.1} on C{https/}) and otherwise declines ALPN
(C{NO_OVERLAPPING_PROTOCOLS}), and the handshake goes on without it.

Every certificate and key is read when the end is built, so a missing,
unreadable or mismatched file is a one-line error before anything
listens.
"""

from OpenSSL import SSL, crypto
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from zope.interface import implementer

from uhppoted_tunnel.core.bounded import read_bounded
from uhppoted_tunnel.transports.tls.explain import record_verify


CIPHERS = ssl.AcceptableCiphers.fromOpenSSLCipherString("ECDHE+AESGCM:ECDHE+CHACHA20")


def read_file(path, flag):
    """
    The bytes of a certificate or key file.

    :param flag: the flag that named it, for the error.
    :raise ValueError: naming the flag and the file when it cannot be read.
    """
    try:
        return read_bounded(path, "{} '{}'".format(flag, path), what="a PEM file")[0]
    except OSError as e:
        raise ValueError("{} '{}': {}".format(flag, path, e.strerror or e)) from None


#: The default CA certificate (C{--ca-cert}).
DEFAULT_CA = "ca.cert"


def read_or_default(path, flag, default):
    """
    L{read_file}, whose error says when the file is a default the user
    never named, and how to name another.

    :param default: whether C{path} is C{flag}'s default.
    """
    try:
        return read_file(path, flag)
    except ValueError as e:
        if not default:
            raise
        raise ValueError("{} (the default; set {})".format(e, flag)) from None


def load_ca(path):
    """
    Read a CA certificate.

    :param path: a PEM file.
    :return: an L{ssl.Certificate}.
    :raise ValueError: naming the file when it cannot be read or parsed.
    """
    data = read_or_default(path, "--ca-cert", path == DEFAULT_CA)
    try:
        return ssl.Certificate.loadPEM(data)
    except (crypto.Error, SSL.Error, ValueError):
        raise ValueError("--ca-cert '{}': not a PEM certificate".format(path)) from None


def not_after(path):
    """
    When a certificate file's certificate expires.

    :return: seconds since the epoch.
    :raise ValueError: naming the file when it cannot be read.
    """
    from cryptography import x509

    try:
        data, _ = read_bounded(path, "'{}'".format(path), what="a PEM file")
        return x509.load_pem_x509_certificate(data).not_valid_after_utc.timestamp()
    except (OSError, ValueError) as e:
        raise ValueError("'{}': {}".format(path, getattr(e, "strerror", None) or e)) from None


def load_identity(cert_path, key_path, defaulted=()):
    """
    Read a certificate and its private key and check that they match.

    :param defaulted: the flags (C{--cert}, C{--key}) whose paths are
        defaults, for the error when one is missing.
    :return: an L{ssl.PrivateCertificate}.
    :raise ValueError: naming the file at fault.
    """
    cert_data = read_or_default(cert_path, "--cert", "--cert" in defaulted)
    key_data = read_or_default(key_path, "--key", "--key" in defaulted)
    try:
        certificate = ssl.Certificate.loadPEM(cert_data)
    except (crypto.Error, SSL.Error, ValueError):
        raise ValueError("--cert '{}': not a PEM certificate".format(cert_path)) from None
    try:
        key = ssl.KeyPair.load(key_data, crypto.FILETYPE_PEM)
    except (crypto.Error, SSL.Error, ValueError):
        raise ValueError("--key '{}': not a PEM private key".format(key_path)) from None
    context = SSL.Context(SSL.TLS_METHOD)
    try:
        context.use_certificate(certificate.original)
        context.use_privatekey(key.original)
        context.check_privatekey()
    except SSL.Error:
        raise ValueError("--key '{}' does not match --cert '{}': give the key the certificate was made "
                         "for (or make a certificate for this key)".format(key_path, cert_path)) from None
    return ssl.PrivateCertificate.fromCertificateAndKeyPair(certificate, key)


def alpn_selector(protocols):
    """
    An ALPN select callback for a server that speaks C{protocols}.

    :param protocols: the protocols the server speaks, best first (bytes);
        empty for one that speaks none that ALPN names (C{tls/server}).
    :return: C{(connection, offered) -> protocol}: the first of
        C{protocols} that the client offered, else
        C{SSL.NO_OVERLAPPING_PROTOCOLS}, so that the handshake completes
        without ALPN rather than failing.
    """
    protocols = tuple(protocols)

    def select(connection, offered):
        for protocol in protocols:
            if protocol in offered:
                return protocol
        return SSL.NO_OVERLAPPING_PROTOCOLS

    return select


class _Options(ssl.CertificateOptions):
    """
    C{CertificateOptions} that also refuse renegotiation and answer ALPN
    with L{alpn_selector}.

    :ivar protocols: the ALPN protocols the server speaks, best first.
    """

    _hardened = False
    protocols = ()

    def getContext(self):
        context = ssl.CertificateOptions.getContext(self)
        if not self._hardened:
            # once, before the context makes its first connection
            context.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
            # replaces Twisted's callback, which aborts the handshake with
            # alert 80 when nothing offered is acceptable
            context.set_alpn_select_callback(alpn_selector(self.protocols))
            # notes why a client's certificate is refused, for the log; it
            # accepts what OpenSSL accepts, as Twisted's server context does
            # (a client connection's callback is Twisted's own, which checks
            # the host name: it is left alone)
            context.set_verify(context.get_verify_mode(), record_verify)
            self._hardened = True
        return context


def server_options(settings, protocols=()):
    """
    The TLS server context for a TLS or HTTPS server end.

    :param settings: the tunnel's options (C{ca-cert}, C{cert}, C{key},
        C{client-auth}); C{cert} and C{key} default to C{server.cert} and
        C{server.key}.
    :param protocols: the ALPN protocols the end speaks, best first
        (C{[b"http/1.1"]} for C{https/}); a client that offers none of them
        is served without ALPN.
    :raise ValueError: for a missing, unreadable or mismatched file.
    """
    defaulted = [flag for flag, key in (("--cert", "cert"), ("--key", "key")) if not settings[key]]
    identity = load_identity(settings["cert"] or "server.cert", settings["key"] or "server.key", defaulted)
    ca = load_ca(settings["ca-cert"])
    options = _Options(
        privateKey=identity.privateKey.original,
        certificate=identity.original,
        verify=True,
        caCerts=[ca.original],
        requireCertificate=bool(settings["client-auth"]),
        raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        acceptableCiphers=CIPHERS,
        enableSessions=False,
    )
    options.protocols = tuple(protocols)
    return options


def client_options(settings, hostname, protocols=()):
    """
    The TLS client connection creator for a TLS client end.

    :param settings: the tunnel's options. C{cert}/C{key} default to
        C{client.cert}/C{client.key}, which are optional: a client without
        them presents no certificate.
    :param hostname: the host name or IP address dialled, which the
        server's certificate must name.
    :param protocols: the ALPN protocols to offer, best first (C{[b"h2"]}
        for C{grpcs/}); none if empty.
    :raise ValueError: for a missing, unreadable or mismatched file.
    """
    ca = load_ca(settings["ca-cert"])
    cert, key = settings["cert"], settings["key"]
    identity = None
    if cert or key:
        defaulted = ["--cert"] * (not cert) + ["--key"] * (not key)
        identity = load_identity(cert or "client.cert", key or "client.key", defaulted)
    else:
        try:
            identity = load_identity("client.cert", "client.key")
        except ValueError:
            identity = None
    return _Hardened(ssl.optionsForClientTLS(
        hostname,
        trustRoot=ca,
        clientCertificate=identity,
        acceptableProtocols=list(protocols) or None,
        extraCertificateOptions={"raiseMinimumTo": ssl.TLSVersion.TLSv1_2, "acceptableCiphers": CIPHERS},
    ))


@implementer(IOpenSSLClientConnectionCreator)
class _Hardened:
    """
    A client connection creator whose connections refuse renegotiation and
    compression.
    """

    def __init__(self, creator):
        self.creator = creator

    def clientConnectionForTLS(self, tlsProtocol):
        connection = self.creator.clientConnectionForTLS(tlsProtocol)
        connection.set_options(SSL.OP_NO_RENEGOTIATION | SSL.OP_NO_COMPRESSION)
        return connection
