# -*- test-case-name: tests.unit.test_xmpp,tests.loopback.test_xmpp -*-
"""
The XMPP transport: C{xmpp/client:JID} (and C{xmpp/event/client:JID}), in
and out, for sites where neither half can accept a connection but both
can reach an XMPP server, which relays between them.

Each half logs in as its own account and the two find each other by
presence (L{uhppoted_tunnel.transports.xmpp.session}); each of the peer's
resources that is online is one connection of the end, reported by the
end's endpoint (L{uhppoted_tunnel.transports.xmpp.endpoint}). The end is
the stream client end every transport shares
(L{uhppoted_tunnel.link.ends.ClientEnd}): C{ClientService} logs in, and
logs in again, with Go's backoff and C{--max-retries}, a refused login or
a stream lost before the peer came counting as a failed attempt.

The modules: C{frames} (frames in stanzas, the paced queue), C{login}
(STARTTLS, SASL, DNS SRV), C{session} (presence and stanzas),
C{connection} (a resource as a connection), C{drops} (warnings and
counts), C{endpoint} (the session as an endpoint) and this maker.
"""

import dataclasses

from twisted.logger import Logger

from uhppoted_tunnel.core.bounded import read_bounded
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports import proxy
from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.transports.tls.secure import watch_certificates
from uhppoted_tunnel.transports.xmpp.connection import XMPPConnection
from uhppoted_tunnel.transports.xmpp.endpoint import XMPPEndpoint
from uhppoted_tunnel.transports.xmpp.frames import Peer, parse_jid
from uhppoted_tunnel.transports.xmpp.login import SRVEndpoint, XMPPClientEndpoint

#: The longest password file read.
MAX_PASSWORD = 4096


def read_password(path):
    """
    Read an account's password: the first line of a file.

    :return: C{(password, warning)}, the warning C{None} unless others
        than its owner may read the file.
    :raise ValueError: naming the file when it cannot be used.
    """
    if not path:
        raise ValueError("xmpp/ needs --xmpp-password-file FILE (TOML xmpp-password-file): the file holding the "
                         "account's password")
    where = "--xmpp-password-file '{}'".format(path)
    try:
        data, mode = read_bounded(path, where, MAX_PASSWORD, "a password file")
    except OSError as e:
        raise ValueError("{}: {}".format(where, e.strerror or e)) from None
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValueError("--xmpp-password-file '{}': not UTF-8 text".format(path)) from None
    if len(data) > MAX_PASSWORD or not lines or not lines[0]:
        raise ValueError("--xmpp-password-file '{}': expected the password on the first line".format(path))
    warning = None
    if mode & 0o077:
        warning = "--xmpp-password-file '{}' may be read by others than its owner (mode {:04o}): chmod 600 it".format(
            path, mode & 0o7777)
    return lines[0], warning


def _jid(text, where, example):
    found = parse_jid(text)
    if found is None or not found.user:
        raise ValueError("{}: '{}' is not an account's JID (expected e.g. {})".format(where, text, example))
    return found


class XMPPConnectorMaker(StreamConnectorMaker):
    """
    Makes C{xmpp/client:JID} and C{xmpp/event/client:JID} ends: stream
    client ends whose endpoint is an L{XMPPEndpoint}.
    """

    log = Logger()
    log_tag = "XMPP"
    secure = True
    protocol = XMPPConnection

    def __init__(self):
        StreamConnectorMaker.__init__(self, "xmpp")
        self.prefixes = ("xmpp/client:", "xmpp/event/client:")

    def certificates(self, settings, side, reactor, endpoint):
        """
        The watch of C{--cert}/C{--ca-cert}; the endpoint reads them again
        for its next login.
        """
        return watch_certificates(settings, side, reactor, self.log_tag), endpoint

    def serverEndpoint(self, reactor, spec, settings):
        raise ValueError("'{}': an xmpp/ end logs in as a client (xmpp/client:JID)".format(spec.text))

    def clientEndpoint(self, reactor, spec, settings):
        """
        The L{XMPPEndpoint} of C{xmpp/client:JID}: logs in as JID, through
        C{--xmpp-server} or the DNS SRV records of its domain (through the
        proxy chosen for a TLS end, if any), with C{--xmpp-password-file}.
        """
        account = _jid(spec.address, "'{}'".format(spec.text), "xmpp/client:site@example.org")
        if not settings.get("xmpp-peer"):
            raise ValueError("xmpp/ needs --xmpp-peer JID (TOML xmpp-peer): the account of the other half")
        peer = Peer(_jid(settings["xmpp-peer"], "--xmpp-peer", "host@example.org"))
        if peer.bare == account.userhost():
            raise ValueError("--xmpp-peer {} is this half's own account: each half needs its own".format(peer.bare))
        password, warning = read_password(settings.get("xmpp-password-file"))
        server = settings.get("xmpp-server")

        def to(address, text):
            # through the proxy chosen for a TLS end (https_proxy), if any
            dialled = dataclasses.replace(spec, text=text, prefix="", address=address)
            return proxy.client_endpoint(reactor, dialled, settings, True, self.log_tag)

        if server:
            dial = to(server, "--xmpp-server " + server)
        else:
            dial = SRVEndpoint(reactor, account.host, dial=lambda host, port: to(
                "{}:{}".format(host, port), "{} ({}'s DNS SRV records)".format(spec.text, account.host)))
            server = str(dial)
        login = XMPPClientEndpoint(dial, server, account, password, lambda: tls.client_options(settings, account.host),
                                   reactor, settings["handshake-timeout"])
        if warning is not None:
            self.log.warn("{warning}", warning=warning)
        return XMPPEndpoint(login, peer, settings, reactor)
