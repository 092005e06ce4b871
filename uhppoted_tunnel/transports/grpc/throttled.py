# -*- test-case-name: tests.unit.test_grpchostile -*-
"""
The warnings of a gRPC end's HTTP/2 connections, each through a
L{Throttle} of its own (the first at once, then a count at most every
10 s), so that a flood of bad peers is a few lines: a peer that broke the
protocol or flooded, a connection that made no call in time, a call
refused for its path or headers.
"""

from twisted.logger import Logger

from uhppoted_tunnel.core.throttle import Throttle


class Warnings:
    """
    The throttled warnings of one end's connections.
    """

    log = Logger()

    def __init__(self, clock, log_tag):
        self.clock = clock
        self.log_tag = log_tag
        self._last = {}
        self._throttles = {}

    def _count(self, key, last, report):
        throttle = self._throttles.get(key)
        if throttle is None:
            throttle = self._throttles[key] = Throttle(self.clock, lambda count: report(count, *self._last[key]))
        self._last[key] = last
        throttle.count()

    def broke(self, peer, reason):
        """
        A peer broke HTTP/2 or flooded: its connection is closed.
        """
        self._count("broke", (peer, reason), self._warnBroke)

    def _warnBroke(self, count, peer, reason):
        if count == 1:
            self.log.warn("closed the HTTP/2 connection with {peer}: {reason}", peer=peer, reason=reason)
        else:
            self.log.warn("closed {count} HTTP/2 connections that broke the protocol or flooded, the last with "
                          "{peer}: {reason}", count=count, peer=peer, reason=reason)

    def noCall(self, peer, timeout):
        """
        A connection made no call within C{--handshake-timeout}.
        """
        self._count("no call", (peer, timeout), self._warnNoCall)

    def _warnNoCall(self, count, peer, timeout):
        self.log.warn("{count} client connection(s) started no call within {timeout:g}s of connecting, the last "
                      "from {peer}: closed (is the peer a gRPC client? --handshake-timeout)", count=count,
                      timeout=timeout, peer=peer)

    def refusedCall(self, peer, why):
        """
        A call was refused for what it asked (a path, a content type).
        """
        self._count("refused", (peer, why), self._warnRefused)

    def _warnRefused(self, count, peer, why):
        if count == 1:
            self.log.warn("refused a call from {peer}: {why}", peer=peer, why=why)
        else:
            self.log.warn("refused {count} calls, the last from {peer}: {why}", count=count, peer=peer, why=why)

    def flush(self):
        """
        Report what is not yet reported (the end is stopping).
        """
        for throttle in self._throttles.values():
            throttle.flush()
