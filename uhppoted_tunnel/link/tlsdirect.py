# -*- test-case-name: tests.unit.test_tlsdirect,tests.unit.test_tlsreceive -*-
"""
TLS whose records go to a TCP socket without waiting a reactor turn, and
whose received records are decrypted without a failing call each.

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

On receiving, Twisted's protocol calls pyOpenSSL's C{recv} until it
raises C{WantReadError}, and then C{bio_read} until it raises it too:
two exceptions, built through pyOpenSSL's error path, for every read from
the socket, some 30,000 instructions, as many as the record's own
decryption and delivery. L{DirectTLSProtocol} counts the records that
each read completes (L{RecordCounter}, from their 5-byte headers: nothing
of TLS but the length of its records) and, once the handshake is done,
calls C{recv} once for each: when every record gave application data,
nothing else was received (no alert, no post-handshake message), so
OpenSSL has nothing to answer and nothing to send. Anything else (a
record that gave none, C{close_notify}, an error, a stream whose records
are not TLS's) goes Twisted's way, as does everything until the
handshake is done.

A write that fits one record is encrypted and sent without Twisted's
loop round C{Connection.send} (C{write} and C{_write}), as that loop
does it.

It overrides C{_flushSendBIO}, the method through which Twisted's TLS
protocol writes what it encrypted to its transport, C{dataReceived} and
C{write}, using the state Twisted keeps (C{_tlsConnection},
C{_handshakeDone}, C{_appSendBuffer}, C{_lostTLSConnection}, C{_aborted})
and its methods C{_flushReceiveBIO}, C{_shutdownTLS},
C{_tlsShutdownFinished}, C{_bufferedWrite} and C{_write} (Twisted 24 to
26): not part of Twisted's interface, so a Twisted without them
(L{TWISTED_STATE}) is left to receive and write its own way, a turn later
and with its failing calls but right.
"""

from OpenSSL.SSL import Error, WantReadError, ZeroReturnError
from twisted.protocols.tls import TLSMemoryBIOFactory, TLSMemoryBIOProtocol
from twisted.python.failure import Failure

from uhppoted_tunnel.link.writes import tcp_connection, write_now

#: the most bytes read from the TLS send buffer at once (Twisted's own)
SEND_CHUNK = 2 ** 15
#: the most plaintext a TLS record carries
RECORD_PLAINTEXT = 2 ** 14
#: the most bytes read from a record at once: more than the largest
#: record's plaintext (2**14), so that one C{recv} empties a record
RECEIVE_CHUNK = 2 ** 15

#: What L{DirectTLSProtocol.dataReceived} and C{write} use of Twisted's
#: C{TLSMemoryBIOProtocol}'s class; with any of them missing they receive
#: and write as Twisted does.
TWISTED_STATE = ("_handshakeDone", "_lostTLSConnection", "_aborted", "_flushReceiveBIO", "_flushSendBIO",
                 "_shutdownTLS", "_tlsShutdownFinished", "_bufferedWrite", "_write")
#: and of a connected one
TWISTED_CONNECTION = ("_tlsConnection", "_appSendBuffer")

#: a TLS record's header: content type, version (2 bytes), length (2 bytes)
HEADER = 5
#: the record content types TLS 1.2 and 1.3 send (change_cipher_spec,
#: alert, handshake, application_data, heartbeat)
CONTENT_TYPES = frozenset(range(20, 25))


def twisted_state(cls=TLSMemoryBIOProtocol):
    """
    Whether Twisted's TLS protocol keeps the state and has the methods
    that L{DirectTLSProtocol.dataReceived} and C{write} use.
    """
    return all(hasattr(cls, name) for name in TWISTED_STATE)


class RecordCounter:
    """
    Follows the TLS records of a byte stream from its first byte, to say
    how many each piece of the stream completes.

    :ivar left: bytes of the record under way still to come (0 between
        records).
    :ivar head: the start of a header that a piece ended in.
    :ivar lost: whether the stream stopped looking like TLS records (an
        unknown content type or version): from then on it counts nothing
        and its owner must not rely on it.
    """

    __slots__ = ("left", "head", "lost")

    def __init__(self):
        self.left = 0
        self.head = b""
        self.lost = False

    def completed(self, data):
        """
        :param data: the next piece of the stream.
        :return: how many records C{data} completes.
        """
        if self.lost:
            return 0
        if self.head:
            data = self.head + data
            self.head = b""
        end = len(data)
        position = self.left
        if position > end:
            self.left = position - end
            return 0
        count = 1 if position else 0
        while position + HEADER <= end:
            if data[position] not in CONTENT_TYPES or data[position + 1] != 3:
                self.lost = True
                return 0
            position += HEADER + ((data[position + 3] << 8) | data[position + 4])
            if position > end:
                self.left = position - end
                return count
            count += 1
        self.left = 0
        self.head = data[position:]
        return count


#: whether this Twisted's TLS protocol is the one L{DirectTLSProtocol}'s
#: receiving and writing are written for
TWISTED_KNOWN = twisted_state()


class DirectTLSProtocol(TLSMemoryBIOProtocol):
    """
    Twisted's TLS protocol, sending its records to a TCP connection at
    once (L{write_now}), and decrypting what it receives with one C{recv}
    a record once the handshake is done.

    :ivar _records: the L{RecordCounter} of what the peer sends.
    :ivar _sink: the transport, and the TCP connection L{write_now} may
        write to for it (L{tcp_connection}) or C{None}.
    """

    _records = None
    _sink = None

    def dataReceived(self, data):
        records = self._records
        if records is None:
            records = self._records = RecordCounter()
            # a Twisted that keeps its state otherwise: its own way
            records.lost = not (TWISTED_KNOWN and all(hasattr(self, name) for name in TWISTED_CONNECTION))
        count = records.completed(data)
        if (records.lost or not self._handshakeDone or self._appSendBuffer
                or self._lostTLSConnection or self._aborted):
            # the handshake, writes waiting for it, or a stream this does
            # not follow: Twisted's way
            TLSMemoryBIOProtocol.dataReceived(self, data)
            return
        tls = self._tlsConnection
        tls.bio_write(data)
        application = self.wrappedProtocol
        while count:
            try:
                received = tls.recv(RECEIVE_CHUNK)
            except WantReadError:
                # a record that gave no application data (a post-handshake
                # message, a warning alert): there may be something to
                # send, and (with fewer records than counted) to receive
                break
            except ZeroReturnError:
                # close_notify: as Twisted's protocol answers it
                self._shutdownTLS()
                self._tlsShutdownFinished(None)
                return
            except Error:
                self._tlsShutdownFinished(Failure())
                return
            if not self._aborted:
                application.dataReceived(received)
            if self._lostTLSConnection:
                return
            if len(received) == RECEIVE_CHUNK:
                # a record larger than a chunk (none that TLS allows):
                # the rest of it Twisted's way
                break
            count -= 1
        else:
            # every record gave its application data, all of it (a recv
            # that returns less than asked for has emptied its record)
            return
        self._flushReceiveBIO()

    def write(self, data):
        if (self.disconnecting or self._lostTLSConnection or not 0 < len(data) <= RECORD_PLAINTEXT
                or not TWISTED_KNOWN):
            # after loseConnection, once TLS is gone, nothing (which
            # Twisted does not send, and OpenSSL refuses) or more than a
            # record: Twisted's way
            TLSMemoryBIOProtocol.write(self, data)
            return
        # Twisted's _write for what fits one record
        try:
            sent = self._tlsConnection.send(data)
        except WantReadError:
            # the handshake (or a renegotiation) under way
            self._bufferedWrite(data)
            return
        except Error:
            self._tlsShutdownFinished(Failure())
            return
        self._flushSendBIO()
        if sent < len(data):
            TLSMemoryBIOProtocol._write(self, data[sent:])

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
        transport = self.transport
        sink = self._sink
        if sink is None or sink[0] is not transport:
            # the connection itself, not a wrapper round it (the connection
            # caps'), whose state is not the connection's; what
            # tcp_connection says of a transport holds while it lasts
            sink = self._sink = (transport, tcp_connection(transport))
        connection = sink[1]
        if connection is not None:
            write_now(connection, data)
        else:
            transport.write(data)


class DirectTLSFactory(TLSMemoryBIOFactory):
    """
    Twisted's TLS wrapping factory, making L{DirectTLSProtocol}s.
    """

    protocol = DirectTLSProtocol
