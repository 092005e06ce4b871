# -*- test-case-name: tests.loopback.test_tls,tests.unit.test_tls,tests.unit.test_metrics -*-
"""
The TLS handshake of a secure transport's connections: L{HandshakeGate}
holds each connection until its handshake completes, then connects the
end's own protocol to it; a handshake that fails or takes longer than
C{--handshake-timeout} is dropped, and L{HandshakeGateFactory} warns of
it, throttled, saying what probably happened (L{tls_reason},
L{failure_kind}).
"""

from cryptography import x509
from OpenSSL import SSL
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.interfaces import IHandshakeListener, ISSLTransport
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import alsoProvides, implementer

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.interfaces import IPeerIdentity
from uhppoted_tunnel.link.ends import LinkRefused
from uhppoted_tunnel.transports.tls.explain import explain
from uhppoted_tunnel.link.limits import prove


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
    A one-line reason for a failed handshake, from OpenSSL's error stack
    (L{explain} says it in words).

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


def certificate_subject(certificate):
    """
    A peer certificate's subject as RFC 4514 text (C{CN=site-a,O=Example}),
    the identity a host's route table knows the site by.

    :param certificate: a pyOpenSSL C{X509}.
    """
    return certificate.to_cryptography().subject.rfc4514_string()


def pem_subject(pem):
    """
    The subject of a PEM certificate, as L{certificate_subject} gives it.

    :param pem: the certificate (bytes).
    """
    return x509.load_pem_x509_certificate(pem).subject.rfc4514_string()


def note_subject(protocol, subject):
    """
    Give a connection the subject of the certificate its peer proved, as
    its L{IPeerIdentity} (the connection itself, under any protocol
    wrappers a wrapping factory put around it, such as the connection
    caps').
    """
    while isinstance(protocol, ProtocolWrapper):
        protocol = protocol.wrappedProtocol
    protocol.identity = subject
    alsoProvides(protocol, IPeerIdentity)


def note_identity(protocol, transport):
    """
    If the peer presented a certificate (verified against C{--ca-cert}, as
    every certificate presented is), give the connection its subject as
    its L{IPeerIdentity}.
    """
    if not ISSLTransport.providedBy(transport):
        return
    certificate = transport.getPeerCertificate()
    if certificate is not None:
        note_subject(protocol, certificate_subject(certificate))


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
        note_identity(protocol, self.transport)
        if self.transport.getPeerCertificate() is not None:
            # a client certificate the CA signed: under a server end's caps,
            # no longer one that may be closed to make room for a newcomer
            prove(self.transport)
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

    def _explain(self, reason):
        """
        Why the handshake failed, in words (L{explain}), or C{None}.
        """
        transport = self.transport
        return explain(reason, transport.getHandle() if ISSLTransport.providedBy(transport) else None)

    def connectionLost(self, reason):
        self._cancelTimer()
        self.gates.pending.discard(self)
        if self.protocol is not None:
            if reason.check(SSL.Error):
                raw = tls_reason(reason)
                why = self._explain(reason) or raw
                self.gates.counted(failure_kind(raw))
                self.log.warn("TLS connection with {peer} failed: {reason}", peer=self.peer, reason=why)
                reason = Failure(LinkRefused(why))
            self.protocol.connectionLost(reason)
        else:
            if self.timed_out:
                why = HandshakeTimeout(self.gates.timeout)
            else:
                raw = tls_reason(reason)
                why = HandshakeFailed(self._explain(reason) or raw)
                self.gates.refused(self.peer, why, reason.check(SSL.Error) is not None, failure_kind(raw))
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
        self._left = Throttle(clock, self._infoLeft)

    def timedOut(self, peer):
        """
        A handshake did not complete in time.
        """
        self._last["timeout"] = peer
        self.counted("timeout")
        self._timeouts.count()

    def refused(self, peer, why, by_tls, kind=None):
        """
        A handshake failed: TLS refused it (C{by_tls}), or the peer left
        before it was done (worth a warning only when we dialled).

        :param kind: its L{failure_kind}, from OpenSSL's reason (C{why}
            may be a sentence); from C{why} when C{None}.
        """
        self.counted((kind or failure_kind(str(why))) if by_tls else "closed")
        if by_tls or self.done is not None:
            self._last["refused"] = (peer, why)
            self._refusals.count()
        else:
            self._last["left"] = peer
            self._left.count()

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

    def _infoLeft(self, count):
        if count == 1:
            self.log.info("connection from {peer} closed before its TLS handshake", peer=self._last["left"])
        else:
            self.log.info("{count} connections closed before their TLS handshake, the last from {peer}",
                          count=count, peer=self._last["left"])

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
        self._left.flush()

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
