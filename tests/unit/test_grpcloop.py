"""
Tests for L{uhppoted_tunnel.transports.grpc.loop}, C{pump} and C{transport}: the pump of a gRPC stream
on fake calls (each test runs its coroutines on a private event loop, in
the test's own thread), the reactor's side of a stream on a fake loop and
a fake clock, and the loop thread.
"""

import asyncio
import threading
from collections import deque, namedtuple

from twisted.internet.error import ConnectionAborted, ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.transports.grpc.loop import (
    FRAME_OVERHEAD,
    GIVE_UP,
    LoopThread,
    ReactorLoop,
    StallTimeout,
    call_soon,
)
from uhppoted_tunnel.transports.grpc.pump import FramePump
from uhppoted_tunnel.transports.grpc.transport import StreamTransport
from uhppoted_tunnel.core.frames import FrameTooLong

Message = namedtuple("Message", "id payload")
EOF = object()


class FakeCall:
    """
    One side of a gRPC call: the messages the peer sends (a queue, which
    may hold an exception to raise or L{EOF}), what is written to it, and
    a gate writes can be made to wait at.
    """

    def __init__(self):
        self.incoming = asyncio.Queue()
        self.written = []
        self.gate = None
        self.half_closed = False

    async def read(self):
        item = await self.incoming.get()
        if isinstance(item, Exception):
            raise item
        return item

    async def write(self, frame):
        if self.gate is not None:
            await self.gate
        self.written.append(frame)

    async def done_writing(self):
        self.half_closed = True


class PumpTests(SynchronousTestCase):
    """
    L{FramePump} writes what the reactor pushes and delivers what
    arrives, and ends for one clear reason.
    """

    def setUp(self):
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)
        self.delivered = []

    def complete(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def pump(self, call=None, client=False, **kwargs):
        self.call = call or FakeCall()
        options = dict(max_payload=1024, stall_timeout=30.0, eof=EOF)
        options.update(kwargs)
        return FramePump(self.call.read, self.call.write, lambda *frame: self.delivered.append(frame),
                         lambda e: ConnectionLost(repr(e)), half_close=self.call.done_writing if client else None,
                         **options)

    def relay(self, pump, *actions):
        """
        Run the pump with C{actions} (callables, each run once the loop has
        had a turn) and return why it ended; no task is left behind.
        """

        async def go():
            task = asyncio.ensure_future(pump.run())
            for action in actions:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                action()
            reason = await task
            self.assertEqual([t for t in asyncio.all_tasks() if t is not asyncio.current_task()], [])
            return reason

        return self.complete(go())

    def test_framesBothWays(self):
        """
        Frames pushed are written in order as C{(id, payload)}; frames that
        arrive are delivered in order; the peer's end of the call ends the
        stream as done, and C{written} counts each frame with its
        overhead.
        """
        pump = self.pump()
        pump.push(1, b"a" * 64)
        pump.push(2, b"b" * 64)
        for message in (Message(7, b"x" * 64), Message(0xFFFFFFFF, b"")):
            self.call.incoming.put_nowait(message)
        reason = self.relay(pump, lambda: self.call.incoming.put_nowait(EOF))
        self.assertIsInstance(reason, ConnectionDone)
        self.assertEqual(self.call.written, [(1, b"a" * 64), (2, b"b" * 64)])
        self.assertEqual(self.delivered, [(7, b"x" * 64), (0xFFFFFFFF, b"")])
        self.assertEqual(pump.written, 2 * (64 + FRAME_OVERHEAD))

    def test_idleWriter(self):
        """
        A writer with nothing to write says it is idle, and frames queued
        from the reactor's side then are written once it is woken; while
        a write waits for the peer it is not idle, and what is queued
        meanwhile is written after it with no wake-up.
        """
        call = FakeCall()
        pump = self.pump(call)
        states = []

        def queue():
            states.append(pump.idle)
            call.gate = self.loop.create_future()
            pump.outgoing.append((1, b"a"))
            pump.wake()

        def busy():
            states.append(pump.idle)
            pump.outgoing.append((2, b"b"))
            gate, call.gate = call.gate, None
            gate.set_result(None)

        def end():
            states.append(pump.idle)
            call.incoming.put_nowait(EOF)

        reason = self.relay(pump, queue, busy, end)
        self.assertIsInstance(reason, ConnectionDone)
        self.assertEqual(states, [True, False, True])
        self.assertEqual(call.written, [(1, b"a"), (2, b"b")])

    def test_payloadTooLong(self):
        """
        A payload longer than C{max_payload} ends the stream with
        L{FrameTooLong}: what came before it is delivered, it and what
        follows are not.
        """
        pump = self.pump(max_payload=64)
        for message in (Message(1, b"x" * 64), Message(2, b"\x16\x03" + b"y" * 63), Message(3, b"z")):
            self.call.incoming.put_nowait(message)
        reason = self.relay(pump)
        self.assertIsInstance(reason, FrameTooLong)
        self.assertEqual((reason.length, reason.limit), (65, 64))
        self.assertIn("is the peer using TLS?", str(reason))
        self.assertEqual(self.delivered, [(1, b"x" * 64)])

    def test_readError(self):
        """
        What a read raises is diagnosed, and ends the stream.
        """
        pump = self.pump()
        self.call.incoming.put_nowait(ValueError("bad bytes"))
        reason = self.relay(pump)
        self.assertIn("ValueError('bad bytes')", str(reason))

    def test_finishOnServer(self):
        """
        On a server, L{finish} ends the stream once what was queued is
        written (the handler then returns, which ends the call).
        """
        pump = self.pump()
        for i in range(3):
            pump.push(i, b"p")
        reason = self.relay(pump, pump.finish)
        self.assertIsInstance(reason, ConnectionDone)
        self.assertEqual([frame_id for frame_id, _ in self.call.written], [0, 1, 2])

    def test_finishOnClient(self):
        """
        On a client, L{finish} writes what was queued, says it will write
        no more, and waits for the server to end the call.
        """
        pump = self.pump(client=True)
        pump.push(1, b"p")
        reason = self.relay(pump, pump.finish, lambda: self.call.incoming.put_nowait(EOF))
        self.assertIsInstance(reason, ConnectionDone)
        self.assertTrue(self.call.half_closed)
        self.assertEqual(self.call.written, [(1, b"p")])

    def test_finishPeerSilent(self):
        """
        A client whose server does not end the call within
        C{close_timeout} ends it anyway.
        """
        pump = self.pump(client=True, close_timeout=0)
        self.assertIsInstance(self.relay(pump, pump.finish), ConnectionDone)

    def test_stall(self):
        """
        A write the peer does not take within C{stall_timeout} ends the
        stream with L{StallTimeout}; nothing after it is written.
        """
        call = FakeCall()
        pump = self.pump(call, stall_timeout=0)
        call.gate = self.loop.create_future()
        pump.push(1, b"p")
        pump.push(2, b"q")
        reason = self.relay(pump)
        self.assertIsInstance(reason, StallTimeout)
        self.assertEqual(str(reason), "the peer read nothing sent to it for 0s")
        self.assertEqual((call.written, pump.written), ([], 0))

    def test_stallCheckedByOneTimer(self):
        """
        Writes that each complete arm one stall check between them, not a
        timer each; no check is left once the stream has ended.
        """
        armed = []
        real = self.loop.call_at

        def call_at(when, callback, *args):
            handle = real(when, callback, *args)
            armed.append(handle)
            return handle

        self.loop.call_at = call_at
        pump = self.pump(client=True, close_timeout=0)
        for n in range(5):
            pump.push(n, b"p")
        self.relay(pump, pump.finish)
        self.assertEqual(len(self.call.written), 5)
        self.assertEqual(len(armed), 1)
        self.assertTrue(armed[0].cancelled())
        self.assertIsNone(pump._watchdog)

    def test_stallCheckLater(self):
        """
        A write that began after the stall check was armed is given its
        own C{stall_timeout}: the check looks again when that is up, and
        ends the stream then if the write is still under way.
        """
        now = [100.0]
        armed = []

        class Loop:
            def time(self):
                return now[0]

            def call_at(self, when, callback, *args):
                armed.append((when, callback, args))

        class Task:
            cancelled = False

            def cancel(self):
                self.cancelled = True

        pump = self.pump(stall_timeout=10.0)
        writer = Task()
        pump._tasks = (Task(), writer)
        pump._since = 95.0
        now[0] = 100.0
        pump._check(Loop())
        self.assertEqual([when for when, _, _ in armed], [105.0])
        self.assertFalse(writer.cancelled)
        now[0] = 105.0
        when, callback, args = armed.pop()
        callback(*args)
        self.assertTrue(writer.cancelled)
        self.assertEqual(armed, [])

    def test_abort(self):
        """
        L{abort} ends the stream at once, as aborted, with what is queued
        unwritten; an abort before the pump runs ends it at its start.
        """
        call = FakeCall()
        pump = self.pump(call)
        call.gate = self.loop.create_future()
        pump.push(1, b"p")
        self.assertIsInstance(self.relay(pump, pump.abort), ConnectionAborted)
        self.assertEqual(call.written, [])
        early = self.pump()
        early.abort()
        self.assertIsInstance(self.relay(early), ConnectionAborted)

    def test_letsGoOfTheCall(self):
        """
        Once the stream has ended the pump keeps nothing of the call (a
        call kept alive keeps its channel dialling).
        """
        pump = self.pump(client=True)
        self.call.incoming.put_nowait(EOF)
        self.relay(pump)
        self.assertEqual((pump.read, pump.write, pump.half_close), (None, None, None))


class FakeLoop:
    """
    An event loop that records what is handed to it from another thread,
    and can be closed.
    """

    def __init__(self):
        self.calls = []
        self.closed = False

    def call_soon_threadsafe(self, function, *args):
        if self.closed:
            raise RuntimeError("Event loop is closed")
        self.calls.append((function, args))

    def call_soon(self, function, *args):
        self.calls.append(("same thread", function, args))


class FakePump:
    written = 0
    idle = False

    def __init__(self):
        self.outgoing = deque()

    def wake(self):
        pass

    def finish(self):
        pass

    def abort(self):
        pass


class RecordingProtocol:
    def __init__(self):
        self.lost = []

    def connectionLost(self, reason):
        self.lost.append(reason)


class StreamTransportTests(SynchronousTestCase):
    """
    L{StreamTransport} hands the loop frames and requests, keeps what is
    queued within C{max_send_queue}, and tells its protocol of the end
    once.
    """

    def setUp(self):
        from twisted.internet.address import IPv4Address

        self.loop = FakeLoop()
        self.pump = FakePump()
        self.clock = Clock()
        self.reactor_calls = []
        self.transport = StreamTransport(self.pump, self.loop, IPv4Address("TCP", "127.0.0.1", 5000),
                                         IPv4Address("TCP", "127.0.0.1", 6000), 3 * (64 + FRAME_OVERHEAD), self.clock,
                                         lambda *call: self.reactor_calls.append(call))
        self.protocol = self.transport.protocol = RecordingProtocol()

    def test_sendFrame(self):
        """
        A frame is queued for the loop's pump; one that would queue more
        than C{max_send_queue} bytes (payload and overhead, less what the
        pump has written) is dropped, until the pump has written more.
        """
        for i in range(3):
            self.assertTrue(self.transport.sendFrame(i, b"x" * 64))
        self.assertFalse(self.transport.sendFrame(3, b"x"))
        self.assertEqual(list(self.pump.outgoing), [(i, b"x" * 64) for i in range(3)])
        self.pump.written = 64 + FRAME_OVERHEAD
        self.assertTrue(self.transport.sendFrame(4, b"y" * 64))
        self.assertEqual(self.transport.queued, 4 * (64 + FRAME_OVERHEAD))

    def test_wakeWhenIdle(self):
        """
        The loop is woken for a frame only while the pump's writer is idle:
        a busy writer takes what is queued without being woken.
        """
        self.transport.sendFrame(1, b"p")
        self.assertEqual(self.loop.calls, [])
        self.pump.idle = True
        self.transport.sendFrame(2, b"q")
        self.assertEqual(self.loop.calls, [(self.pump.wake, ())])

    def test_frames(self):
        """
        Frames that arrive on the loop's thread are handed to the reactor
        in one drain however many arrive before it runs, in order, and go
        to the receiver, once there is one.
        """
        received = []
        self.transport.arrived(1, b"early")
        [(drain,)] = self.reactor_calls
        drain()
        self.transport.receiver = lambda *frame: received.append(frame)
        for i in range(2, 5):
            self.transport.arrived(i, b"p")
        self.assertEqual(len(self.reactor_calls), 2)
        self.reactor_calls[-1][0]()
        self.assertEqual(received, [(2, b"p"), (3, b"p"), (4, b"p")])
        self.transport.arrived(5, b"q")
        self.assertEqual(len(self.reactor_calls), 3)

    def test_ended(self):
        """
        The end is told to the protocol once, with its reason; then no
        frame is delivered or sent.
        """
        received = []
        self.transport.receiver = lambda *frame: received.append(frame)
        self.transport.ended(ConnectionDone())
        self.transport.ended(ConnectionLost())
        [reason] = self.protocol.lost
        self.assertTrue(reason.check(ConnectionDone))
        self.transport.arrived(1, b"late")
        self.transport.drain()
        self.assertEqual(received, [])
        self.assertFalse(self.transport.sendFrame(1, b"late"))
        self.assertEqual(self.loop.calls, [])

    def test_loseConnection(self):
        """
        Losing the connection asks the pump to finish; when the loop says
        nothing of the end for L{GIVE_UP} seconds, the stream is taken as
        ended.
        """
        self.transport.loseConnection()
        self.assertEqual(self.loop.calls, [(self.pump.finish, ())])
        self.assertTrue(self.transport.disconnecting)
        self.clock.advance(GIVE_UP)
        [reason] = self.protocol.lost
        self.assertIn("did not end within", reason.getErrorMessage())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_abortEnded(self):
        """
        Aborting asks the pump to abort; an end reported in time cancels
        the wait.
        """
        self.transport.abortConnection()
        self.assertEqual(self.loop.calls, [(self.pump.abort, ())])
        self.transport.ended(ConnectionAborted())
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.protocol.lost), 1)

    def test_closedLoop(self):
        """
        A loop that has closed (its jobs have all ended) is not an error:
        nothing happens.
        """
        self.loop.closed = True
        call_soon(self.loop, self.pump.finish)
        self.pump.idle = True
        self.assertTrue(self.transport.sendFrame(1, b"p"))

    def test_bytesOnly(self):
        """
        A gRPC stream carries frames, not bytes.
        """
        self.assertRaises(TypeError, self.transport.write, b"x")
        self.assertRaises(TypeError, self.transport.writeSequence, [b"x"])


class LoopThreadTests(SynchronousTestCase):
    """
    L{LoopThread} runs a loop on a daemon thread while it has jobs.
    """

    def test_jobs(self):
        """
        The first job starts the loop on a daemon thread of the given name;
        it stops once the last job ends; a later job starts a new one.
        """
        thread = LoopThread("test-grpc")
        seen = []
        release = threading.Event()

        async def job(n):
            current = threading.current_thread()
            seen.append((n, current.name, current.daemon, asyncio.get_running_loop()))
            while not release.is_set():
                await asyncio.sleep(0.001)
            return n

        loop1, first = thread.submit(job, 1)
        loop2, second = thread.submit(job, 2)
        self.assertIs(loop1, loop2)
        release.set()
        self.assertEqual((first.result(10), second.result(10)), (1, 2))
        loop3, third = thread.submit(job, 3)
        self.assertEqual(third.result(10), 3)
        self.assertIsNot(loop3, loop1)
        self.assertEqual([(n, name, daemon) for n, name, daemon, _ in seen],
                         [(1, "test-grpc", True), (2, "test-grpc", True), (3, "test-grpc", True)])

    def test_cancel(self):
        """
        Cancelling a job's future cancels it on the loop.
        """
        thread = LoopThread()
        started = threading.Event()
        cancelled = threading.Event()

        async def job():
            started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise

        loop, future = thread.submit(job)
        self.assertTrue(started.wait(10))
        future.cancel()
        self.assertTrue(cancelled.wait(10))


class ReactorLoopTests(SynchronousTestCase):
    """
    L{ReactorLoop} runs jobs on the reactor's own loop, with no thread.
    """

    def test_submit(self):
        """
        A job runs as a task on the given loop, in the calling thread, and
        cancelling the task cancels it; the loop goes on after the job.
        """
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        seen = []

        async def job(n):
            seen.append((n, threading.current_thread(), asyncio.get_running_loop()))
            await asyncio.Event().wait()

        given, task = ReactorLoop(loop).submit(job, 1)
        self.assertIs(given, loop)
        loop.run_until_complete(asyncio.sleep(0))
        self.assertEqual(seen, [(1, threading.current_thread(), loop)])
        task.cancel()
        loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
        self.assertTrue(task.cancelled())
        self.assertFalse(loop.is_closed())

    def test_sameThread(self):
        """
        On the reactor's own loop a stream wakes nothing: the loop's side
        is called on the loop's next turn, and so is the reactor's, with
        C{call_soon}, not through the pipe of C{call_soon_threadsafe} or
        C{callFromThread}.
        """
        from twisted.internet.address import IPv4Address

        loop = FakeLoop()
        loops = ReactorLoop(loop)
        pump = FakePump()
        pump.idle = True
        transport = StreamTransport(pump, loop, IPv4Address("TCP", "127.0.0.1", 5000),
                                    IPv4Address("TCP", "127.0.0.1", 6000), 1024, Clock(),
                                    loops.reactor_caller(object()), loops.call_soon)
        transport.sendFrame(1, b"p")
        transport.arrived(2, b"q")
        self.assertEqual(loop.calls, [("same thread", pump.wake, ()), ("same thread", transport.drain, ())])
        reactor = Clock()
        reactor.callFromThread = lambda *call: None
        self.assertIs(LoopThread().reactor_caller(reactor), reactor.callFromThread)
