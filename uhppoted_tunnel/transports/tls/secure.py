# -*- test-case-name: tests.loopback.test_tls,tests.unit.test_tls -*-
"""
The TLS transport: C{tls/server} and C{tls/client}, in and out, and the
secure endpoints that C{https/} (and any other secure transport) listens
and dials with.

The stream ends are the plain ones (L{uhppoted_tunnel.link.ends});
what TLS adds is here and in L{uhppoted_tunnel.transports.tls.handshake}:
a connection reaches the end's factory only once its handshake has
completed. A handshake that fails or takes longer than
C{--handshake-timeout} is dropped with a warning saying what probably
happened, and a client's attempt fails with the reason, so backoff and
C{--max-retries} apply. A TLS 1.3 server refuses a client certificate only
after the client's handshake is done: the client's connection then closes
with L{LinkRefused}, which the client end counts as a failed attempt. See
L{uhppoted_tunnel.transports.tls.certs} for the policy (versions, ciphers, certificates).
"""

import os
import time

from OpenSSL import SSL
from twisted.application.service import Service
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.interfaces import ICertificateReloader, ICertificateWatch, ICountingEndpoint
from uhppoted_tunnel.link.lifecycle import StoppingPort
from uhppoted_tunnel.link.limits import NOTHING
from uhppoted_tunnel.link.tlsdirect import DirectTLSFactory
from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.core.addresses import go_address
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports.tls.handshake import HandshakeGateFactory


@implementer(ICountingEndpoint, ICertificateReloader)
class SecureEndpoint:
    """
    What the secure server and client endpoints share: the endpoint they
    wrap, the handshake's timeout and log wording, and the TLS options,
    built by C{make} and built again on L{reloadCertificates}.
    """

    log = Logger()
    #: it refuses no connection for a cap
    refused = dropped = NOTHING

    def __init__(self, endpoint, make, clock, timeout, log_tag, hint):
        """
        :param endpoint: the wrapped endpoint.
        :param make: builds the TLS options from the certificate files
            (L{uhppoted_tunnel.transports.tls.certs.server_options} or C{client_options}
            with the end's settings), raising L{ValueError} for a bad file.
        :param clock: an C{IReactorTime}.
        :param timeout: seconds a handshake may take.
        :param log_tag: the tag of the log lines (C{TLS}, C{HTTPS}).
        :param hint: what a timed-out handshake probably means.
        """
        self.endpoint = endpoint
        self.make = make
        self.tls = make()
        self.clock = clock
        self.timeout = timeout
        self.log_tag = log_tag
        self.hint = hint
        #: failed handshakes by kind, across every connection
        self.handshake_failures = {}

    def reloadCertificates(self):
        """
        Read the certificate, key and CA again for the connections to come
        (SIGHUP); connections made already carry on. A bad file is a
        warning, and the options in use stay.

        :return: True if reloaded.
        """
        try:
            self.tls = self.make()
        except ValueError as e:
            self.log.warn("could not reload the TLS certificates ({reason}): keeping those in use", reason=e)
            return False
        self.log.info("reloaded the TLS certificates: new connections use them")
        return True


@implementer(IStreamServerEndpoint, IOpenSSLServerConnectionCreator)
class SecureServerEndpoint(SecureEndpoint):
    """
    Any stream server endpoint, with TLS on every connection it accepts;
    a connection reaches the factory once its handshake is done.
    """

    def __init__(self, endpoint, make, clock, timeout, log_tag="TLS", hint="is the peer a plain TCP connector?"):
        SecureEndpoint.__init__(self, endpoint, make, clock, timeout, log_tag, hint)

    def serverConnectionForTLS(self, tlsProtocol):
        # the options in use now, so that a reload reaches the next
        # connection
        return SSL.Connection(self.tls.getContext(), None)

    def listen(self, factory):
        gates = HandshakeGateFactory(factory, self.clock, self.timeout, self.log_tag, self.hint,
                                     failures=self.handshake_failures)
        listening = self.endpoint.listen(DirectTLSFactory(self, False, gates))
        return listening.addCallback(StoppingPort, gates.closeAll)


@implementer(IStreamClientEndpoint)
class SecureClientEndpoint(SecureEndpoint):
    """
    Any stream client endpoint, with TLS: C{connect} fires once the
    handshake is done, and fails with L{HandshakeFailed} or
    L{HandshakeTimeout} if it is not.
    """

    def __init__(self, endpoint, make, clock, timeout, log_tag="TLS", hint="is the server a plain TCP connector?"):
        SecureEndpoint.__init__(self, endpoint, make, clock, timeout, log_tag, hint)

    def connect(self, factory):
        gates = None

        def cancel(d):
            for gate in list(gates.pending):
                gate.abort()
            connecting.cancel()

        ready = Deferred(cancel)

        def settle(outcome):
            if not ready.called:
                if isinstance(outcome, Failure):
                    ready.errback(outcome)
                else:
                    ready.callback(outcome)

        gates = HandshakeGateFactory(factory, self.clock, self.timeout, self.log_tag, self.hint, settle, settle,
                                     self.handshake_failures)
        connecting = self.endpoint.connect(DirectTLSFactory(self.tls, True, gates))
        connecting.addErrback(lambda failure: None if failure.check(CancelledError) else settle(failure))
        return ready


#: A certificate this close to its end is warned of (at start, and when
#: the time comes while the tunnel runs).
EXPIRY_WARNING = 7 * 24 * 3600.0


@implementer(ICertificateWatch)
class CertificateWatch(Service):
    """
    Warns of certificates that expire: at start, of any within a week of
    its end (or past it), and while the tunnel runs, a week before each
    end (one timer per certificate, armed only while the end runs).
    """

    log = Logger()

    def __init__(self, certificates, clock, log_tag):
        """
        :param certificates: C{(flag, path, not_after)} for each
            certificate the end uses, C{not_after} in seconds since the
            epoch.
        :param clock: an C{IReactorTime}.
        :param log_tag: the end's log tag.
        """
        self.certificates = certificates
        self.clock = clock
        self.log_tag = log_tag
        self._timers = []

    def startService(self):
        Service.startService(self)
        now = self.clock.seconds()
        for flag, path, not_after in self.certificates:
            if not_after - now <= EXPIRY_WARNING:
                self._warn(flag, path, not_after)
            else:
                self._timers.append(self.clock.callLater(not_after - now - EXPIRY_WARNING, self._warn, flag, path,
                                                         not_after))

    def _warn(self, flag, path, not_after):
        left = not_after - self.clock.seconds()
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(not_after))
        if left <= 0:
            self.log.warn("{flag} {path}: the certificate expired on {when}: TLS peers will refuse it", flag=flag,
                          path=path, when=when)
        else:
            self.log.warn("{flag} {path}: the certificate expires on {when} (in {days:.1f} days): renew it",
                          flag=flag, path=path, when=when, days=left / 86400)

    def stopService(self):
        Service.stopService(self)
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []


def watch_certificates(settings, side, clock, log_tag):
    """
    The L{CertificateWatch} for a secure end's certificates: the CA and
    the end's own (a client's only if it has one).

    :param side: C{"server"} or C{"client"}.
    """
    cert = settings["cert"] or side + ".cert"
    found = [("--ca-cert", settings["ca-cert"])]
    if settings["cert"] or side == "server" or os.path.exists(cert):
        found.append(("--cert", cert))
    return CertificateWatch([(flag, path, tls.not_after(path)) for flag, path in found], clock, log_tag)


class TLSConnectorMaker(StreamConnectorMaker):
    """
    Makes C{tls/server} and C{tls/client} ends.
    """

    log_tag = "TLS"
    secure = True

    def __init__(self):
        StreamConnectorMaker.__init__(self, "tls")

    def certificates(self, settings, side, reactor, endpoint):
        return watch_certificates(settings, side, reactor, self.log_tag), endpoint

    def serverEndpoint(self, reactor, spec, settings):
        return SecureServerEndpoint(StreamConnectorMaker.serverEndpoint(self, reactor, spec, settings),
                                    lambda: tls.server_options(settings), reactor, settings["handshake-timeout"])

    def clientEndpoint(self, reactor, spec, settings):
        address = go_address(spec.address)
        if address is None or not address[0]:
            raise ValueError("'{}': a TLS client needs HOST:PORT (the server's certificate must name HOST)".format(
                spec.text))
        return SecureClientEndpoint(StreamConnectorMaker.clientEndpoint(self, reactor, spec, settings),
                                    lambda: tls.client_options(settings, address[0]), reactor,
                                    settings["handshake-timeout"])
