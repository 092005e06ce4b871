# -*- test-case-name: tests.unit.test_grpcloop -*-
"""
The loop side of a gRPC stream (L{FramePump}): two tasks on the shared
asyncio loop, a reader and a writer, that meet the reactor through a
queue each way (see L{uhppoted_tunnel.transports.grpc.loop}).
"""

import asyncio
from collections import deque

from twisted.internet.error import ConnectionAborted, ConnectionDone

from uhppoted_tunnel.core.frames import FrameTooLong
from uhppoted_tunnel.transports.grpc.loop import (
    BATCH_OVERHEAD,
    CLOSE_TIMEOUT,
    FRAME_OVERHEAD,
    GATHER_TURNS,
    MAX_BATCH,
    StallTimeout,
    TooManyFrames,
)


class FramePump:
    """
    The loop side of one gRPC stream: writes the frames the reactor hands
    it, in order and one at a time, and hands the reactor each frame that
    arrives, checked against C{--max-payload}.

    On a C{Relays} call (C{batched}) a message is a C{Frames}: the writer
    sends the frames queued as one message, up to L{MAX_BATCH} frames and
    C{--max-payload} + L{BATCH_OVERHEAD} bytes, and the reader hands on
    each frame of a message, every one checked. Before it writes, the
    writer lets the loop take turns while each turn queues more frames
    (at most C{gather_turns}, L{GATHER_TURNS} unless told): grpcio's cost
    is per message, so under load a message carries what the requests in
    flight queue, while a frame that comes alone waits one turn only.

    The pump runs on the loop's thread. The reactor queues frames in
    L{outgoing} and calls L{wake} if the writer is L{idle}; it reaches the
    rest only through C{call_soon_threadsafe}: L{finish} and L{abort}.

    :ivar written: bytes of the frames written so far, each with
        L{FRAME_OVERHEAD}; only the loop's thread changes it.
    """

    def __init__(self, read, write, deliver, diagnose, max_payload, stall_timeout, eof=None, half_close=None,
                 close_timeout=CLOSE_TIMEOUT, batched=False, gather_turns=GATHER_TURNS):
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
        :param batched: whether a message is a C{Frames} (C{read} gives
            messages with C{frames}, C{write} takes a list of
            C{(id, payload)}) rather than a C{Frame}.
        :param gather_turns: on a C{Relays} call, the most turns of the
            loop the writer waits for more frames before it writes (0: it
            writes what is queued when it wakes).
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
        self.batched = batched
        self.gather_turns = gather_turns if batched else 0
        self.outgoing = deque()
        self.written = 0
        #: True while the writer waits for frames (the reactor must wake it)
        self.idle = False
        self._wake = asyncio.Event()
        self._finishing = False
        self._aborted = False
        self._tasks = ()
        #: the loop's time the write under way began, or None
        self._since = None
        #: the stall check's timer, armed while a write is under way
        self._watchdog = None
        self._stalled = False

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
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            # let go of the call (and so of its channel)
            self._tasks = ()
            self.read = self.write = self.half_close = None

    async def _read(self):
        read, eof, deliver, limit = self.read, self.eof, self.deliver, self.max_payload
        # a Frames message (Relays) carries several, a Frame (Relay) one
        batched = self.batched
        while True:
            try:
                message = await read()
            except Exception as e:
                return self.diagnose(e)
            if message is eof:
                return ConnectionDone()
            frames = message.frames if batched else (message,)
            if len(frames) > MAX_BATCH:
                return TooManyFrames(len(frames))
            for frame in frames:
                payload = frame.payload
                if len(payload) > limit:
                    return FrameTooLong(len(payload), limit, payload[:16])
                deliver(frame.id, payload)

    @staticmethod
    def _one(outgoing, _):
        """
        :return: the next frame to write, and what it counted in the
            queue.
        """
        frame = outgoing.popleft()
        return frame, len(frame[1]) + FRAME_OVERHEAD

    @staticmethod
    def _batch(outgoing, budget):
        """
        :return: the frames queued, oldest first, that one C{Frames}
            message carries (at least one, at most L{MAX_BATCH}, their
            payloads and L{BATCH_OVERHEAD} each within C{budget}), and what
            they counted in the queue.
        """
        frame = outgoing.popleft()
        batch = [frame]
        size = len(frame[1])
        used = size + BATCH_OVERHEAD
        while outgoing and len(batch) < MAX_BATCH:
            more = len(outgoing[0][1])
            if used + more + BATCH_OVERHEAD > budget:
                break
            batch.append(outgoing.popleft())
            size += more
            used += more + BATCH_OVERHEAD
        return batch, size + FRAME_OVERHEAD * len(batch)

    @staticmethod
    async def _gather(outgoing, turns):
        """
        Let the loop take turns while each queues more frames, at most
        C{turns}, or until a message's L{MAX_BATCH} frames are queued.
        """
        count = len(outgoing)
        while turns and count < MAX_BATCH:
            await asyncio.sleep(0)
            if len(outgoing) == count:
                return
            count = len(outgoing)
            turns -= 1

    async def _write(self):
        outgoing, write, wake, gather = self.outgoing, self.write, self._wake, self.gather_turns
        take, budget = (self._batch, self.max_payload + BATCH_OVERHEAD) if self.batched else (self._one, 0)
        loop = asyncio.get_running_loop()
        while True:
            while outgoing:
                if gather:
                    await self._gather(outgoing, gather)
                frame, size = take(outgoing, budget)
                # one timer checks every write for a stall (L{_check}),
                # not a timer a write: a write only notes when it began
                self._since = loop.time()
                if self._watchdog is None:
                    self._watchdog = loop.call_at(self._since + self.stall_timeout, self._check, loop)
                try:
                    await write(frame)
                except asyncio.CancelledError:
                    if self._stalled:
                        return StallTimeout(self.stall_timeout)
                    raise
                except Exception as e:
                    return self.diagnose(e)
                self._since = None
                self.written += size
            if self._finishing:
                return None
            # from here the reactor wakes the writer for what it queues; a
            # frame queued before it saw this is caught by the check below
            self.idle = True
            wake.clear()
            if not outgoing and not self._finishing:
                await wake.wait()
            self.idle = False

    def _check(self, loop):
        """
        The stall check: a write under way for C{stall_timeout} seconds
        ends the stream with L{StallTimeout}; one that began later is
        checked again when its own time is up; with no write under way the
        check ends (the next write arms it).
        """
        self._watchdog = None
        since = self._since
        if since is None or not self._tasks:
            return
        due = since + self.stall_timeout
        if loop.time() >= due:
            self._stalled = True
            self._tasks[1].cancel()
        else:
            self._watchdog = loop.call_at(due, self._check, loop)
