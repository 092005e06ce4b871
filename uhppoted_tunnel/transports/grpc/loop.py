# -*- test-case-name: tests.unit.test_grpcloop -*-
"""
The bridge between the reactor and grpcio's asyncio API (C{grpc.aio}),
written without grpcio so that it is tested with fakes.

grpcio runs its own threads. The gRPC ends keep all of theirs on one
asyncio event loop, on one thread of its own (L{LoopThread}), shared by
every gRPC end of the process: a stream is two tasks on that loop (a
reader and a writer, L{uhppoted_tunnel.transports.grpc.pump.FramePump}),
never a thread, so the threads do not grow with the streams. The two sides meet in two places only:

- frames cross in a queue each way (a C{deque}, whose C{append} and
  C{popleft} are safe between threads): the side that fills it wakes the
  other only when the other is not already busy with it, so a burst
  costs one wake-up, not one a frame; everything else the reactor asks
  (close a stream) goes by C{loop.call_soon_threadsafe}, and everything
  else the loop reports (a stream ready or ended) by
  C{reactor.callFromThread}, in the order called, after the frames
  queued before it;
- the reactor's side of a stream
  (L{uhppoted_tunnel.transports.grpc.transport.StreamTransport}) counts the bytes it
  has handed the loop and the loop counts those written (each side writes
  only its own counter), so the reactor knows what is still queued
  without a lock: a frame that would take the queue past
  C{--max-send-queue} is dropped, as for a stream peer that is not
  reading.

Everything else a connection does (relays, log lines, throttled warnings)
stays in the reactor thread.

Under Twisted's asyncio reactor the streams run on the reactor's own loop
instead (L{ReactorLoop}): no thread, no hand-off between threads, the
same queues.
"""

import asyncio
import threading

from uhppoted_tunnel.core.frames import HEADER_SIZE

#: What a frame costs in a send queue besides its payload: counted as the
#: stream ends count it (their header), so that C{--max-send-queue} means
#: the same on every transport.
FRAME_OVERHEAD = HEADER_SIZE

#: The most frames one C{uhppoted.tunnel.Frames} message carries (a
#: C{Relays} call's); a message of more ends the call.
MAX_BATCH = 64

#: The most turns of the loop a C{Relays} writer waits, while each turn
#: queues more frames, before it writes them as one message (a frame that
#: comes alone waits one turn).
GATHER_TURNS = 8

#: What a frame adds to its payload at most in a C{Frames} message: its
#: id's tag and varint (6 bytes), its payload's tag and length (4 for up
#: to 65535), and the frame's own tag and length (4). A message carries
#: frames up to C{--max-payload} plus this, so one frame of
#: C{--max-payload} always fits.
BATCH_OVERHEAD = 14

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


class TooManyFrames(Exception):
    """
    A C{uhppoted.tunnel.Frames} message of more than L{MAX_BATCH} frames.
    """

    def __str__(self):
        return "a message of {} frames, more than the {} a uhppoted.tunnel.Frames may carry: is the peer a " \
            "uhppoted-tunnel?".format(self.args[0], MAX_BATCH)


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

    @staticmethod
    def call_soon(loop, function, *args):
        """
        Call C{function(*args)} on C{loop}'s thread, from the reactor's
        (see L{call_soon}).
        """
        call_soon(loop, function, *args)

    @staticmethod
    def reactor_caller(reactor):
        """
        :return: how the loop's thread has the reactor call something:
            C{reactor.callFromThread}.
        """
        return reactor.callFromThread

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


class ReactorLoop:
    """
    Under Twisted's asyncio reactor (C{twistd -r asyncio}): the streams
    run on the reactor's own asyncio loop, with no thread of their own,
    so that a frame crosses no thread and wakes nothing.
    """

    def __init__(self, loop):
        self.loop = loop

    def submit(self, job, *args):
        """
        Run C{job(*args)} on the reactor's loop.

        :return: C{(loop, task)}, as L{LoopThread.submit}.
        """
        return self.loop, asyncio.ensure_future(job(*args), loop=self.loop)

    @staticmethod
    def call_soon(loop, function, *args):
        """
        Call C{function(*args)} on the loop's next turn: the reactor's
        thread is the loop's, so nothing need wake it.
        """
        loop.call_soon(function, *args)

    def reactor_caller(self, reactor):
        """
        :return: how the streams have the reactor call something: on the
            loop's next turn, which is the reactor's (no wake-up through
            C{callFromThread}'s pipe).
        """
        return self.loop.call_soon


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
