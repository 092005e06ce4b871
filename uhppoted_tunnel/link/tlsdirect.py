# -*- test-case-name: tests.unit.test_tlsdirect -*-
"""
TLS whose records go to a TCP socket without waiting a reactor turn.

Twisted's C{TLSMemoryBIOProtocol} hands what it encrypted to the TCP
connection's C{write}, which only buffers: the reactor is asked to watch
the socket for writability (an C{epoll_ctl}), sends on its next turn, and
stops watching (another C{epoll_ctl}), as for plain TCP before
L{uhppoted_tunnel.link.writes}. L{DirectTLSProtocol} sends the records
with L{write_now} instead, when its transport is a TCP connection that
L{write_now} may write to (L{tcp_connection}); what the kernel does not
take, or anything behind what is queued already, is queued as Twisted
queues it. L{DirectTLSFactory} makes them: the secure transports wrap
their connections with it (C{transports/tls/secure.py}).

It overrides C{_flushSendBIO}, the one method through which Twisted's TLS
protocol writes what it encrypted to its transport (Twisted 24 to 26):
not part of Twisted's interface, so a Twisted that writes otherwise
writes with its own C{write}, a turn later but right.
"""

from OpenSSL.SSL import WantReadError
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol

from uhppoted_tunnel.link.writes import tcp_connection, write_now

#: the most bytes read from the TLS send buffer at once (Twisted's own)
SEND_CHUNK = 2 ** 15


class DirectTLSProtocol(TLSMemoryBIOProtocol):
    """
    Twisted's TLS protocol, sending its records to a TCP connection at
    once (L{write_now}).
    """

    def _flushSendBIO(self):
        if self._tlsConnection is None:
            # the connection was lost while what arrived was delivered (its
            # connectionLost, nested in the delivery, let the TLS go)
            return
        try:
            data = self._tlsConnection.bio_read(SEND_CHUNK)
        except WantReadError:
            # nothing to send now
            return
        # the connection itself, not a wrapper round it (the connection
        # caps'), whose state is not the connection's
        connection = tcp_connection(self.transport)
        if connection is not None:
            write_now(connection, data)
        else:
            self.transport.write(data)


class DirectTLSFactory(TLSMemoryBIOFactory):
    """
    Twisted's TLS wrapping factory, making L{DirectTLSProtocol}s.
    """

    protocol = DirectTLSProtocol
