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
next turn). L{writer} picks it for the transports it applies to.
"""

from functools import partial

from twisted.internet.tcp import Connection


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


def writer(transport):
    """
    The way to write to a transport: L{write_now} for a TCP connection (or
    a wrapper whose C{write} is the connection's own, as the connection
    caps' is), its own C{write} for any other (a TLS transport, a fake).

    :return: a callable taking the bytes.
    """
    write = transport.write
    connection = getattr(write, "__self__", None)
    if isinstance(connection, Connection) and not connection.TLS:
        return partial(write_now, connection)
    return write
