# -*- test-case-name: tests.unit.test_options -*-
"""
The TLS options, which every TLS end uses (tls/, wss/, grpcs/, https/):
certificate files, client authentication and the handshake timeout. Light:
no OpenSSL here.
"""

from uhppoted_tunnel.core.declare import FLAG, Option
from uhppoted_tunnel.core.values import check, duration

#: how long a TLS handshake (or a proxy's answer to CONNECT) may take
DEFAULT_HANDSHAKE_TIMEOUT = 15.0

_AUTH = {**dict.fromkeys(["required", "true", "yes", "on"], True),
         **dict.fromkeys(["false", "no", "off", "none", ""], False)}

# Go's sample file says client-auth = "required", which Go reads as false.
client_auth = check(
    'true, false or "required"',
    lambda value: type(value) is bool or (
        type(value) is str and value.lower() in _AUTH),
    lambda value: value if type(value) is bool else _AUTH[value.lower()])

OPTIONS = (
    Option("ca-cert", "TLS CA certificate file (default ca.cert).", default="ca.cert"),
    Option("cert", "TLS certificate file (default server.cert or client.cert)."),
    Option("key", "TLS key file (default server.key or client.key)."),
    Option("client-auth", "TLS servers require a client certificate signed by --ca-cert.",
           default=False, convert=client_auth, kind=FLAG),
    Option("handshake-timeout", "How long a TLS handshake may take, on tls/ and https/ ends, and "
                                "how long an HTTP proxy may take to answer CONNECT (default 15s).",
           default=DEFAULT_HANDSHAKE_TIMEOUT, convert=duration(positive=True)),
)
