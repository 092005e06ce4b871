# -*- test-case-name: tests.unit.test_tlsexplain -*-
"""
Why a TLS handshake failed, as a sentence that says what to do: a
certificate that does not name the host dialled, one signed by a CA the
other side does not trust, one expired or not yet valid, a client
certificate required but not given, a peer that does not speak TLS.

OpenSSL says only "certificate verify failed" when this side refuses the
peer's certificate; the peer's certificate tells why (its dates, its
names). When the peer refused ours, its alert says why.
"""

import weakref

from cryptography import x509
from OpenSSL import SSL
from service_identity import VerificationError
from service_identity.exceptions import DNSMismatch, IPAddressMismatch
from twisted.internet.error import ConnectionClosed

#: Alerts from the peer (OpenSSL's text, lower case) -> what they mean.
ALERTS = (
    ("alert unknown ca", "the other side does not trust this end's certificate: it is not signed by the CA in the "
                         "other side's --ca-cert (give both halves certificates from the same CA)"),
    ("alert certificate expired", "the other side refused this end's certificate as expired: renew --cert"),
    ("alert certificate required", "the server requires a client certificate (--client-auth): give this end "
                                   "--cert and --key, signed by the server's --ca-cert"),
    ("peer did not return a certificate", "the client gave no certificate, and this server requires one "
                                          "(--client-auth): give the client --cert and --key, signed by this "
                                          "end's --ca-cert"),
    ("alert bad certificate", "the other side refused this end's certificate (not yet valid, expired, or not for "
                              "this use): run 'uhppoted-tunnel check' on both halves"),
    ("alert certificate unknown", "the other side refused this end's certificate: run 'uhppoted-tunnel check' on "
                                  "both halves"),
    ("alert decrypt error", "the other side could not verify this end's key: --key does not belong to --cert"),
    ("wrong version number", "the other side did not start a TLS handshake: is it a plain tcp/client? Use "
                             "tls/client with --ca-cert there"),
    ("http request", "the other side sent an HTTP request, not a TLS handshake: use https:// (or a TLS connector) "
                     "there"),
    ("unsupported protocol", "the other side offers only a TLS version older than 1.2: upgrade it"),
    ("no shared cipher", "the other side offers no cipher this end accepts (ECDHE with AES-GCM or ChaCha20)"),
)


def openssl_text(value):
    """
    OpenSSL's reasons in an C{SSL.Error}, joined, lower case; C{""} for
    anything else.
    """
    errors = value.args[0] if isinstance(value, SSL.Error) and value.args else None
    if isinstance(errors, list):
        return "; ".join(str(e[-1]) for e in errors if isinstance(e, tuple)).lower()
    return ""


def explain(reason, connection=None, when=None):
    """
    A failed handshake in words, with the fix.

    :param reason: the L{Failure} the connection was lost with.
    :param connection: the C{OpenSSL.SSL.Connection}, for the peer's
        certificate, or C{None}.
    :param when: formats a certificate's date (a C{datetime}) for the
        message; ISO date and time by default.
    :return: the sentence, or C{None} when the reason is none of those
        known (the caller says what OpenSSL said).
    """
    when = when or (lambda moment: moment.strftime("%Y-%m-%d %H:%M UTC"))
    value = reason.value
    certificate, code = SEEN.get(connection, (None, 0)) if connection is not None else (None, 0)
    if isinstance(value, VerificationError):
        return _mismatch(value, certificate)
    text = openssl_text(value)
    if "certificate verify failed" in text:
        return _refused(certificate, code, when)
    for alert, meaning in ALERTS:
        if alert in text:
            return meaning
    if isinstance(value, ConnectionClosed) and connection is not None and not _heard(connection):
        return ("the other side closed the connection without answering the TLS handshake: is it a plain "
                "tcp/server? Use tcp/client, or make it tls/server")
    return None


#: X509_V_ERR_* codes (OpenSSL's x509_vfy.h) told apart.
BAD_SIGNATURE = 7
NOT_YET_VALID = 9
EXPIRED = 10
UNKNOWN_CA = frozenset([2, 18, 19, 20, 21])

#: Connection -> [the peer's certificate, the first verify error or 0],
#: noted during the handshake by L{record_verify} (OpenSSL keeps neither
#: once a handshake has failed); weak, so it holds no connection alive.
SEEN = weakref.WeakKeyDictionary()


def record_verify(connection, certificate, code, depth, ok):
    """
    A verify callback (C{set_verify}) that accepts what OpenSSL accepts
    and notes the peer's certificate and why it was refused, for
    L{explain}.
    """
    if depth == 0 or not ok:
        seen = SEEN.get(connection)
        if seen is None:
            seen = SEEN[connection] = [None, 0]
        if depth == 0:
            seen[0] = certificate.to_cryptography()
        if not ok and not seen[1]:
            seen[1] = code
    return ok


def _heard(connection):
    """
    Whether anything of the peer's TLS arrived (its certificate at least).
    """
    try:
        return connection.get_peer_certificate() is not None
    except SSL.Error:
        return False


def names(certificate):
    """
    The DNS names and IP addresses a certificate's subject alternative
    names give, as text.
    """
    if certificate is None:
        return []
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return san.get_values_for_type(x509.DNSName) + [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]


def _mismatch(error, certificate):
    dialled = []
    for mismatch in error.errors:
        if isinstance(mismatch, IPAddressMismatch):
            dialled.append(str(mismatch.mismatched_id.ip))
        elif isinstance(mismatch, DNSMismatch):
            hostname = mismatch.mismatched_id.hostname
            dialled.append(hostname.decode("ascii", "replace") if isinstance(hostname, bytes) else str(hostname))
    host = " or ".join(dialled) or "the host dialled"
    named = names(certificate)
    if named:
        return ("the server's certificate does not name {0}, the address dialled (it names {1}): dial one of those, "
                "or give the server a certificate whose subjectAltName includes {0}".format(host, ", ".join(named)))
    return ("the server's certificate does not name {0}, the address dialled: dial a name or address it has "
            "('uhppoted-tunnel check --peer-cert FILE', given a copy of it, lists them), or give the server a "
            "certificate whose subjectAltName includes {0}".format(host))


def _refused(certificate, code, when):
    """
    Why this side refused the peer's certificate: OpenSSL says only
    "certificate verify failed"; the verify error L{record_verify} noted
    (where it could be noted: a server's) says why, and the certificate's
    dates when.
    """
    if certificate is not None and code == EXPIRED:
        return "the other side's certificate expired on {}: renew its --cert".format(
            when(certificate.not_valid_after_utc))
    if certificate is not None and code == NOT_YET_VALID:
        return ("the other side's certificate is not valid before {}: check both machines' clocks, or "
                "wait".format(when(certificate.not_valid_before_utc)))
    if code in UNKNOWN_CA:
        return ("the other side's certificate is not signed by the CA in this end's --ca-cert: give both halves "
                "certificates from the same CA, or set --ca-cert to the CA that signed it")
    if code == BAD_SIGNATURE:
        return "the other side's certificate has a signature that does not verify: make it again from the CA"
    return ("the other side's certificate was refused: it has expired, is not yet valid, or is not signed by the CA "
            "in this end's --ca-cert ('uhppoted-tunnel check --peer-cert FILE', given a copy of it, says which; "
            "the other side's log says so too)")
