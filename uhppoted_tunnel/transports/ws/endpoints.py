# -*- test-case-name: tests.unit.test_websocket,tests.loopback.test_websocket -*-
"""
The factories and endpoints of the C{ws/} and C{wss/} ends, around the
protocols of L{uhppoted_tunnel.transports.ws.protocol}: a server
endpoint whose connections reach the end once upgraded, and a client
endpoint whose C{connect} fires once the server has granted the upgrade
(or fails saying why, so that C{ClientService} counts a failed attempt);
the autobahn options, the end's clock for every timer autobahn sets, and
the end's throttled warnings.
"""

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketServerFactory
from autobahn.websocket.types import ConnectingRequest
from twisted.internet.defer import CancelledError, Deferred, gatherResults
from twisted.internet.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.interfaces import ICountingEndpoint
from uhppoted_tunnel.link.lifecycle import StoppingPort
from uhppoted_tunnel.link.limits import NOTHING

from uhppoted_tunnel.transports.ws.upgrade import PHRASES, shown
from uhppoted_tunnel.transports.ws.protocol import AUTOBAHN_LOG, WSClientProtocol, WSServerProtocol
from uhppoted_tunnel.core.throttle import Throttle

#: Seconds a peer has to answer a close frame before the connection is
#: dropped.
CLOSE_TIMEOUT = 1.0

#: A client's C{User-Agent}.
USER_AGENT = "uhppoted-tunnel"


class _Call:
    """
    A delayed call that may be cancelled when it has run already.
    """

    __slots__ = ("call",)

    def __init__(self, call):
        self.call = call

    def cancel(self):
        if self.call.active():
            self.call.cancel()


class _Timers:
    """
    Stands in for autobahn's batched timer, on the end's clock (autobahn
    would use txaio's global reactor).
    """

    def __init__(self, clock):
        self.clock = clock

    def call_later(self, delay, function, *args, **kwargs):
        return _Call(self.clock.callLater(delay, function, *args, **kwargs))


def _protocol_options(settings):
    """
    The autobahn options both sides share: messages no longer than a
    frame may be, the handshake timeouts, pings, and a protocol error
    dropping the connection at once.
    """
    limit = settings["max-message"]
    return dict(maxFramePayloadSize=limit, maxMessagePayloadSize=limit, autoFragmentSize=0, failByDrop=True,
                openHandshakeTimeout=settings["handshake-timeout"], closeHandshakeTimeout=CLOSE_TIMEOUT,
                autoPingInterval=settings["ping"], autoPingTimeout=settings["ping"])


class _Warnings:
    """
    The throttled warnings of one end (the first at once, then a count at
    most every 10 s).
    """

    tunnel_log = Logger()

    def __init__(self, clock, log_tag, ping):
        self.clock = clock
        self.log_tag = log_tag
        self.ping = ping
        self._last = {}
        self._throttles = {}

    def _count(self, key, last, report):
        throttle = self._throttles.get(key)
        if throttle is None:
            throttle = self._throttles[key] = Throttle(self.clock, lambda count: report(key, count))
        self._last[key] = last
        throttle.count()

    def pingTimedOut(self, peer):
        self._count("ping", peer, self._warnPing)

    def _warnPing(self, key, count):
        if count == 1:
            self.tunnel_log.warn("no answer from {peer} to a ping within {timeout:g}s: closing the connection "
                                 "(--ws-ping)", peer=self._last[key], timeout=self.ping)
        else:
            self.tunnel_log.warn("closed {count} connections that answered no ping within {timeout:g}s, the last "
                                 "with {peer} (--ws-ping)", count=count, peer=self._last[key], timeout=self.ping)

    def refused(self, peer, code, reason):
        """
        An upgrade was refused with C{code}: one throttle per status, so
        that a scan's 404s hide no 401.
        """
        self._count(code, (peer, reason), self._warnRefused)

    def _warnRefused(self, code, count):
        peer, reason = self._last[code]
        status = "{} {}".format(code, PHRASES.get(code, "Error"))
        if count == 1:
            self.tunnel_log.warn("refused the WebSocket upgrade of {peer} ({status}): {reason}", peer=peer,
                                 status=status, reason=shown(reason, 160))
        else:
            self.tunnel_log.warn("refused {count} WebSocket upgrades ({status}), the last of {peer}: {reason}",
                                 count=count, status=status, peer=peer, reason=shown(reason, 160))

    def timedOut(self, peer, timeout):
        self._count("timeout", (peer, timeout), self._warnTimedOut)

    def _warnTimedOut(self, key, count):
        peer, timeout = self._last[key]
        if count == 1:
            self.tunnel_log.warn("no WebSocket upgrade from {peer} within {timeout:g}s: is the peer a plain tcp/ "
                                 "connector? (--handshake-timeout)", peer=peer, timeout=timeout)
        else:
            self.tunnel_log.warn("{count} connections made no WebSocket upgrade within {timeout:g}s, the last from "
                                 "{peer}: is the peer a plain tcp/ connector? (--handshake-timeout)", count=count,
                                 peer=peer, timeout=timeout)

    def flush(self):
        for throttle in self._throttles.values():
            throttle.flush()


class WSServerFactory(WebSocketServerFactory):
    """
    Builds the connections of one server end, wrapping the end's factory
    (C{wrapped}), whose protocol each connection connects once upgraded.

    :ivar pending: the connections not yet upgraded.
    """

    protocol = WSServerProtocol
    noisy = False
    log = AUTOBAHN_LOG

    def __init__(self, wrapped, policy, settings, clock, log_tag):
        """
        :param wrapped: the end's factory.
        :param policy: the L{uhppoted_tunnel.transports.ws.upgrade.UpgradePolicy}.
        :param settings: see L{uhppoted_tunnel.transports.ws.maker.ws_settings}.
        :param clock: an C{IReactorTime}.
        :param log_tag: the end's log tag.
        """
        WebSocketServerFactory.__init__(self, server=None, reactor=clock)
        self._batched_timer = _Timers(clock)
        self.setProtocolOptions(versions=[13], webStatus=False, requireMaskedClientFrames=True,
                                **_protocol_options(settings))
        self.wrapped = wrapped
        self.policy = policy
        self.log_tag = log_tag
        self.warnings = _Warnings(clock, log_tag, settings["ping"])
        self.pingTimedOut = self.warnings.pingTimedOut
        self.pending = set()

    def closePending(self):
        """
        Drop every connection not yet upgraded, and report what is not yet
        reported (the end is stopping).

        :return: a Deferred that fires once they have closed.
        """
        self.warnings.flush()
        closing = [protocol.whenClosed() for protocol in self.pending]
        for protocol in list(self.pending):
            protocol.transport.abortConnection()
        return gatherResults(closing, consumeErrors=True)


@implementer(IStreamServerEndpoint, ICountingEndpoint)
class WebSocketServerEndpoint:
    """
    Any stream server endpoint (TLS-wrapped for C{wss/}), with the
    WebSocket upgrade on every connection it accepts; a connection reaches
    the end's factory once upgraded.

    :ivar secure: the L{uhppoted_tunnel.transports.tls.secure.SecureServerEndpoint}
        under it, or C{None}.
    """

    #: the upgrade counts none of it: the endpoints it wraps do
    handshake_failures = refused = dropped = NOTHING

    def __init__(self, endpoint, policy, settings, clock, log_tag, secure=None):
        self.endpoint = endpoint
        self.policy = policy
        self.settings = settings
        self.clock = clock
        self.log_tag = log_tag
        self.secure = secure

    def listen(self, factory):
        websockets = WSServerFactory(factory, self.policy, self.settings, self.clock, self.log_tag)
        return self.endpoint.listen(websockets).addCallback(StoppingPort, websockets.closePending)



class WSClientFactory(WebSocketClientFactory):
    """
    Builds the connection of one attempt of a client end, wrapping the
    factory the end dials with (C{wrapped}), and settles the attempt
    (C{ready}) with the end's protocol or a failure.
    """

    protocol = WSClientProtocol
    noisy = False
    log = AUTOBAHN_LOG

    def __init__(self, wrapped, endpoint, ready):
        WebSocketClientFactory.__init__(self, useragent=USER_AGENT, reactor=endpoint.clock)
        self._batched_timer = _Timers(endpoint.clock)
        self.setProtocolOptions(serverConnectionDropTimeout=0, **_protocol_options(endpoint.settings))
        self.wrapped = wrapped
        self.request = endpoint.request
        self.kind = endpoint.log_tag.lower()
        self.pingTimedOut = endpoint.warnings.pingTimedOut
        self.ready = ready
        self.pending = set()

    def settle(self, outcome):
        if not self.ready.called:
            if isinstance(outcome, Failure):
                self.ready.errback(outcome)
            else:
                self.ready.callback(outcome)


@implementer(IStreamClientEndpoint, ICountingEndpoint)
class WebSocketClientEndpoint:
    """
    Any stream client endpoint (TLS-wrapped for C{wss/}), with the
    WebSocket upgrade: C{connect} fires with the end's protocol once the
    server has granted the upgrade, and fails with L{UpgradeFailed} (or
    the dial's or TLS handshake's failure) when it has not.

    :ivar secure: the L{uhppoted_tunnel.transports.tls.secure.SecureClientEndpoint}
        under it, or C{None}.
    """

    #: the upgrade counts none of it: the endpoints it wraps do
    handshake_failures = refused = dropped = NOTHING

    def __init__(self, endpoint, host, port, path, token, settings, clock, log_tag, secure=None):
        """
        :param endpoint: the endpoint dialled.
        :param host: the server's name or address (for C{Host}).
        :param port: its port.
        :param path: the path asked for.
        :param token: the bearer token to send, or C{None}.
        :param settings: see L{uhppoted_tunnel.transports.ws.maker.ws_settings}.
        """
        self.endpoint = endpoint
        headers = {} if token is None else {"Authorization": "Bearer " + token}
        self.request = ConnectingRequest(host="[{}]".format(host) if ":" in host else host, port=port,
                                         resource=path, headers=headers, useragent=USER_AGENT, origin=None,
                                         protocols=[])
        self.settings = settings
        self.clock = clock
        self.log_tag = log_tag
        self.secure = secure
        self.warnings = _Warnings(clock, log_tag, settings["ping"])

    def connect(self, factory):
        websockets = None

        def cancel(d):
            for protocol in list(websockets.pending):
                protocol.transport.abortConnection()
            connecting.cancel()

        ready = Deferred(cancel)
        websockets = WSClientFactory(factory, self, ready)
        connecting = self.endpoint.connect(websockets)
        connecting.addErrback(lambda failure: None if failure.check(CancelledError) else websockets.settle(failure))
        return ready
