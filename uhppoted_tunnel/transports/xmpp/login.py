# -*- test-case-name: tests.unit.test_xmpp -*-
"""
Logging in to an XMPP server: the endpoint an C{xmpp/} end dials, whose
C{connect} fires once the account is logged in and bound to a resource,
and fails, with a reason the log can show, if it never is.

Twisted's own XMPP client does the work (L{client.XMPPAuthenticator}):
STARTTLS, required (a server that does not offer it is refused), with the
server's certificate verified against C{--ca-cert} and the account's
domain by the project's TLS policy (L{uhppoted_tunnel.transports.tls.certs}); then SASL
(C{PLAIN}, inside that TLS), resource binding and the session. The whole
login must be done within C{--handshake-timeout}. Only once it is done is
the end's protocol built and connected, so C{ClientService} counts a
refused password, a certificate it cannot trust or a server that never
answers as a failed attempt, with the same backoff and C{--max-retries}
as a dial that fails.

Where the server is: C{--xmpp-server HOST:PORT}, or as the account's
domain publishes it in DNS (L{SRVEndpoint}).
"""

from OpenSSL import SSL
from twisted.internet.defer import CancelledError, Deferred, inlineCallbacks
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from twisted.words.protocols.jabber import client, error, sasl, xmlstream
from twisted.words.protocols.jabber.jid import JID
from zope.interface import implementer

from uhppoted_tunnel.transports.endpoints import DIAL_TIMEOUT
from uhppoted_tunnel.transports.tls.handshake import tls_reason
from uhppoted_tunnel.transports.tls.secure import SecureEndpoint

#: The port of an XMPP domain that publishes no SRV records (RFC 6120 3.2.2).
XMPP_CLIENT_PORT = 5222


class LoginFailed(Exception):
    """
    The login to the XMPP server failed; the message says why.
    """


@implementer(IStreamClientEndpoint)
class SRVEndpoint:
    """
    Dials the XMPP client service of a domain where its DNS SRV records
    (C{_xmpp-client._tcp.DOMAIN}) say, the lowest priority first and,
    within one, the heaviest weight first, each in turn until one answers;
    or C{DOMAIN:5222} when the domain publishes none (RFC 6120 3.2).
    """

    def __init__(self, reactor, domain, resolver=None, dial=None):
        """
        :param reactor: the reactor to dial with.
        :param domain: the account's domain.
        :param resolver: an C{IResolver}; by default Twisted's, made on
            first use from C{/etc/resolv.conf}.
        :param dial: C{(host, port) -> endpoint}, e.g. through a proxy; by
            default a C{HostnameEndpoint}. Each target's endpoint is made
            once.
        """
        self.reactor = reactor
        self.domain = domain
        self.resolver = resolver
        self.dial = dial or (lambda host, port: HostnameEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT))
        self._endpoints = {}

    def _targets(self, result):
        answers = result[0]
        records = [answer.payload for answer in answers if getattr(answer.payload, "TYPE", None) == 33]
        if not records:
            return [(self.domain, XMPP_CLIENT_PORT)]
        if len(records) == 1 and str(records[0].target) in ("", "."):
            raise LoginFailed("{} says it offers no XMPP service (its SRV record's target is '.')".format(
                self.domain))
        records.sort(key=lambda record: (record.priority, -record.weight))
        return [(str(record.target), record.port) for record in records]

    def lookup(self):
        """
        :return: a Deferred firing with the C{(host, port)} to try, in order.
        """
        resolver = self.resolver
        if resolver is None:
            from twisted.names.client import getResolver

            resolver = self.resolver = getResolver()
        looked_up = resolver.lookupService("_xmpp-client._tcp." + self.domain)
        return looked_up.addCallbacks(self._targets, lambda failure: [(self.domain, XMPP_CLIENT_PORT)])

    @inlineCallbacks
    def connect(self, factory):
        targets = yield self.lookup()
        last = None
        for target in targets:
            endpoint = self._endpoints.get(target)
            if endpoint is None:
                endpoint = self._endpoints[target] = self.dial(*target)
            try:
                protocol = yield endpoint.connect(factory)
            except CancelledError:
                raise
            except Exception:
                last = Failure()
                continue
            return protocol
        last.raiseException()

    def __str__(self):
        return "{} (DNS SRV)".format(self.domain)


def describe(failure, stream):
    """
    Why a login failed, in a line an operator can act on.

    :param failure: what the stream's initialisation failed with.
    :param stream: the stream (its first initializer is the step that
        failed).
    """
    account = stream.authenticator.jid.userhost()
    step = stream.initializers[0] if stream.initializers else None
    if failure.check(sasl.SASLAuthError):
        condition = failure.value.condition
        if condition == "not-authorized":
            return ("the server refused the password for {} (SASL not-authorized): check "
                    "--xmpp-password-file and that the account exists".format(account))
        return "the server refused the login of {} (SASL {})".format(account, condition)
    if failure.check(sasl.SASLNoAcceptableMechanism):
        offered = ", ".join(sasl.get_mechanisms(stream)) or "none"
        return "the server offers no login this client can do: it needs PLAIN over TLS (offered: {})".format(offered)
    if failure.check(xmlstream.FeatureNotAdvertized):
        if isinstance(step, xmlstream.TLSInitiatingInitializer):
            return "the server does not offer STARTTLS: this end logs in over TLS only"
        if isinstance(step, sasl.SASLInitiatingInitializer):
            return "the server offers no SASL login"
        return "the server does not offer resource binding"
    if failure.check(xmlstream.TLSFailed):
        return "the server refused STARTTLS"
    if failure.check(error.StanzaError, error.StreamError):
        value = failure.value
        return "{} failed: {}{}".format("binding a resource" if isinstance(step, client.BindInitializer)
                                         else "the login", value.condition,
                                         " ({})".format(value.text) if value.text else "")
    return failure.getErrorMessage()


class _LoginStream(xmlstream.XmlStream):
    """
    A client stream: tells its login, and once logged in its session, of
    its end.
    """

    session = None

    def __init__(self, authenticator, login):
        xmlstream.XmlStream.__init__(self, authenticator)
        self.login = login

    def connectionLost(self, reason):
        if self.session is None:
            # before the stream's own observers fail its login steps, so
            # that the reason is the connection's
            self.login.lost(reason)
            xmlstream.XmlStream.connectionLost(self, reason)
        else:
            xmlstream.XmlStream.connectionLost(self, reason)
            self.session.connectionLost(reason)


class _StreamFactory(Factory):
    """
    Hands the one stream of a login to the first connection made.
    """

    noisy = False

    def __init__(self, stream):
        self.stream = stream

    def buildProtocol(self, addr):
        stream, self.stream = self.stream, None
        return stream


class _Login:
    """
    One attempt to log in: dial, then wait for the stream's login steps,
    the server's stream error, the loss of the connection or the timeout,
    whichever comes first.
    """

    why = None
    _connecting = None
    _timer = None
    _cancelling = False

    def __init__(self, endpoint, factory):
        self.endpoint = endpoint
        self.factory = factory
        self.ready = Deferred(self._cancel)
        # the authenticator replaces its JID with the one bound
        authenticator = client.XMPPAuthenticator(JID(endpoint.account.full()), endpoint.password,
                                                 configurationForTLS=endpoint.tls)
        self.stream = _LoginStream(authenticator, self)
        self.stream.addObserver(xmlstream.STREAM_AUTHD_EVENT, self._loggedIn)
        self.stream.addObserver(xmlstream.INIT_FAILED_EVENT, self._refused)
        self.stream.addObserver(xmlstream.STREAM_ERROR_EVENT, self._streamError)

    def start(self):
        self._timer = self.endpoint.clock.callLater(self.endpoint.timeout, self._timedOut)
        self._connecting = self.endpoint.endpoint.connect(_StreamFactory(self.stream))
        self._connecting.addCallbacks(self._connected, self._notConnected)
        return self.ready

    def _connected(self, protocol):
        self._connecting = None

    def _notConnected(self, failure):
        self._connecting = None
        if not failure.check(CancelledError):
            self._settle(failure)

    def _loggedIn(self, stream):
        if self.ready.called:
            return
        protocol = self.factory.buildProtocol(stream.transport.getPeer())
        if protocol is None:
            stream.transport.abortConnection()
            return
        protocol.attach(stream)
        stream.session = protocol
        protocol.makeConnection(stream.transport)
        self._settle(protocol)

    def _refused(self, failure):
        if self.why is None and not self.ready.called:
            self.why = describe(failure, self.stream)
            self.stream.transport.loseConnection()

    def _streamError(self, failure):
        if self.why is None:
            value = failure.value
            if isinstance(value, error.StreamError):
                self.why = "the server ended the stream: {}{}".format(
                    value.condition, " ({})".format(value.text) if value.text else "")
            else:
                self.why = "the server sent what is not XMPP: is {} an XMPP server?".format(self.endpoint.server)

    def _timedOut(self):
        self._timer = None
        self.why = "no login within {:g}s (--handshake-timeout): is {} an XMPP server?".format(
            self.endpoint.timeout, self.endpoint.server)
        if self._connecting is not None:
            self._connecting.cancel()
            self._settle(Failure(LoginFailed(self.why)))
        else:
            self.stream.transport.abortConnection()

    def lost(self, reason):
        """
        The connection closed before the login was done.
        """
        why = self.why
        if why is None:
            if reason.check(SSL.Error):
                why = "TLS handshake with the server failed: {}".format(tls_reason(reason))
            else:
                why = "the server closed the connection during the login: {}".format(reason.getErrorMessage())
        self._settle(Failure(LoginFailed(why)))

    def _settle(self, outcome):
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.ready.called or self._cancelling:
            return
        if isinstance(outcome, Failure):
            self.ready.errback(outcome)
        else:
            self.ready.callback(outcome)

    def _cancel(self, ready):
        # the Deferred fails with CancelledError once this returns
        self._cancelling = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._connecting is not None:
            self._connecting.cancel()
        elif self.stream.transport is not None:
            self.stream.transport.abortConnection()


@implementer(IStreamClientEndpoint)
class XMPPClientEndpoint(SecureEndpoint):
    """
    Logs in to an XMPP server: C{connect} fires with the protocol the
    factory builds once the account is logged in and bound (given the
    stream with C{attach(stream)}, then connected), or fails with
    L{LoginFailed} (or the dial's own failure).
    """

    def __init__(self, endpoint, server, account, password, make, clock, timeout):
        """
        :param endpoint: the endpoint that dials the server.
        :param server: where that is, for messages.
        :param account: the account's L{JID}.
        :param password: its password.
        :param make: builds the TLS client options (L{reloadCertificates}
            builds them again).
        :param clock: an C{IReactorTime} for the timeout.
        :param timeout: seconds the whole login may take.
        """
        SecureEndpoint.__init__(self, endpoint, make, clock, timeout, "XMPP", "is the server an XMPP server?")
        self.server = server
        self.account = account
        self.password = password

    def connect(self, factory):
        return _Login(self, factory).start()
