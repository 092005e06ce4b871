# -*- test-case-name: tests.unit.test_stream,tests.unit.test_seam -*-
"""
The factory of a stream end's connections (L{FrameFactory}): what every
connection, of any transport, reports to
(L{uhppoted_tunnel.interfaces.IConnectionReporter}); it keeps the ready
ones for the relay, tells the relay and the end's link of each that
comes and goes (logged throttled, L{uhppoted_tunnel.link.churn}), and
warns, throttled, of what it drops.
"""

from twisted.internet.defer import gatherResults
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel.core.counts import QUEUE_FULL, TOO_LONG
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.interfaces import IConnectionReporter, ITally
from uhppoted_tunnel.link.churn import ConnectionLog
from uhppoted_tunnel.link.framed import FramedProtocol


@implementer(IConnectionReporter, ITally)
class FrameFactory(Factory):
    """
    Builds the connections of one stream end and keeps those that are
    ready (the relay's C{connections}); tells the relay and the end of each
    one that comes and goes.

    :ivar connections: the ready connections, oldest first.
    :ivar protocols: every open connection, to close at stop: the ready
        ones, and those a secure transport holds in their handshake (each
        with C{close()} and C{whenClosed()}).
    """

    noisy = False
    log = Logger()

    def __init__(self, relay, settings, clock, log_tag, closed=None, link=None, protocol=FramedProtocol,
                 connections=None):
        """
        :param relay: the end's L{uhppoted_tunnel.interfaces.IRelay}.
        :param settings: the tunnel's options (C{max-payload},
            C{max-send-queue}, C{stall-timeout}, C{dead-peer-timeout}).
        :param clock: an C{IReactorTime}.
        :param log_tag: the tag of the end's log lines.
        :param closed: called with C{(connection, reason)} when a ready
            connection closes, or C{None}.
        :param link: the end's L{uhppoted_tunnel.link.lifecycle.LinkState}, told
            of each connection ready and closed, or C{None}.
        :param protocol: what each connection is, built with the longest
            payload: a byte stream's L{FramedProtocol}, or a message
            transport's own protocol providing
            L{uhppoted_tunnel.interfaces.IFrameConnection}, which reports
            to this factory as L{IConnectionReporter} says.
        :param connections: the list to keep the ready connections in (the
            relay's, built before it), or C{None} for a new one.
        """
        self.relay = relay
        self.clock = clock
        self.protocol = protocol
        self.max_payload = settings["max-payload"]
        self.max_send_queue = settings["max-send-queue"]
        self.stall_timeout = settings["stall-timeout"]
        self.dead_peer_timeout = settings["dead-peer-timeout"]
        self.log_tag = log_tag
        self.closed = closed
        self.link = link
        self.connections = [] if connections is None else connections
        self.protocols = set()
        self._dropped = Throttle(clock, self._warnDropped)
        self._last = {}
        self._too_long = Throttle(clock, self._warnTooLong)
        self._stalled = Throttle(clock, self._warnStalled)
        self._churn = ConnectionLog(clock, self.log)

    def buildProtocol(self, addr):
        protocol = self.protocol(self.max_payload)
        protocol.factory = self
        protocol.relay = self.relay
        protocol.log_tag = self.log_tag
        return protocol

    def connectionReady(self, connection):
        self.protocols.add(connection)
        self.connections.append(connection)
        self._churn.opened(connection, connection.peer)
        if self.link is not None:
            self.link.connected(connection, connection.peer)
        self.relay.connected(connection)

    def connectionClosed(self, connection, reason):
        self.protocols.discard(connection)
        if connection in self.connections:
            self.connections.remove(connection)
            self.relay.disconnected(connection)
            if self.link is not None:
                self.link.disconnected(connection)
        self._churn.closed(connection, connection.peer)
        if self.closed is not None:
            self.closed(connection, reason)

    def frameDropped(self, connection):
        """
        A frame for a peer that is not reading was dropped.
        """
        self._dropped.count()

    def frameTooLong(self, connection, error):
        """
        A peer sent a frame longer than C{--max-payload}: it is dropped.
        """
        self._last["too long"] = (connection.peer, error)
        self._too_long.count()

    def _warnTooLong(self, count):
        peer, error = self._last["too long"]
        if count == 1:
            self.log.warn("closing connection from {peer}: {reason}", peer=peer, reason=error)
        else:
            self.log.warn("closed {count} connections that sent impossible frames, the last from {peer}: {reason}",
                          count=count, peer=peer, reason=error)

    def stalledTooLong(self, connection, timeout):
        """
        A peer read nothing for C{--stall-timeout}: it is dropped.
        """
        self._last["stalled"] = connection.peer
        self._stalled.count()

    def _warnStalled(self, count):
        self.log.warn("closed {count} connection(s) that read nothing sent to them for {timeout:g}s, the last "
                      "to {peer} (--stall-timeout)", count=count, timeout=self.stall_timeout,
                      peer=self._last["stalled"])

    def _warnDropped(self, count):
        self.log.warn("dropped {n} frame(s) for peers that are not reading what is sent to them "
                      "(--max-send-queue {limit} bytes each)", n=count, limit=self.max_send_queue)

    @property
    def dropped(self):
        """
        The number of frames dropped for peers that were not reading.
        """
        return self._dropped.total

    def tally(self, t):
        """
        Add the frames dropped to a L{uhppoted_tunnel.observe.telemetry.Tally}.
        """
        t.drop(QUEUE_FULL, self._dropped.total)
        t.drop(TOO_LONG, self._too_long.total)

    def closeAll(self):
        """
        Close every connection, and report the drops not yet reported.

        :return: a Deferred that fires once they have all closed.
        """
        for throttle in (self._dropped, self._too_long, self._stalled):
            throttle.flush()
        closing = [protocol.whenClosed() for protocol in self.protocols]
        for protocol in list(self.protocols):
            protocol.close()
        closed = gatherResults(closing, consumeErrors=True)
        closed.addBoth(self._flushChurn)
        return closed

    def _flushChurn(self, result):
        self._churn.flush()
        return result
