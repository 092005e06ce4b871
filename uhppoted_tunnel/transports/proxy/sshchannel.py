# -*- test-case-name: tests.unit.test_sshproxy,tests.loopback.test_sshproxy -*-
"""
A C{direct-tcpip} channel (RFC 4254 7.2, what C{ssh -W HOST:PORT} opens)
as the transport of a client end's protocol: L{ForwardedChannel} asks
the SSH server to connect to the target and, once it has, builds the
end's protocol (a framed one, or TLS over it) and runs it over the
channel exactly as over a socket: C{write}, C{loseConnection},
C{abortConnection}, a push producer paused while the server's window is
full.

A refusal fails the attempt with a L{ProxyError} in words:
administratively prohibited (C{AllowTcpForwarding}, C{PermitOpen}), the
target refusing the connection, and the rest by their code.
"""

import ipaddress

from twisted.conch.ssh.channel import SSHChannel
from twisted.conch.ssh.connection import (OPEN_ADMINISTRATIVELY_PROHIBITED, OPEN_CONNECT_FAILED,
                                          OPEN_RESOURCE_SHORTAGE, OPEN_UNKNOWN_CHANNEL_TYPE)
from twisted.conch.ssh.forwarding import packOpen_direct_tcpip
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.error import ConnectionAborted, ConnectionDone, NoProtocol
from twisted.internet.interfaces import IConsumer, IPushProducer, ITCPTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.transports.proxy.sshconn import QUIET
from uhppoted_tunnel.core.addresses import host_port
from uhppoted_tunnel.transports.proxy.urls import ProxyError

#: What each refusal means, and what to do about it.
REFUSALS = {
    OPEN_ADMINISTRATIVELY_PROHIBITED: "forwarding is forbidden (administratively prohibited): allow it in "
                                      "sshd_config (AllowTcpForwarding yes, and PermitOpen if set must name the "
                                      "target)",
    OPEN_CONNECT_FAILED: "the target refused the connection or could not be reached from the SSH server: is the "
                         "host half listening there?",
    OPEN_UNKNOWN_CHANNEL_TYPE: "the server does not forward (direct-tcpip is unknown to it)",
    OPEN_RESOURCE_SHORTAGE: "the server is short of resources (too many channels?)",
}


def target_address(host, port):
    """
    The address a channel's protocol sees as its peer: the target.
    """
    try:
        if ipaddress.ip_address(host).version == 6:
            return IPv6Address("TCP", host, port)
    except ValueError:
        pass
    return IPv4Address("TCP", host, port)


@implementer(ITCPTransport, IConsumer, IPushProducer)
class ForwardedChannel(SSHChannel):
    """
    One forwarded connection: C{ready} fires with the end's protocol once
    the server has connected to the target, or fails with a
    L{ProxyError}; C{done} is called once the channel is closed, opened
    or not.
    """

    name = b"direct-tcpip"
    _log = QUIET
    protocol = None
    producer = None
    _aborted = False

    def __init__(self, proxy, host, port, factory, ready, done):
        SSHChannel.__init__(self)
        self.proxy = proxy
        self.host = host
        self.port = port
        self.factory = factory
        self.ready = ready
        self.done = done
        self.target = host_port(host, port)

    def request(self):
        """
        The channel-specific data of the open request: the target, and a
        source of 127.0.0.1 port 0 (this side has none to tell).
        """
        return packOpen_direct_tcpip((self.host, self.port), ("127.0.0.1", 0))

    def channelOpen(self, specificData):
        if self.ready.called:
            # cancelled while the server connected
            self.abortConnection()
            return
        protocol = self.factory.buildProtocol(target_address(self.host, self.port))
        if protocol is None:
            self.abortConnection()
            self.ready.errback(Failure(NoProtocol()))
            return
        self.protocol = protocol
        protocol.makeConnection(self)
        self.ready.callback(protocol)

    def openFailed(self, reason):
        code = getattr(reason, "data", None)
        why = REFUSALS.get(code)
        if why is None and isinstance(code, int):
            text = getattr(reason, "value", b"")
            text = text.decode("utf-8", "replace")[:200] if isinstance(text, bytes) else str(text)
            why = "refused ({}, code {})".format(text or "no reason given", code)
        elif why is None:
            why = "the SSH connection closed before the server answered"
        self.done(self)
        if not self.ready.called:
            self.ready.errback(Failure(ProxyError("SSH server {} did not forward to {}: {}".format(
                self.proxy, self.target, why))))

    def dataReceived(self, data):
        if self.protocol is not None:
            self.protocol.dataReceived(data)

    def eofReceived(self):
        # the target closed its side: the end's protocols do not half-close
        self.loseConnection()

    def closed(self):
        self.done(self)
        protocol, self.protocol = self.protocol, None
        if protocol is not None:
            protocol.connectionLost(Failure(ConnectionAborted() if self._aborted else ConnectionDone()))
            self.factory.doStop()

    # the transport

    def loseConnection(self):
        # once what waits for the server's window is sent (conch calls
        # this again when it has drained)
        if not self.localClosed:
            SSHChannel.loseConnection(self)

    def abortConnection(self):
        """
        Close at once, dropping what the server's window has not taken.
        """
        self._aborted = True
        self.buf = b""
        self.extBuf = []
        if not self.localClosed:
            self.closing = 1
            self.conn.sendClose(self)

    def getPeer(self):
        return target_address(self.host, self.port)

    def getHost(self):
        return self.conn.transport.transport.getHost()

    def setTcpNoDelay(self, enabled):
        pass

    def getTcpNoDelay(self):
        return True

    def setTcpKeepAlive(self, enabled):
        pass

    def getTcpKeepAlive(self):
        return True

    def loseWriteConnection(self):
        self.conn.sendEOF(self)

    # the server's window, as a consumer's producer

    def registerProducer(self, producer, streaming):
        self.producer = producer
        if not self.areWriting:
            producer.pauseProducing()

    def unregisterProducer(self):
        self.producer = None

    def stopWriting(self):
        if self.producer is not None:
            self.producer.pauseProducing()

    def startWriting(self):
        if self.producer is not None:
            self.producer.resumeProducing()

    # what this side reads (the SSH connection's windows pace it)

    def pauseProducing(self):
        pass

    def resumeProducing(self):
        pass

    def stopProducing(self):
        self.abortConnection()
