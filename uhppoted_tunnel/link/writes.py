# -*- test-case-name: tests.unit.test_writes -*-
"""
Writing to a TCP socket without waiting a reactor turn.

Twisted's stream transports only buffer on C{write}: they ask the reactor
to watch the socket for writability (an C{epoll_ctl}), send when its next
turn reports it writable, and stop watching (another C{epoll_ctl}). For a
frame relayed one at a time that is a whole reactor turn and two system
calls more per hop. L{write_now} sends at once whatever the kernel takes
when nothing is queued before it, and queues the rest, or everything after
an error, with the transport's own C{write}, so that its C{doWrite} deals
with it as it always does (a connection that failed is reported lost on its
next turn). L{TurnWriter} gathers what one reactor turn writes to a
connection into one such send at the turn's end (with the reactor's
C{callAtTurnEnd} where it has one, L{IReactorTurnEnd}, else one
C{callLater(0)} per turn, not per frame), so that a busy link still makes
one system call for many frames; L{writer} picks it for the transports it
applies to.

A TLS transport (Twisted's C{TLSMemoryBIOProtocol}) encrypts on every
C{write}: one TLS record, and pyOpenSSL's calls around it, per frame.
L{TurnGatherer} gathers a turn's frames into one C{write} there, so that a
busy link makes one record run for many frames.
"""

from functools import partial

from twisted.internet.interfaces import ISSLTransport
from twisted.internet.tcp import Connection

from uhppoted_tunnel.interfaces import IReactorTurnEnd

#: What L{write_now} reads of Twisted's C{FileDescriptor} (its buffers and
#: states, not part of its interface): a connection without them all (a
#: Twisted that keeps its buffers otherwise) is written to with its own
#: C{write}, slower but right.
BUFFER_STATE = ("_tempDataLen", "dataBuffer", "offset", "connected", "disconnecting", "_writeDisconnected",
                "writeSomeData")


def write_now(transport, data):
    """
    Write C{data} to a TCP transport: sent at once if nothing is queued
    before it and the kernel takes it, else queued as C{transport.write}
    queues it.

    :param transport: a L{twisted.internet.tcp.Connection}.
    :param data: the bytes.
    """
    # the transport's buffers (Twisted's FileDescriptor keeps what is
    # queued in dataBuffer from offset on, and in _tempDataBuffer)
    if (transport._tempDataLen or len(transport.dataBuffer) > transport.offset or not transport.connected
            or transport.disconnecting or transport._writeDisconnected):
        transport.write(data)
        return
    sent = transport.writeSomeData(data)
    if isinstance(sent, int) and sent > 0:
        if sent >= len(data):
            return
        data = data[sent:]
    # what the kernel did not take, or all of it after an error (doWrite
    # meets the error again and reports the connection lost)
    transport.write(data)


def turn_end(clock):
    """
    How to ask for a call at the end of the reactor's turn, once the
    events of its poll are handled: the reactor's C{callAtTurnEnd} where it
    has one (L{IReactorTurnEnd}), else C{callLater(0)}, which runs before
    the reactor polls again too, at the cost of a timed call.

    :param clock: an C{IReactorTime}, and L{IReactorTurnEnd} if it can.
    :return: a callable taking the function to call.
    """
    if IReactorTurnEnd.providedBy(clock):
        return clock.callAtTurnEnd
    return partial(clock.callLater, 0)


class TurnWriter:
    """
    Writes to a TCP connection: what is written in one reactor turn is
    sent with L{write_now}, in one piece, once the turn's events are
    handled: by the reactor's C{callAtTurnEnd} (L{IReactorTurnEnd}), else
    by C{callLater(0)}, which runs before the reactor polls again too, at
    the cost of a timed call.

    :ivar pending: the bytes waiting for the end of the turn, or C{None}.
    """

    __slots__ = ("connection", "clock", "pending", "_at_turn_end")

    def __init__(self, connection, clock):
        """
        :param connection: a L{twisted.internet.tcp.Connection}.
        :param clock: an C{IReactorTime}, and L{IReactorTurnEnd} if it can.
        """
        self.connection = connection
        self.clock = clock
        self.pending = None
        self._at_turn_end = turn_end(clock)

    def __call__(self, data):
        pending = self.pending
        if pending is None:
            self.pending = [data]
            self._at_turn_end(self.flush)
        else:
            pending.append(data)

    def flush(self):
        """
        Send what waits now (the end of the turn, or before the connection
        is closed).
        """
        pending = self.pending
        if pending:
            self.pending = None
            write_now(self.connection, pending[0] if len(pending) == 1 else b"".join(pending))


class TurnGatherer(TurnWriter):
    """
    Writes to a TLS transport: what is written in one reactor turn goes to
    its C{write} in one piece once the turn's events are handled (one
    encryption, one record run, instead of one per frame).

    :ivar connection: the TLS transport.
    """

    __slots__ = ()

    def flush(self):
        pending = self.pending
        if pending:
            self.pending = None
            self.connection.write(pending[0] if len(pending) == 1 else b"".join(pending))


def writer(transport, factory):
    """
    The way to write to a transport: a L{TurnWriter} for a TCP connection
    (or a wrapper whose C{write} is the connection's own, as the connection
    caps' is), a L{TurnGatherer} for a TLS one, its own C{write} for any
    other (a fake).

    :param factory: the connection's factory, whose C{clock} (an
        C{IReactorTime}) a L{TurnWriter} uses.
    :return: a callable taking the bytes.
    """
    write = transport.write
    connection = tcp_connection(transport)
    if connection is not None:
        return TurnWriter(connection, factory.clock)
    connection = getattr(write, "__self__", None)
    if ISSLTransport.providedBy(transport) or ISSLTransport.providedBy(connection):
        return TurnGatherer(connection if connection is not None else transport, factory.clock)
    return write


def tcp_connection(transport):
    """
    The TCP connection that L{write_now} may write to for C{transport}:
    the transport itself, or the connection a wrapper's C{write} is (as
    the connection caps' is).

    :return: a L{twisted.internet.tcp.Connection} without TLS and with
        the buffer state L{write_now} reads, or C{None} (a TLS transport,
        a fake, another Twisted's).
    """
    connection = getattr(transport.write, "__self__", None)
    if (isinstance(connection, Connection) and not connection.TLS
            and all(hasattr(connection, name) for name in BUFFER_STATE)):
        return connection
    return None
