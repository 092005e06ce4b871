# -*- test-case-name: tests.unit.test_grpcrefusals -*-
"""
What a C{grpcs/} server can know of the clients grpc refuses. grpc's TLS
handshake runs inside grpc, which tells Python nothing when it refuses a
client certificate (none, one from a foreign CA, an expired one); all it
does is ask for the certificates at the start of every connection. So
L{HandshakeWatch} counts those connections and the calls that start: a
connection that has started no call when C{--handshake-timeout} is up was
refused, or is no gRPC-over-TLS client, or stays idle (and grpc closes it
then: its idle limit is the same). Those are warned of, throttled, as the
C{tls/} and C{wss/} ends warn of refused handshakes.
"""

from twisted.logger import Logger

from uhppoted_tunnel.core.throttle import Throttle


class HandshakeWatch:
    """
    Connections begun and calls started on a C{grpcs/} server, in the
    reactor thread (grpc's threads tell it with C{callFromThread}).

    :ivar pending: connections begun that have started no call yet.
    :ivar refused: how many connections started no call in time.
    """

    log = Logger()

    def __init__(self, clock, timeout, log_tag="GRPCS"):
        """
        :param clock: an C{IReactorTime}.
        :param timeout: seconds a connection may take to start a call
            (C{--handshake-timeout}).
        """
        self.clock = clock
        self.timeout = timeout
        self.log_tag = log_tag
        self.pending = 0
        self.refused = 0
        self._checks = set()
        self._warnings = Throttle(clock, self._warn)

    def begun(self):
        """
        grpc began a connection (it asked for the certificates).
        """
        self.pending += 1
        check = self.clock.callLater(self.timeout, self._check)
        self._checks.add(check)

    def called(self):
        """
        A call started: one connection begun is accounted for.
        """
        if self.pending:
            self.pending -= 1

    def _check(self):
        self._checks = {check for check in self._checks if check.active()}
        if self.pending:
            self.pending -= 1
            self.refused += 1
            self._warnings.count()

    def _warn(self, count):
        self.log.warn("{count} client connection(s) started no call within {timeout:g}s of connecting: grpc refused "
                      "their TLS handshake (no client certificate, one not signed by --ca-cert, or an expired one), "
                      "or they are not gRPC-over-TLS clients, or they stayed idle (--handshake-timeout); grpc does "
                      "not say which, nor from where", count=count, timeout=self.timeout)

    def stop(self):
        """
        Stop watching (the server has stopped): report what is not yet
        reported, and leave no timer.
        """
        for check in self._checks:
            if check.active():
                check.cancel()
        self._checks.clear()
        self.pending = 0
        self._warnings.flush()
