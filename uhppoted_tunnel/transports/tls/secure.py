# -*- test-case-name: tests.loopback.test_tls,tests.unit.test_tls -*-
"""
The TLS transport: C{tls/server} and C{tls/client}, in and out, and the
secure endpoints that C{https/} (and any other secure transport) listens
and dials with.

The stream ends are the plain ones (L{uhppoted_tunnel.link.ends});
what TLS adds is here: a connection reaches the end's factory only once
its handshake has completed. A handshake that fails or takes longer than
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
from twisted.internet.defer import (
    CancelledError,
    Deferred,
    gatherResults,
    maybeDeferred,
    succeed,
)
from twisted.internet.interfaces import (
    IHandshakeListener,
    IOpenSSLServerConnectionCreator,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.interfaces import ICertificateReloader, ICertificateWatch, ICountingEndpoint
from uhppoted_tunnel.link.limits import NOTHING

from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.core.addresses import format_address, go_address
from uhppoted_tunnel.link.ends import LinkRefused
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.core.throttle import Throttle


class HandshakeTimeout(Exception):
    """
    A TLS handshake did not complete in time.
    """

    def __str__(self):
        return "TLS handshake timed out after {:g}s".format(self.args[0])


class HandshakeFailed(Exception):
    """
    A TLS handshake failed; the message is OpenSSL's reason.
    """


def tls_reason(reason):
    """
    A one-line reason for a failed handshake, from OpenSSL's error stack.

    :param reason: the L{Failure} a TLS connection was lost with.
    """
    value = reason.value
    errors = getattr(value, "args", [None])[0] if getattr(value, "args", None) else None
    if isinstance(errors, list) and errors and isinstance(errors[0], tuple):
        return "; ".join(str(e[-1]) for e in errors)
    return reason.getErrorMessage()


def failure_kind(reason):
    """
    What kind of failure a TLS handshake's reason tells, for the metrics'
    bounded C{reason} label.

    :param reason: OpenSSL's reason, as text.
    :return: C{"certificate"}, C{"protocol"} or C{"other"}.
    """
    text = reason.lower()
    if "certificate" in text or "verify" in text or "unknown ca" in text:
        return "certificate"
    if any(word in text for word in ("version", "protocol", "cipher", "http request", "record", "alert")):
        return "protocol"
    return "other"


@implementer(IHandshakeListener)
class HandshakeGate(Protocol):
    """
    Holds a TLS connection until its handshake completes, then connects
    the protocol the wrapped factory builds and steps aside (what arrives
    goes straight to it).

    :ivar protocol: the protocol connected after the handshake, or C{None}.
    """

    log = Logger()
    protocol = None
    timed_out = False
    _timer = None

    def __init__(self, gates, addr):
        self.gates = gates
        self.addr = addr
        self.log_tag = gates.log_tag
        self.peer = "?"
        self._closed = []

    def connectionMade(self):
        self.peer = format_address(self.transport.getPeer())
        self.gates.pending.add(self)
        self._timer = self.gates.clock.callLater(self.gates.timeout, self._timedOut)

    def handshakeCompleted(self):
        self._cancelTimer()
        self.gates.pending.discard(self)
        protocol = self.gates.wrapped.buildProtocol(self.addr)
        if protocol is None:
            self.transport.abortConnection()
            return
        self.protocol = protocol
        # from now on the TLS layer calls the protocol's own method
        self.dataReceived = protocol.dataReceived
        protocol.makeConnection(self.transport)
        self.gates.handshakeDone(protocol)

    def dataReceived(self, data):
        # TLS delivers application data only after the handshake, which
        # replaces this method
        pass

    def _timedOut(self):
        self._timer = None
        self.timed_out = True
        self.gates.timedOut(self.peer)
        self.transport.abortConnection()

    def _cancelTimer(self):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self):
        """
        Drop the connection at once (the end is stopping, or the dial was
        cancelled).
        """
        self.transport.abortConnection()

    def whenClosed(self):
        """
        :return: a Deferred that fires once the connection has closed.
        """
        if self._closed is None:
            return succeed(None)
        d = Deferred()
        self._closed.append(d)
        return d

    def connectionLost(self, reason):
        self._cancelTimer()
        self.gates.pending.discard(self)
        if self.protocol is not None:
            if reason.check(SSL.Error):
                why = tls_reason(reason)
                self.gates.counted(failure_kind(why))
                self.log.warn("TLS connection with {peer} failed: {reason}", peer=self.peer, reason=why)
                reason = Failure(LinkRefused(why))
            self.protocol.connectionLost(reason)
        else:
            if self.timed_out:
                why = HandshakeTimeout(self.gates.timeout)
            else:
                why = HandshakeFailed(tls_reason(reason))
                self.gates.refused(self.peer, why, reason.check(SSL.Error) is not None)
            self.gates.handshakeFailed(Failure(why))
        waiting, self._closed = self._closed, None
        for d in waiting:
            d.callback(None)


class HandshakeGateFactory(Factory):
    """
    Wraps the factory of an end, under C{TLSMemoryBIOFactory}: its
    protocols reach the end only after their handshake. Handshakes that
    time out or that TLS refuses are warned of through a L{Throttle} each
    (the first at once, then a count at most every 10 s), so a flood of
    bad handshakes is a few lines.

    :ivar pending: the connections still in their handshake.
    """

    noisy = False
    log = Logger()

    def __init__(self, wrapped, clock, timeout, log_tag, hint, done=None, failed=None, failures=None):
        """
        :param wrapped: the end's factory.
        :param clock: an C{IReactorTime} for the timeout.
        :param timeout: seconds a handshake may take.
        :param log_tag: the tag of the log lines (C{TLS}, C{HTTPS}).
        :param hint: what a timed-out handshake probably means.
        :param done: called with the protocol of each connection whose
            handshake completes, or C{None}.
        :param failed: called with the L{Failure} of each handshake that
            fails, or C{None}.
        :param failures: a dict counting failed handshakes by kind
            (C{timeout}, C{closed}, and L{failure_kind}'s), kept by the
            endpoint across connections; a new one if C{None}.
        """
        self.wrapped = wrapped
        self.clock = clock
        self.timeout = timeout
        self.log_tag = log_tag
        self.hint = hint
        self.done = done
        self.failed = failed
        self.failures = {} if failures is None else failures
        self.pending = set()
        self._last = {}
        self._timeouts = Throttle(clock, self._warnTimeouts)
        self._refusals = Throttle(clock, self._warnRefusals)

    def timedOut(self, peer):
        """
        A handshake did not complete in time.
        """
        self._last["timeout"] = peer
        self.counted("timeout")
        self._timeouts.count()

    def refused(self, peer, why, by_tls):
        """
        A handshake failed: TLS refused it (C{by_tls}), or the peer left
        before it was done (worth a warning only when we dialled).
        """
        self.counted(failure_kind(str(why)) if by_tls else "closed")
        if by_tls or self.done is not None:
            self._last["refused"] = (peer, why)
            self._refusals.count()
        else:
            self.log.info("connection from {peer} closed before its TLS handshake", peer=peer)

    def counted(self, kind):
        """
        Count a failed handshake of this kind.
        """
        self.failures[kind] = self.failures.get(kind, 0) + 1

    def _warnTimeouts(self, count):
        if count == 1:
            self.log.warn("TLS handshake with {peer} timed out after {timeout:g}s: {hint} (--handshake-timeout)",
                          peer=self._last["timeout"], timeout=self.timeout, hint=self.hint)
        else:
            self.log.warn("{count} TLS handshakes timed out after {timeout:g}s, the last with {peer}: {hint} "
                          "(--handshake-timeout)", count=count, peer=self._last["timeout"], timeout=self.timeout,
                          hint=self.hint)

    def _warnRefusals(self, count):
        peer, why = self._last["refused"]
        if count == 1:
            self.log.warn("TLS handshake with {peer} failed: {reason}", peer=peer, reason=why)
        else:
            self.log.warn("{count} TLS handshakes failed, the last with {peer}: {reason}", count=count, peer=peer,
                          reason=why)

    def flush(self):
        """
        Report the warnings not yet reported (the end is stopping).
        """
        self._timeouts.flush()
        self._refusals.flush()

    def buildProtocol(self, addr):
        return HandshakeGate(self, addr)

    def handshakeDone(self, protocol):
        if self.done is not None:
            self.done(protocol)

    def handshakeFailed(self, failure):
        if self.failed is not None:
            self.failed(failure)

    def closeAll(self):
        """
        Drop every connection still in its handshake, and report what is
        not yet reported.

        :return: a Deferred that fires once they have closed.
        """
        self.flush()
        closing = [gate.whenClosed() for gate in self.pending]
        for gate in list(self.pending):
            gate.abort()
        return gatherResults(closing, consumeErrors=True)


class _SecurePort:
    """
    A listening port whose C{stopListening} also drops the connections
    still in their handshake.
    """

    def __init__(self, port, gates):
        self._port = port
        self._gates = gates

    def __getattr__(self, name):
        return getattr(self._port, name)

    def stopListening(self):
        return gatherResults([maybeDeferred(self._port.stopListening), self._gates.closeAll()], consumeErrors=True)


@implementer(ICountingEndpoint, ICertificateReloader)
class SecureEndpoint:
    """
    What the secure server and client endpoints share: the endpoint they
    wrap, the handshake's timeout and log wording, and the TLS options,
    built by C{make} and built again on L{reloadCertificates}.
    """

    log = Logger()
    #: it refuses no connection for a cap
    refused = NOTHING

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
        listening = self.endpoint.listen(TLSMemoryBIOFactory(self, False, gates))
        return listening.addCallback(_SecurePort, gates)


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
        connecting = self.endpoint.connect(TLSMemoryBIOFactory(self.tls, True, gates))
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
