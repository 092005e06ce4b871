# -*- test-case-name: tests.unit.test_grpcloop,tests.unit.test_grpc -*-
"""
The reactor side of a gRPC stream (L{StreamTransport}): what its
connection is connected to, counting the bytes it has handed the loop
against those the loop has written, so that C{--max-send-queue} holds
without a lock (see L{uhppoted_tunnel.transports.grpc.loop}).
"""

from collections import deque

from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.transports.grpc.loop import FRAME_OVERHEAD, GIVE_UP, call_soon


class StreamTransport:
    """
    The reactor side of one gRPC stream: what its connection is connected
    to, in place of a socket's transport.

    It hands the loop the frames to send, drops one that would queue more
    than C{max_send_queue} bytes (the peer is not reading), and is told
    from the loop (C{callFromThread}) of every frame that arrives and of
    the end. Frames go to L{receiver}, which the connection sets.

    :ivar protocol: the protocol connected to it, which is told of the end
        (C{connectionLost}).
    :ivar receiver: C{(id, payload) -> None}, called with each frame that
        arrives, or C{None} to drop them.
    :ivar queued: bytes handed to the loop so far (with
        L{FRAME_OVERHEAD} each).
    """

    disconnecting = False
    disconnected = False
    protocol = None
    receiver = None

    def __init__(self, pump, loop, peer, host, max_send_queue, clock, call_from_thread, call_soon=call_soon):
        """
        :param pump: the stream's L{FramePump}.
        :param loop: the loop the pump runs on.
        :param peer: the peer's C{IAddress}.
        :param host: this side's C{IAddress}.
        :param max_send_queue: bytes that may wait to be written.
        :param clock: an C{IReactorTime}.
        :param call_from_thread: the reactor's C{callFromThread} (or, on
            the reactor's own loop, that loop's C{call_soon}).
        :param call_soon: C{(loop, function, *args)}: call C{function} on
            the loop's thread (L{call_soon}, or a plain C{loop.call_soon}
            when that thread is the reactor's).
        """
        self.pump = pump
        self.loop = loop
        self.peer_address = peer
        self.host_address = host
        self.peer = format_address(peer)
        self.max_send_queue = max_send_queue
        self.clock = clock
        self.call_from_thread = call_from_thread
        self.call_soon = call_soon
        self.queued = 0
        self.incoming = deque()
        self._draining = False
        self._give_up = None

    def getPeer(self):
        return self.peer_address

    def getHost(self):
        return self.host_address

    def write(self, data):
        raise TypeError("a gRPC stream carries frames: use sendFrame")

    writeSequence = write

    def sendFrame(self, frame_id, payload):
        """
        Hand the loop one frame to send.

        :return: False if dropped: the stream has ended, or the peer is
            not reading (what is queued would pass C{max_send_queue}).
        """
        size = len(payload) + FRAME_OVERHEAD
        if self.disconnected or self.queued + size - self.pump.written > self.max_send_queue:
            return False
        self.queued += size
        pump = self.pump
        pump.outgoing.append((frame_id, payload))
        if pump.idle:
            self.call_soon(self.loop, pump.wake)
        return True

    def loseConnection(self):
        """
        End the stream once what is queued is sent.
        """
        self._close(self.pump.finish)

    def abortConnection(self):
        """
        End the stream at once.
        """
        self._close(self.pump.abort)

    def _close(self, how):
        if self.disconnected:
            return
        self.disconnecting = True
        self.call_soon(self.loop, how)
        if self._give_up is None:
            self._give_up = self.clock.callLater(GIVE_UP, self.ended,
                                                 ConnectionLost("the gRPC stream did not end within {:g}s".format(
                                                     GIVE_UP)))

    def arrived(self, frame_id, payload):
        """
        A frame has arrived: called on the loop's thread, which queues it
        for the reactor, waking the reactor unless a drain is due.
        """
        self.incoming.append((frame_id, payload))
        if not self._draining:
            self._draining = True
            self.call_from_thread(self.drain)

    # what the loop reports, through callFromThread

    def drain(self):
        """
        Hand the receiver every frame queued.
        """
        # cleared first: a frame queued from now on schedules another drain
        self._draining = False
        incoming = self.incoming
        receiver = self.receiver
        while incoming:
            frame_id, payload = incoming.popleft()
            if receiver is not None:
                receiver(frame_id, payload)

    def ended(self, reason):
        """
        The stream has ended (once; later reports are ignored).

        :param reason: an exception saying why (see L{FramePump.run}).
        """
        if self.disconnected:
            return
        self.disconnected = True
        self.receiver = None
        if self._give_up is not None and self._give_up.active():
            self._give_up.cancel()
        self._give_up = None
        if self.protocol is not None:
            self.protocol.connectionLost(Failure(reason))
