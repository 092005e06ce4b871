# -*- test-case-name: tests.unit.test_sshproxy,tests.loopback.test_sshproxy -*-
"""
One SSH connection to the server an C{ssh://} proxy names, with conch:
L{SSHClient} verifies the server's key against C{known_hosts} (never
trusting a key on first use), logs in with a key (L{KeyLogin}: the
identity file, or ssh-agent's keys), and hands over an L{SSHSession}
(the C{ssh-connection} service) that keeps itself alive and opens the
channels (L{uhppoted_tunnel.transports.proxy.sshchannel}).

What goes wrong before the session is ready fails C{ready} with a
L{ProxyError} whose message is the line the client end logs: the host
key refused (naming the offered key), the login refused, the server
closing the connection.
"""

import struct

from twisted.conch.ssh.agent import AGENT_SIGN_RESPONSE, AGENTC_SIGN_REQUEST, SSHAgentClient
from twisted.conch.ssh.common import NS, getNS
from twisted.conch.ssh.connection import SSHConnection
from twisted.conch.ssh.keys import Key
from twisted.conch.ssh.transport import SSHClientTransport
from twisted.conch.ssh.userauth import SSHUserAuthClient
from twisted.internet.defer import fail, succeed
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from uhppoted_tunnel.transports.proxy.sshfiles import HostKeyRefused, describe_key
from uhppoted_tunnel.transports.proxy.urls import ProxyError

#: Go's TCP keepalive interval: the longest between two keepalive
#: requests on an idle SSH connection.
KEEPALIVE = 15.0

#: conch logs each step of its own; the failures that matter are logged
#: by the client end, once, in words.
QUIET = Logger(namespace="uhppoted_tunnel.ssh.conch", observer=lambda event: None)


#: ssh-agent's flag for an RSA signature with SHA-256 (rsa-sha2-256).
SSH_AGENT_RSA_SHA2_256 = 2


class SHA2Key(Key):
    """
    An RSA key that logs in as C{rsa-sha2-256} (RFC 8332): OpenSSH 8.8 and
    later refuse C{ssh-rsa}'s SHA-1 signatures, the only ones conch's
    client makes. Its blob is still C{ssh-rsa}'s.
    """

    def sshType(self):
        kind = Key.sshType(self)
        return b"rsa-sha2-256" if kind == b"ssh-rsa" else kind

    def public(self):
        return SHA2Key.fromString(Key.public(self).blob())


def login_key(key):
    """
    The key as it logs in: an RSA key as a L{SHA2Key}, others as they are.
    """
    if key.type() != "RSA":
        return key
    return SHA2Key.fromString(key.toString("openssh"))


def _signature(answer):
    """
    The signature in ssh-agent's answer to a sign request.
    """
    if answer[:1] != bytes([AGENT_SIGN_RESPONSE]):
        raise ProxyError("ssh-agent did not sign")
    return getNS(answer[1:])[0]


class KeyLogin(SSHUserAuthClient):
    """
    Logs in with public keys only: the identity, or the agent's keys.
    """

    _log = QUIET
    preferredOrder = [b"publickey"]

    def __init__(self, user, instance, keys, agent=None, blobs=()):
        """
        :param keys: the private L{Key}s to offer.
        :param agent: a connected C{SSHAgentClient}, or C{None}.
        :param blobs: the agent's public key blobs, to offer after C{keys}.
        """
        SSHUserAuthClient.__init__(self, user, instance)
        self.offers = [(login_key(key).public(), login_key(key)) for key in keys]
        self.offers += [(login_key(Key.fromString(blob)), None) for blob in blobs]
        self.offered = []
        self.agent = agent
        self.current = None

    def getPublicKey(self):
        if not self.offers:
            return None
        self.current = self.offers.pop(0)
        self.offered.append(self.current[0])
        return self.current[0]

    def getPrivateKey(self):
        return succeed(self.current[1])

    def signData(self, publicKey, signData):
        if self.current[1] is None:
            flags = SSH_AGENT_RSA_SHA2_256 if publicKey.type() == "RSA" else 0
            request = NS(publicKey.blob()) + NS(signData) + struct.pack(">L", flags)
            return self.agent.sendRequest(AGENTC_SIGN_REQUEST, request).addCallback(_signature)
        return SSHUserAuthClient.signData(self, publicKey, signData)

    def getPassword(self, prompt=None):
        return None

    def getGenericAnswers(self, name, instruction, prompts):
        return fail(ProxyError("no passwords"))


class SSHSession(SSHConnection):
    """
    The C{ssh-connection} service, once logged in: fires C{ready} with
    itself, and sends a keepalive request every C{interval} seconds,
    closing the connection when one goes unanswered for C{timeout}.
    """

    _log = QUIET

    def __init__(self, ready, clock, timeout):
        SSHConnection.__init__(self)
        self.ready = ready
        self.clock = clock
        self.timeout = timeout
        self.interval = min(KEEPALIVE, timeout / 2.0)
        self._tick = None
        self._deadline = None

    def serviceStarted(self):
        SSHConnection.serviceStarted(self)
        self._tick = self.clock.callLater(self.interval, self._keepalive)
        self.ready.callback(self)

    def _keepalive(self):
        self._tick = self.clock.callLater(self.interval, self._keepalive)
        if self._deadline is not None:
            return
        self._deadline = self.clock.callLater(self.timeout, self._dead)
        # OpenSSH answers a request it does not know with a failure: an
        # answer either way
        answer = self.sendGlobalRequest(b"keepalive@openssh.com", b"", wantReply=True)
        answer.addBoth(self._answered)

    def _answered(self, result):
        if self._deadline is not None and self._deadline.active():
            self._deadline.cancel()
        self._deadline = None

    def _dead(self):
        self._deadline = None
        self.transport.abort("SSH server {} left {:g}s of keepalives unanswered (--dead-peer-timeout)".format(
            self.transport.proxy, self.timeout))

    def serviceStopped(self):
        for call in (self._tick, self._deadline):
            if call is not None and call.active():
                call.cancel()
        self._tick = self._deadline = None
        SSHConnection.serviceStopped(self)


class SSHClient(SSHClientTransport):
    """
    The client side of one SSH connection, until its L{SSHSession} is
    ready (C{ready} fires with it) or fails (C{ready} fails with a
    L{ProxyError}); C{lost} is called with a sentence once the connection
    has closed, after it was ready.
    """

    _log = QUIET
    ready = None
    why = None
    _login = None

    def __init__(self, proxy, known_hosts, keys, agent_endpoint, clock, timeout, ready, lost):
        """
        :param proxy: the L{SSHProxy}.
        :param known_hosts: the L{KnownHosts}.
        :param keys: the private L{Key}s to log in with (none: the agent's).
        :param agent_endpoint: the endpoint of ssh-agent, or C{None}.
        :param clock: an C{IReactorTime}.
        :param timeout: C{--dead-peer-timeout}, for the keepalives.
        :param ready: the C{Deferred} fired with the L{SSHSession}.
        :param lost: called with a sentence when a ready connection closes.
        """
        self.proxy = proxy
        self.known_hosts = known_hosts
        self.keys = keys
        self.agent_endpoint = agent_endpoint
        self.clock = clock
        self.timeout = timeout
        self.ready = ready
        self.lost = lost
        self.agent = None

    def abort(self, why):
        """
        Drop the connection at once; C{why} is the sentence it ends with.
        """
        self.why = why
        if self.transport is not None:
            self.transport.abortConnection()

    def verifyHostKey(self, hostKey, fingerprint):
        try:
            self.known_hosts.verify(self.proxy.known_host, Key.fromString(hostKey))
        except (HostKeyRefused, ValueError) as e:
            self.why = "SSH server {}: {}".format(self.proxy, e)
            return fail(ProxyError(self.why))
        return succeed(True)

    def connectionSecure(self):
        session = SSHSession(self.ready, self.clock, self.timeout)
        if self.keys or self.agent_endpoint is None:
            self._login = KeyLogin(self.proxy.user.encode("utf-8"), session, self.keys)
            self.requestService(self._login)
            return
        factory = Factory.forProtocol(SSHAgentClient)

        def identities(agent):
            self.agent = agent
            return agent.requestIdentities()

        def login(found):
            blobs = [blob for blob, comment in found] if not isinstance(found, Failure) else []
            self._login = KeyLogin(self.proxy.user.encode("utf-8"), session, [], self.agent, blobs)
            self.requestService(self._login)

        self.agent_endpoint.connect(factory).addCallback(identities).addBoth(login)

    def receiveError(self, reasonCode, description):
        self.why = "SSH server {} closed the connection: {}".format(
            self.proxy, description.decode("utf-8", "replace")[:200] or "code {}".format(reasonCode))
        SSHClientTransport.receiveError(self, reasonCode, description)

    def _refusedLogin(self):
        offered = ", ".join(describe_key(key) for key in self._login.offered)
        if not offered:
            return ("SSH server {} was offered no key to log in with: give --ssh-identity, or run ssh-agent "
                    "(SSH_AUTH_SOCK) with a key".format(self.proxy))
        return ("SSH server {} refused to log in {} with key {}: is its public key in that user's "
                "authorized_keys?".format(self.proxy, self.proxy.user, offered))

    def connectionLost(self, reason=None):
        SSHClientTransport.connectionLost(self, reason)
        if self.agent is not None and self.agent.transport is not None:
            self.agent.transport.loseConnection()
        if self.why is not None:
            why = self.why
        elif self._login is not None and not self.ready.called:
            why = self._refusedLogin()
        else:
            why = "the SSH connection to {} closed".format(self.proxy)
        if not self.ready.called:
            self.ready.errback(Failure(ProxyError(why)))
        else:
            self.lost(why)
