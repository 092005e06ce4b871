# -*- test-case-name: tests.unit.test_sshproxy,tests.loopback.test_sshproxy -*-
"""
The SSH proxy: L{SSHEndpoint} reaches C{HOST:PORT} through an SSH server
(C{--proxy ssh://USER@HOST[:PORT]}), as C{ssh -W} does: one SSH
connection (L{uhppoted_tunnel.transports.proxy.sshconn}), shared by the
end's attempts, each opening a C{direct-tcpip} channel
(L{uhppoted_tunnel.transports.proxy.sshchannel}) that the end's protocol
runs over.

The connection is made when an attempt needs it, kept alive while it
carries a channel, closed after L{IDLE} seconds without one, and made
again after a loss, by the next attempt (so the client end's
C{ClientService} paces it with Go's backoff and counts its failures for
C{--max-retries}). Each failure, in setting it up or in opening a
channel, fails the attempt with a L{ProxyError} whose message the end
logs.
"""

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.endpoints import UNIXClientEndpoint, connectProtocol
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.link.framed import DEFAULT_DEAD_PEER_TIMEOUT
from uhppoted_tunnel.transports.proxy.sshchannel import ForwardedChannel
from uhppoted_tunnel.transports.proxy.sshconn import SSHClient
from uhppoted_tunnel.transports.proxy.keymode import identity_mode_warning
from uhppoted_tunnel.transports.proxy.sshfiles import (KnownHosts, default_known_hosts,
                                                       load_identity)
from uhppoted_tunnel.core.addresses import host_port
from uhppoted_tunnel.transports.proxy.urls import ProxyError

#: Seconds an SSH connection is kept open with no channel on it.
IDLE = 300.0


@implementer(IStreamClientEndpoint)
class SSHEndpoint:
    """
    Reaches C{HOST:PORT} through an SSH server: C{connect} fires with the
    factory's protocol once the server has connected the channel to the
    target, or fails with a L{ProxyError} (the server unreachable, its
    key refused, the login refused, forwarding refused, no answer within
    the handshake timeout). Cancelling it abandons the attempt.
    """

    log = Logger()

    def __init__(self, dial, proxy, host, port, clock, timeout, dead_peer_timeout, known_hosts, keys,
                 agent_endpoint=None, log_tag="TCP", idle=IDLE):
        """
        :param dial: the endpoint that reaches the SSH server.
        :param proxy: the L{SSHProxy}.
        :param host: the target's host, as the SSH server resolves it.
        :param port: the target's port.
        :param clock: an C{IReactorTime}.
        :param timeout: seconds to set up the connection, and to open a
            channel (C{--handshake-timeout}).
        :param dead_peer_timeout: seconds a keepalive may go unanswered.
        :param known_hosts: the L{KnownHosts} the server's key must be in.
        :param keys: the private keys to log in with (none: the agent's).
        :param agent_endpoint: ssh-agent's endpoint, or C{None}.
        :param log_tag: the tag of the log lines.
        :param idle: seconds a connection is kept with no channel.
        """
        self.dial = dial
        self.proxy = proxy
        self.host = host
        self.port = port
        self.clock = clock
        self.timeout = timeout
        self.dead_peer_timeout = dead_peer_timeout
        self.known_hosts = known_hosts
        self.keys = list(keys)
        self.agent_endpoint = agent_endpoint
        self.log_tag = log_tag
        self.idle = idle
        self.target = host_port(host, port)
        #: the ready L{SSHSession}, or C{None}
        self.session = None
        #: the channels open or opening
        self.channels = set()
        self._waiting = []
        self._client = None
        self._idle = None
        self._setup = None

    def connect(self, factory):
        ready = Deferred(lambda d: self._cancelled(d, channel))
        channel = ForwardedChannel(self.proxy, self.host, self.port, factory, ready, self._done)
        # as a direct endpoint does: the factory is started for the attempt
        # and stopped once it fails or its connection has closed
        factory.doStart()
        ready.addErrback(self._stopFactory, factory)
        timer = self.clock.callLater(self.timeout, self._timedOut, ready)
        ready.addBoth(self._cancelTimer, timer)
        self._session().addCallbacks(self._open, self._failed, callbackArgs=(channel,), errbackArgs=(ready,))
        return ready

    def _stopFactory(self, failure, factory):
        factory.doStop()
        return failure

    @staticmethod
    def _cancelTimer(result, timer):
        if timer.active():
            timer.cancel()
        return result

    def _timedOut(self, ready):
        if ready.called:
            return
        what = ("open a channel to " + self.target if self.session is not None
                else "complete the handshake and login")
        ready.errback(Failure(ProxyError("SSH server {} did not {} within {:g}s (--handshake-timeout)".format(
            self.proxy, what, self.timeout))))

    def _cancelled(self, ready, channel):
        ready.errback(Failure(CancelledError()))
        if channel.conn is not None:
            channel.abortConnection()
        self._maybeIdle()

    def _open(self, session, channel):
        if channel.ready.called:
            self._maybeIdle()
            return
        self._cancelIdle()
        self.channels.add(channel)
        session.openChannel(channel, channel.request())

    def _failed(self, failure, ready):
        if not ready.called:
            ready.errback(failure)

    def _done(self, channel):
        self.channels.discard(channel)
        self._maybeIdle()

    # the shared connection

    def _session(self):
        """
        A C{Deferred} of the ready L{SSHSession}: the one there is, or the
        one being made, or a new one.
        """
        waiting = Deferred()
        if self.session is not None:
            waiting.callback(self.session)
            return waiting
        self._waiting.append(waiting)
        if self._client is None:
            ready = Deferred()
            self._client = SSHClient(self.proxy, self.known_hosts, self.keys, self.agent_endpoint, self.clock,
                                     self.dead_peer_timeout, ready, self._lost)
            ready.addCallbacks(self._ready, self._notReady)
            connectProtocol(self.dial, self._client).addErrback(self._unreachable, ready)
            self._setup = self.clock.callLater(self.timeout, self._setupTimedOut, self._client)
        return waiting

    def _unreachable(self, failure, ready):
        if not ready.called:
            ready.errback(Failure(ProxyError("could not reach SSH server {}: {}".format(
                self.proxy, failure.getErrorMessage()))))

    def _setupTimedOut(self, client):
        self._setup = None
        client.abort("SSH server {} did not complete the handshake and login within {:g}s "
                     "(--handshake-timeout)".format(self.proxy, self.timeout))

    def _cancelSetup(self):
        if self._setup is not None and self._setup.active():
            self._setup.cancel()
        self._setup = None

    def _ready(self, session):
        self._cancelSetup()
        self.session = session
        self.log.info("logged in to SSH server {proxy} as {user}", proxy=str(self.proxy), user=self.proxy.user,
                      log_tag=self.log_tag)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(session)
        self._maybeIdle()

    def _notReady(self, failure):
        self._cancelSetup()
        self._client = None
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.errback(failure)

    def _lost(self, why):
        self._cancelIdle()
        self.session = None
        self._client = None
        self.log.info("{why}", why=why, log_tag=self.log_tag)

    def _maybeIdle(self):
        if self.session is None or self.channels or self._idle is not None:
            return
        self._idle = self.clock.callLater(self.idle, self.close)

    def _cancelIdle(self):
        if self._idle is not None and self._idle.active():
            self._idle.cancel()
        self._idle = None

    def close(self):
        """
        Close the SSH connection (the channels on it close with it).
        """
        self._cancelIdle()
        if self._client is not None and self._client.transport is not None:
            self._client.transport.loseConnection()

    def __repr__(self):
        return "<SSHEndpoint {} via {}>".format(self.target, self.proxy)


log = Logger()


def ssh_endpoint(reactor, dial, proxy, host, port, settings, timeout, log_tag="TCP"):
    """
    The L{SSHEndpoint} a client end's settings describe: the identity
    read (and warned of if others can read it) or, without one, ssh-agent
    through C{SSH_AUTH_SOCK}; the known hosts from C{--ssh-known-hosts}
    or C{~/.ssh/known_hosts}, which must list a key.

    :param settings: the tunnel's options (C{ssh-identity},
        C{ssh-passphrase-file}, C{ssh-known-hosts}, C{dead-peer-timeout},
        and the environment as their C{environ}).
    :raise ValueError: naming an unusable file, or no way to log in.
    """
    environ = getattr(settings, "environ", None) or {}
    identity = settings.get("ssh-identity")
    keys, agent = [], None
    if identity:
        keys = [load_identity(identity, settings.get("ssh-passphrase-file"))]
        warning = identity_mode_warning(identity)
        if warning is not None:
            log.warn("{problem}", problem=warning, log_tag=log_tag)
    elif environ.get("SSH_AUTH_SOCK"):
        agent = UNIXClientEndpoint(reactor, environ["SSH_AUTH_SOCK"])
    else:
        raise ValueError("--proxy {}: no key to log in with: give --ssh-identity, or run ssh-agent "
                         "(SSH_AUTH_SOCK)".format(proxy))
    path = settings.get("ssh-known-hosts") or default_known_hosts(environ)
    known_hosts = KnownHosts(path)
    known_hosts.verifiable()
    return SSHEndpoint(dial, proxy, host, port, reactor, timeout, settings.get("dead-peer-timeout", DEFAULT_DEAD_PEER_TIMEOUT),
                       known_hosts, keys, agent, log_tag)
