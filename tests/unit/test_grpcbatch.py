"""
Tests for the batches of a C{Relays} call: the pump's writer sends what
is queued when it writes as one C{Frames} message, bounded, and its
reader hands on each frame of one, checked; the C{Frames} codec against
hostile bytes.
"""

import asyncio
from collections import namedtuple

from google.protobuf.message import DecodeError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.trial.unittest import SynchronousTestCase

from tests.unit.test_grpcloop import EOF, FakeCall, Message
from uhppoted_tunnel.core.frames import FrameTooLong
from uhppoted_tunnel.transports.grpc import conf as grpcconf
from uhppoted_tunnel.transports.grpc.loop import (
    BATCH_OVERHEAD,
    FRAME_OVERHEAD,
    GATHER_TURNS,
    MAX_BATCH,
    TooManyFrames,
)
from uhppoted_tunnel.transports.grpc.proto import tunnel_pb2
from uhppoted_tunnel.transports.grpc.pump import FramePump

Batch = namedtuple("Batch", "frames")


class BatchedPumpTests(SynchronousTestCase):
    """
    L{FramePump} on a C{Relays} call (C{batched}).
    """

    def setUp(self):
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)
        self.delivered = []

    def pump(self, max_payload=1024, batched=True, **options):
        self.call = FakeCall()
        return FramePump(self.call.read, self.call.write, lambda *frame: self.delivered.append(frame),
                         lambda e: ConnectionLost(repr(e)), max_payload, 30.0, eof=EOF, batched=batched, **options)

    def trickle(self, pump, turns, gap=()):
        """
        Run the pump while one frame is queued on each of C{turns} turns of
        the loop (none on the turns in C{gap}), then finish it.
        """

        async def go():
            task = asyncio.ensure_future(pump.run())
            await asyncio.sleep(0)
            for turn in range(turns):
                if turn not in gap:
                    pump.push(turn, b"t")
                await asyncio.sleep(0)
            pump.finish()
            return await task

        return self.loop.run_until_complete(go())

    def relay(self, pump, *actions):
        """
        Run the pump with C{actions}, each once the loop has had a turn,
        and return why it ended.
        """

        async def go():
            task = asyncio.ensure_future(pump.run())
            for action in actions:
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                action()
            return await task

        return self.loop.run_until_complete(go())

    def test_queuedAsOne(self):
        """
        The frames queued when the writer writes go as one message, in
        order; a frame queued while that write waits goes in the next; and
        C{written} counts every frame as an unbatched stream does.
        """
        pump = self.pump(gather_turns=0)
        call = self.call
        for i in range(3):
            pump.push(i, b"p" * 64)

        def hold():
            call.gate = self.loop.create_future()
            pump.push(3, b"q")

        def meanwhile():
            pump.push(4, b"r")
            pump.push(5, b"s")
            gate, call.gate = call.gate, None
            gate.set_result(None)

        reason = self.relay(pump, hold, meanwhile, lambda: call.incoming.put_nowait(EOF))
        self.assertIsInstance(reason, ConnectionDone)
        self.assertEqual(call.written, [[(0, b"p" * 64), (1, b"p" * 64), (2, b"p" * 64)], [(3, b"q")],
                                        [(4, b"r"), (5, b"s")]])
        self.assertEqual(pump.written, 3 * 64 + 3 + 6 * FRAME_OVERHEAD)

    def test_gathered(self):
        """
        Frames queued on successive turns of the loop go as one message:
        the writer waits while each turn queues more.
        """
        pump = self.pump(gather_turns=GATHER_TURNS)
        self.trickle(pump, GATHER_TURNS)
        self.assertEqual(self.call.written, [[(turn, b"t") for turn in range(GATHER_TURNS)]])

    def test_gatherBounded(self):
        """
        The writer waits at most C{gather_turns} turns: what later turns
        queue goes in the next message.
        """
        pump = self.pump(gather_turns=3)
        self.trickle(pump, 12)
        self.assertEqual([len(batch) for batch in self.call.written], [4, 4, 4])
        self.assertEqual([frame for batch in self.call.written for frame in batch], [(t, b"t") for t in range(12)])

    def test_aloneWaitsOneTurn(self):
        """
        A turn that queues nothing more ends the wait: a frame that comes
        alone is written after one turn, and what comes after the quiet
        turn goes in the next message.
        """
        pump = self.pump(gather_turns=GATHER_TURNS)
        self.trickle(pump, 6, gap=(2, 3))
        self.assertEqual(self.call.written, [[(0, b"t"), (1, b"t")], [(4, b"t"), (5, b"t")]])

    def test_unbatchedNotGathered(self):
        """
        On a C{Relay} call (one frame a message) the writer does not wait
        for more.
        """
        pump = self.pump(batched=False, gather_turns=GATHER_TURNS)
        self.assertEqual(pump.gather_turns, 0)

    def test_bounded(self):
        """
        A message carries at most L{MAX_BATCH} frames, and frames whose
        payloads and L{BATCH_OVERHEAD} each stay within C{--max-payload} +
        L{BATCH_OVERHEAD}; a frame of C{--max-payload} goes alone.
        """
        limit = MAX_BATCH * BATCH_OVERHEAD
        pump = self.pump(max_payload=limit)
        for i in range(MAX_BATCH + 1):
            pump.push(i, b"")
        pump.push(1000, b"x" * limit)
        for i in range(4):
            pump.push(2000 + i, b"y" * (limit // 2 - BATCH_OVERHEAD))
        self.relay(pump, pump.finish)
        self.assertEqual([len(batch) for batch in self.call.written], [MAX_BATCH, 1, 1, 2, 2])
        self.assertEqual(self.call.written[2], [(1000, b"x" * limit)])

    def test_messageWithinLimit(self):
        """
        Every message the writer makes, encoded, is within grpc's message
        limit, however the queue is made up.
        """
        for max_payload in (1, 64, 1024, 65535):
            pump = self.pump(max_payload)
            for size in (max_payload, 0, 1, max_payload // 2, max_payload, 3, 0):
                for i in range(40):
                    pump.push(0xFFFFFFFF - i, b"z" * size)
            self.relay(pump, pump.finish)
            self.assertEqual(sum(len(batch) for batch in self.call.written), 280)
            for batch in self.call.written:
                self.assertLessEqual(len(grpcconf.encode_batch(batch)), grpcconf.message_limit(max_payload))

    def test_eachFrameDelivered(self):
        """
        Every frame of a message that arrives is delivered, in order; a
        message of no frames delivers nothing and ends nothing.
        """
        pump = self.pump()
        for message in (Batch([Message(1, b"a"), Message(2, b"")]), Batch([]), Batch([Message(3, b"c" * 1024)]),
                        EOF):
            self.call.incoming.put_nowait(message)
        reason = self.relay(pump)
        self.assertIsInstance(reason, ConnectionDone)
        self.assertEqual(self.delivered, [(1, b"a"), (2, b""), (3, b"c" * 1024)])

    def test_payloadTooLong(self):
        """
        A frame of a message whose payload is longer than C{--max-payload}
        ends the stream with L{FrameTooLong}: the frames before it are
        delivered, it and those after are not.
        """
        pump = self.pump(max_payload=64)
        self.call.incoming.put_nowait(Batch([Message(1, b"x" * 64), Message(2, b"y" * 65), Message(3, b"z")]))
        reason = self.relay(pump)
        self.assertIsInstance(reason, FrameTooLong)
        self.assertEqual((reason.length, reason.limit), (65, 64))
        self.assertEqual(self.delivered, [(1, b"x" * 64)])

    def test_tooManyFrames(self):
        """
        A message of more than L{MAX_BATCH} frames ends the stream with
        L{TooManyFrames}, none of them delivered; the reason is a sentence
        naming the counts.
        """
        pump = self.pump()
        self.call.incoming.put_nowait(Batch([Message(i, b"") for i in range(MAX_BATCH + 1)]))
        reason = self.relay(pump)
        self.assertIsInstance(reason, TooManyFrames)
        self.assertEqual(self.delivered, [])
        self.assertEqual(str(reason), "a message of {} frames, more than the {} a uhppoted.tunnel.Frames may carry: "
                         "is the peer a uhppoted-tunnel?".format(MAX_BATCH + 1, MAX_BATCH))


class BatchCodecTests(SynchronousTestCase):
    """
    C{Frames} messages as C{Relays} encodes and decodes them.
    """

    def test_roundTrip(self):
        """
        A list of C{(id, payload)} encodes as a C{Frames} that decodes to
        the same frames, in order; no frames is an empty message.
        """
        frames = [(1, b"\x17\x94" + bytes(62)), (0, b""), (0xFFFFFFFF, b"x" * 1024)]
        message = grpcconf.decode_batch(grpcconf.encode_batch(frames))
        self.assertEqual([(frame.id, frame.payload) for frame in message.frames], frames)
        self.assertEqual(grpcconf.encode_batch([]), b"")

    def test_overhead(self):
        """
        One frame of the largest payload with the largest id, as a
        C{Frames}, is within the message limit: L{BATCH_OVERHEAD} covers
        it.
        """
        for payload in (0, 1, 127, 128, 1024, 16383, 16384, 65535):
            encoded = grpcconf.encode_batch([(0xFFFFFFFF, b"x" * payload)])
            self.assertLessEqual(len(encoded), payload + BATCH_OVERHEAD)
            self.assertLessEqual(len(encoded), grpcconf.message_limit(payload))

    def test_hostile(self):
        """
        Bytes that are not a C{Frames} raise C{DecodeError}, and are
        diagnosed as not a frame.
        """
        for garbage in (b"\xff\xff\xff", b"\x0a\x05ab", b"\x0a\x03\x08" + b"\xff" * 11):
            self.assertRaises(DecodeError, grpcconf.decode_batch, garbage)
        try:
            grpcconf.decode_batch(b"\x0a\x05ab")
        except DecodeError as e:
            self.assertIn("not a uhppoted.tunnel.Frame", str(grpcconf.diagnose(e)))

    def test_service(self):
        """
        The ends serve and call C{Relays}, a stream of C{Frames} each way,
        beside C{Relay}.
        """
        self.assertEqual(grpcconf.BATCH_METHOD, "/uhppoted.tunnel.Tunnel/Relays")
        method = tunnel_pb2.DESCRIPTOR.services_by_name["Tunnel"].methods_by_name["Relays"]
        self.assertEqual((method.input_type.full_name, method.output_type.full_name),
                         ("uhppoted.tunnel.Frames", "uhppoted.tunnel.Frames"))
        self.assertTrue(method.client_streaming and method.server_streaming)
