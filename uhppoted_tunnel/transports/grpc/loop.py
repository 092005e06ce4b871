# -*- test-case-name: tests.unit.test_grpcloop -*-
"""
The bridge between the reactor and grpcio's asyncio API (C{grpc.aio}),
written without grpcio so that it is tested with fakes.

grpcio runs its own threads. The gRPC ends keep all of theirs on one
asyncio event loop, on one thread of its own (L{LoopThread}), shared by
every gRPC end of the process: a stream is two tasks on that loop (a
reader and a writer, L{FramePump}), never a thread, so the threads do not
grow with the streams. The two sides meet in two places only:

- frames cross in a queue each way (a C{deque}, whose C{append} and
  C{popleft} are safe between threads): the side that fills it wakes the
  other only when the other is not already busy with it, so a burst
  costs one wake-up, not one a frame; everything else the reactor asks
  (close a stream) goes by C{loop.call_soon_threadsafe}, and everything
  else the loop reports (a stream ready or ended) by
  C{reactor.callFromThread}, in the order called, after the frames
  queued before it;
- the reactor's side of a stream (L{StreamTransport}) counts the bytes it
  has handed the loop and the loop counts those written (each side writes
  only its own counter), so the reactor knows what is still queued
  without a lock: a frame that would take the queue past
  C{--max-send-queue} is dropped, as for a stream peer that is not
  reading.

Everything else a connection does (relays, log lines, throttled warnings)
stays in the reactor thread.
"""

import asyncio
import threading
from collections import deque

from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from uhppoted_tunnel.core.addresses import format_address
from uhppoted_tunnel.core.frames import FrameTooLong, HEADER_SIZE

#: What a frame costs in a send queue besides its payload: counted as the
#: stream ends count it (their header), so that C{--max-send-queue} means
#: the same on every transport.
FRAME_OVERHEAD = HEADER_SIZE

#: Seconds a closing stream has to send what is queued and for its peer to
#: end the call, before it is cancelled.
CLOSE_TIMEOUT = 5.0

#: Seconds the reactor waits for the loop to report a stream it asked to
#: close as ended, before taking it as ended (a loop that is stuck must not
#: keep the tunnel from stopping).
GIVE_UP = 2 * CLOSE_TIMEOUT


class NotAFrame(Exception):
    """
    A message that is not a C{uhppoted.tunnel.Frame}.
    """

    def __str__(self):
        return "the message is not a uhppoted.tunnel.Frame ({}): is the peer a uhppoted-tunnel?".format(self.args[0])


class MessageTooLong(Exception):
    """
    grpc refused a message longer than the ends allow (C{--max-payload}
    and the message's own bytes); the message is grpc's.
    """

    def __str__(self):
        return "{} (is the peer's --max-payload larger?)".format(self.args[0])


class StallTimeout(Exception):
    """
    The peer read nothing sent to it for C{--stall-timeout} seconds.
    """

    def __init__(self, timeout):
        Exception.__init__(self, timeout)
        self.timeout = timeout

    def __str__(self):
        return "the peer read nothing sent to it for {:g}s".format(self.timeout)


class LoopThread:
    """
    One asyncio event loop on a thread of its own, running while it has
    jobs: the first job starts it, and it stops once the last one ends
    (from its own thread, so that nothing ever waits for it). A job is a
    coroutine that reports to the reactor by itself.

    :ivar name: the thread's name.
    """

    def __init__(self, name="grpc"):
        self.name = name
        self._lock = threading.Lock()
        self._loop = None
        self._jobs = 0

    def submit(self, job, *args):
        """
        Run C{job(*args)} on the loop, starting the loop if need be.

        :param job: a coroutine function.
        :return: C{(loop, future)}: the loop it runs on, and a
            C{concurrent.futures.Future} whose C{cancel()} cancels it (from
            any thread).
        """
        with self._lock:
            loop = self._loop
            if loop is None:
                loop = self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._run, args=(loop,), name=self.name, daemon=True).start()
            self._jobs += 1
        return loop, asyncio.run_coroutine_threadsafe(self._job(loop, job, args), loop)

    async def _job(self, loop, job, args):
        try:
            return await job(*args)
        finally:
            with self._lock:
                self._jobs -= 1
                if not self._jobs and self._loop is loop:
                    self._loop = None
                    loop.stop()

    @property
    def running(self):
        """
        Whether a loop runs (for tests).
        """
        with self._lock:
            return self._loop is not None

    @staticmethod
    def _run(loop):
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            # as asyncio.run ends: whatever is left (grpc's own tasks) is
            # cancelled and let finish
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()


def call_soon(loop, function, *args):
    """
    Call C{function(*args)} on C{loop}'s thread, from any thread; nothing
    happens if the loop has closed (its jobs, and so whatever the call was
    for, have ended).
    """
    try:
        loop.call_soon_threadsafe(function, *args)
    except RuntimeError:
        pass


class FramePump:
    """
    The loop side of one gRPC stream: writes the frames the reactor hands
    it, in order and one at a time, and hands the reactor each frame that
    arrives, checked against C{--max-payload}.

    The pump runs on the loop's thread. The reactor queues frames in
    L{outgoing} and calls L{wake} if the writer is L{idle}; it reaches the
    rest only through C{call_soon_threadsafe}: L{finish} and L{abort}.

    :ivar written: bytes of the frames written so far, each with
        L{FRAME_OVERHEAD}; only the loop's thread changes it.
    """

    def __init__(self, read, write, deliver, diagnose, max_payload, stall_timeout, eof=None, half_close=None,
                 close_timeout=CLOSE_TIMEOUT):
        """
        :param read: a coroutine function giving the next message (with
            C{id} and C{payload}), or C{eof} once the peer has ended.
        :param write: a coroutine function writing one C{(id, payload)}.
        :param deliver: called on the loop's thread with C{(id, payload)}
            of each frame that arrives (L{StreamTransport.arrived} hands
            them to the reactor).
        :param diagnose: an exception of C{read} or C{write} -> the reason
            the stream ended, an exception.
        :param max_payload: the longest payload accepted.
        :param stall_timeout: seconds one write may wait for the peer to
            read before the stream is given up.
        :param eof: what C{read} gives once the peer has ended.
        :param half_close: a coroutine function saying that nothing more
            will be written (a client's C{done_writing}), after which the
            peer ends the call; C{None} on a server, whose call ends when
            its handler returns.
        :param close_timeout: seconds L{finish} waits for the peer.
        """
        self.read = read
        self.write = write
        self.deliver = deliver
        self.diagnose = diagnose
        self.max_payload = max_payload
        self.stall_timeout = stall_timeout
        self.eof = eof
        self.half_close = half_close
        self.close_timeout = close_timeout
        self.outgoing = deque()
        self.written = 0
        #: True while the writer waits for frames (the reactor must wake it)
        self.idle = False
        self._wake = asyncio.Event()
        self._finishing = False
        self._aborted = False
        self._tasks = ()

    # what the reactor calls, through call_soon_threadsafe

    def push(self, frame_id, payload):
        """
        Write a frame after those already queued.
        """
        self.outgoing.append((frame_id, payload))
        self._wake.set()

    def wake(self):
        """
        Frames were queued in L{outgoing} from the reactor's thread while
        the writer was idle.
        """
        self._wake.set()

    def finish(self):
        """
        End the stream once what is queued is written (the peer has
        L{close_timeout} seconds to end its side).
        """
        self._finishing = True
        self._wake.set()

    def abort(self):
        """
        End the stream at once.
        """
        self._aborted = True
        for task in self._tasks:
            task.cancel()

    # the stream

    async def run(self):
        """
        Relay until the stream ends.

        :return: why it ended: C{ConnectionDone} when either side ended it
            cleanly, C{ConnectionAborted} after L{abort}, else the error
            (L{FrameTooLong}, L{NotAFrame}, L{StallTimeout},
            C{ConnectionLost}).
        """
        if self._aborted:
            return ConnectionAborted()
        loop = asyncio.get_running_loop()
        reader, writer = self._tasks = (loop.create_task(self._read()), loop.create_task(self._write()))
        try:
            await asyncio.wait(self._tasks, return_when=asyncio.FIRST_COMPLETED)
            if self._aborted:
                return ConnectionAborted()
            if reader.done():
                return reader.result()
            reason = writer.result()
            if reason is not None:
                return reason
            # finished: what was queued is written
            if self.half_close is None:
                return ConnectionDone()
            try:
                async with asyncio.timeout(self.close_timeout):
                    await self.half_close()
                    return await reader
            except TimeoutError:
                return ConnectionDone()
            except Exception as e:
                return self.diagnose(e)
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # let go of the call (and so of its channel)
            self._tasks = ()
            self.read = self.write = self.half_close = None

    async def _read(self):
        read, eof, deliver, limit = self.read, self.eof, self.deliver, self.max_payload
        while True:
            try:
                message = await read()
            except Exception as e:
                return self.diagnose(e)
            if message is eof:
                return ConnectionDone()
            payload = message.payload
            if len(payload) > limit:
                return FrameTooLong(len(payload), limit, payload[:16])
            deliver(message.id, payload)

    async def _write(self):
        outgoing, write, wake = self.outgoing, self.write, self._wake
        while True:
            while outgoing:
                frame = outgoing.popleft()
                try:
                    async with asyncio.timeout(self.stall_timeout):
                        await write(frame)
                except TimeoutError:
                    return StallTimeout(self.stall_timeout)
                except Exception as e:
                    return self.diagnose(e)
                self.written += len(frame[1]) + FRAME_OVERHEAD
            if self._finishing:
                return None
            # from here the reactor wakes the writer for what it queues; a
            # frame queued before it saw this is caught by the check below
            self.idle = True
            wake.clear()
            if not outgoing and not self._finishing:
                await wake.wait()
            self.idle = False


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

    def __init__(self, pump, loop, peer, host, max_send_queue, clock, call_from_thread):
        """
        :param pump: the stream's L{FramePump}.
        :param loop: the loop the pump runs on.
        :param peer: the peer's C{IAddress}.
        :param host: this side's C{IAddress}.
        :param max_send_queue: bytes that may wait to be written.
        :param clock: an C{IReactorTime}.
        :param call_from_thread: the reactor's C{callFromThread}.
        """
        self.pump = pump
        self.loop = loop
        self.peer_address = peer
        self.host_address = host
        self.peer = format_address(peer)
        self.max_send_queue = max_send_queue
        self.clock = clock
        self.call_from_thread = call_from_thread
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
            call_soon(self.loop, pump.wake)
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
        call_soon(self.loop, how)
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
