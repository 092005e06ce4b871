"""
Test certificates, made like the README's openssl recipe: a CA, a server
certificate naming localhost and 127.0.0.1, and a client certificate, all
with P-256 keys; and the same again from a second, unrelated CA.
"""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(directory, name, key, certificate):
    with open(os.path.join(directory, name + ".key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    with open(os.path.join(directory, name + ".cert"), "wb") as f:
        f.write(certificate.public_bytes(serialization.Encoding.PEM))


def _certificate(subject, key, issuer, issuer_key, days, extensions, start=-1):
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + datetime.timedelta(days=start))
        .not_valid_after(now + datetime.timedelta(days=days))
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def _san(name):
    try:
        return x509.IPAddress(ipaddress.ip_address(name))
    except ValueError:
        return x509.DNSName(name)


def make(directory, prefix="", server_names=("localhost", "127.0.0.1"), server_days=(-1, 825), crl_uri=None,
         clients=()):
    """
    Write C{ca.cert}, C{ca.key}, C{server.cert}, C{server.key},
    C{client.cert} and C{client.key} (each name after C{prefix}) into
    C{directory}.

    :param server_names: the server certificate's subject alternative
        names, host names or IP addresses.
    :param server_days: when the server certificate's validity starts and
        ends, in days from now (C{(-10, -1)} makes one that has expired); a number alone is the end,
        starting yesterday.
    :param crl_uri: a CRL distribution point to name in the server
        certificate (as a real CA's would; C{bench/testssl.sh} uses one so
        that testssl's "neither CRL nor OCSP URI" is not reported against
        the tunnel), or C{None}.
    :param clients: more client certificates signed by the CA, one per
        name: C{NAME.cert} and C{NAME.key}, subject C{CN=NAME}.

    :return: a dict of role (C{ca}, C{server}, C{client}) to C{(cert, key)}
        paths.
    """
    os.makedirs(directory, exist_ok=True)
    ca_name = "uhppoted-tunnel CA " + (prefix or "main")
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _certificate(ca_name, ca_key, ca_name, ca_key, 3650, [
        (x509.BasicConstraints(ca=True, path_length=None), True),
        (x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                       key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                       decipher_only=False), True),
    ])
    _write(directory, prefix + "ca", ca_key, ca)
    server_key = ec.generate_private_key(ec.SECP256R1())
    if isinstance(server_days, int):
        server_days = (-1, server_days)
    extensions = [
        (x509.SubjectAlternativeName([_san(name) for name in server_names]), False),
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
    ]
    if crl_uri is not None:
        extensions.append((x509.CRLDistributionPoints([x509.DistributionPoint(
            full_name=[x509.UniformResourceIdentifier(crl_uri)], relative_name=None, reasons=None,
            crl_issuer=None)]), False))
    server = _certificate("localhost", server_key, ca_name, ca_key, server_days[1], extensions, start=server_days[0])
    _write(directory, prefix + "server", server_key, server)
    client_key = ec.generate_private_key(ec.SECP256R1())
    client = _certificate("uhppoted-tunnel client", client_key, ca_name, ca_key, 825, [
        (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
    ])
    _write(directory, prefix + "client", client_key, client)
    for name in clients:
        key = ec.generate_private_key(ec.SECP256R1())
        _write(directory, prefix + name, key, _certificate(name, key, ca_name, ca_key, 825, [
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ]))
    return {
        role: (os.path.join(directory, prefix + role + ".cert"), os.path.join(directory, prefix + role + ".key"))
        for role in ("ca", "server", "client") + tuple(clients)
    }
