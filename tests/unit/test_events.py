"""
Tests for event tunnels: L{uhppoted_tunnel.core.events} and the stream ends in
event mode, on fakes.
"""

import os
from collections import OrderedDict

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.test.iosim import ConnectionCompleter
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.app import config
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.core.events import SESSION_ID, EventBuffer, session_frame
from uhppoted_tunnel.core.seenevents import SeenEvents
from uhppoted_tunnel.interfaces import IN, OUT
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.core.packets import event_key
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter
from uhppoted_tunnel.app.tunnel import TunnelService
from uhppoted_tunnel.core.frames import FrameDecoder, encode

SERIAL = 405419896


def event(index, serial=SERIAL, start=0x17):
    packet = bytes([start, 0x20, 0, 0]) + serial.to_bytes(4, "little") + index.to_bytes(4, "little")
    return packet + bytes(64 - len(packet))


SESSION = b"\x01" * 16
OTHER = b"\x07" * 16


class EventKeyTests(SynchronousTestCase):
    def test_events(self):
        """
        An event is recognised by its length, function and start byte (0x17,
        or 0x19 from v6.62 firmware); its key is serial and index.
        """
        self.assertEqual(event_key(event(7)), (SERIAL, 7))
        self.assertEqual(event_key(event(8, start=0x19)), (SERIAL, 8))

    def test_notEvents(self):
        """
        Anything else has no key, and so is never de-duplicated: other
        functions, other lengths, other start bytes, index 0.
        """
        get_time = bytes([0x17, 0x32]) + bytes(62)
        for packet in (get_time, event(7)[:63], bytes([0x18]) + event(7)[1:], event(0), b""):
            self.assertIsNone(event_key(packet))


class SeenEventsTests(SynchronousTestCase):
    def test_window(self):
        """
        The most recent C{size} (session, frame id) keys are remembered;
        older ones are forgotten.
        """
        seen = SeenEvents(size=3)
        for index in range(1, 5):
            seen.add((SESSION, index))
        self.assertNotIn((SESSION, 1), seen)
        self.assertTrue(all((SESSION, i) in seen for i in (2, 3, 4)))

    def test_persisted(self):
        """
        With a file, what was seen survives a restart, even one that never
        closed the file (SIGKILL).
        """
        path = self.mktemp()
        seen = SeenEvents(size=100, path=path)
        seen.add((SESSION, 1))
        seen.add((OTHER, 2))
        again = SeenEvents(size=100, path=path)
        self.assertIn((SESSION, 1), again)
        self.assertIn((OTHER, 2), again)
        seen.close()
        again.close()

    def test_compacted(self):
        """
        The file is rewritten to the window when it holds twice as much, and
        a torn last record is ignored.
        """
        path = self.mktemp()
        seen = SeenEvents(size=10, path=path)
        for index in range(1, 26):
            seen.add((SESSION, index))
        seen.close()
        self.assertLessEqual(os.path.getsize(path), 8 + 20 * 20)
        with open(path, "ab") as f:
            f.write(b"\x01\x02\x03")
        again = SeenEvents(size=10, path=path)
        self.assertEqual(len(again), 10)
        self.assertIn((SESSION, 25), again)
        self.assertNotIn((SESSION, 15), again)
        again.close()


class EventBufferTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()

    def test_order(self):
        """
        Events come out in the order they went in.
        """
        buffer = EventBuffer(self.clock.seconds)
        for n in range(1, 4):
            buffer.add(n, event(n))
        self.assertEqual([frame_id for frame_id, _ in buffer.after(0)], [1, 2, 3])

    def test_countLimit(self):
        """
        Over the count limit the oldest are dropped and counted.
        """
        buffer = EventBuffer(self.clock.seconds, limit=3)
        dropped = [buffer.add(n, event(n)) for n in range(1, 6)]
        self.assertEqual(dropped, [0, 0, 0, 1, 1])
        self.assertEqual([frame_id for frame_id, _ in buffer.after(0)], [3, 4, 5])
        self.assertEqual(buffer.lost, 2)

    def test_ageLimit(self):
        """
        Events older than the age limit are dropped and counted.
        """
        buffer = EventBuffer(self.clock.seconds, max_age=60)
        buffer.add(1, event(1))
        self.clock.advance(30)
        buffer.add(2, event(2))
        self.clock.advance(31)
        self.assertEqual(buffer.expire(), 1)
        self.assertEqual([frame_id for frame_id, _ in buffer.after(0)], [2])

    def test_acknowledge(self):
        """
        An acknowledged event is forgotten, once.
        """
        buffer = EventBuffer(self.clock.seconds)
        for n in range(1, 4):
            buffer.add(n, event(n))
        self.assertTrue(buffer.acknowledge(2))
        self.assertFalse(buffer.acknowledge(2))
        self.assertEqual([frame_id for frame_id, _ in buffer.after(0)], [1, 3])

    def test_after(self):
        """
        after(id) gives the events held above an id, in order; last is the
        newest id held.
        """
        buffer = EventBuffer(self.clock.seconds)
        self.assertEqual((buffer.after(0), buffer.last), ([], 0))
        for n in range(1, 6):
            buffer.add(n, event(n))
        buffer.acknowledge(4)
        self.assertEqual([frame_id for frame_id, _ in buffer.after(2)], [3, 5])
        self.assertEqual([frame_id for frame_id, _ in buffer.after(5)], [])
        self.assertEqual(buffer.last, 5)

    def test_spool(self):
        """
        The events held can be written to a file and read back, with their
        times, by the next run; the file is then gone.
        """
        path = self.mktemp()
        buffer = EventBuffer(self.clock.seconds)
        buffer.add(1, event(1))
        self.clock.advance(5)
        buffer.add(2, event(2))
        buffer.spool(path)
        self.assertEqual(EventBuffer.unspool(path), [(0.0, event(1)), (5.0, event(2))])
        self.assertFalse(os.path.exists(path))
        self.assertEqual(EventBuffer.unspool(path), [])


MAKER = StreamConnectorMaker("tcp")


class StreamEventTests(SynchronousTestCase):
    def make(self, text, role, **settings):
        self.reactor = FakeReactor()
        self.router = RecordingRouter()
        values = {"max-payload": 1024, "max-send-queue": 262144, "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
                  "udp-timeout": 5.0, "debug": False, "max-retries": -1,
                  "max-retry-delay": 300.0, "events": True, "event-buffer": 100, "event-buffer-age": 3600.0,
                  "event-window": 100, "event-spool": os.path.abspath(self.mktemp())}
        values.update(settings)
        _, spec = parse(text, {prefix: MAKER for prefix in MAKER.prefixes})
        end = MAKER.makeEnd(spec, role, values, self.router, self.reactor)
        end.startService()
        self.addCleanup(self.stop, end)
        return end

    def stop(self, end):
        if end.running:
            end.stopService()
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def peer(self, end, session=SESSION):
        """
        Connect a fake peer; to an in end it names a sending half's
        session first, as a sending half does.
        """
        protocol = end.factory.buildProtocol(None)
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 50000))
        protocol.makeConnection(transport)
        if end.role == IN and session is not None:
            protocol.dataReceived(encode(SESSION_ID, session_frame(session)))
        return protocol, transport

    def frames(self, transport):
        """
        The frames written, less the one naming the sender's session.
        """
        frames = [frame for frame in FrameDecoder().feed(transport.value()) if frame[0] != SESSION_ID]
        transport.clear()
        return frames

    def test_aliases(self):
        """
        Go's explicit event connectors are accepted and make an event
        tunnel.
        """
        for prefix in ("tcp/event/server:", "tcp/event/client:"):
            self.assertIn(prefix, MAKER.prefixes)
            self.assertTrue(MAKER.relaysEvents(prefix))
        self.assertFalse(MAKER.relaysEvents("tcp/server:"))

    def test_receiverForwardsOnceAndAcknowledges(self):
        """
        An event frame is forwarded with no reply handler and acknowledged
        with an empty frame of its id; the same frame (same session, same
        id) sent again is acknowledged again but not forwarded twice. What
        a frame carries decides nothing: the same packet under another id
        is another event, and other packets are relayed untouched.
        """
        end = self.make("tcp/server:127.0.0.1:12346", IN)
        protocol, transport = self.peer(end)
        other = bytes([0x17, 0x94]) + bytes(62)
        for frame_id, payload in [(1, event(5)), (2, other), (1, event(5)), (3, event(5))]:
            protocol.dataReceived(encode(frame_id, payload))
        self.assertEqual(self.router.requests, [(event(5), None), (other, None), (event(5), None)])
        self.assertEqual(self.frames(transport), [(1, b""), (2, b""), (1, b""), (3, b"")])
        self.assertEqual(end.relay.duplicates, 1)

    def test_sessionsApart(self):
        """
        Frame ids are the sending half's own: another session's frame 1 is
        another event, and a peer that names no session (a Go tunnel) has
        every frame forwarded.
        """
        end = self.make("tcp/server:127.0.0.1:12346", IN)
        first, _ = self.peer(end)
        first.dataReceived(encode(1, event(1)))
        second, _ = self.peer(end, session=b"\x02" * 16)
        second.dataReceived(encode(1, event(1)))
        go, _ = self.peer(end, session=None)
        go.dataReceived(encode(1, event(1)) + encode(1, event(1)))
        self.assertEqual(len(self.router.requests), 4)

    def test_receiverRemembersAcrossRestart(self):
        """
        A receiver started again on the same spool does not forward an event
        the last run forwarded.
        """
        spool = os.path.abspath(self.mktemp())
        first = self.make("tcp/server:127.0.0.1:12346", IN, **{"event-spool": spool})
        protocol, _ = self.peer(first)
        protocol.dataReceived(encode(1, event(9)))
        first.stopService()
        second = self.make("tcp/server:127.0.0.1:12346", IN, **{"event-spool": spool})
        protocol, transport = self.peer(second)
        protocol.dataReceived(encode(1, event(9)))
        self.assertEqual(self.router.requests, [])
        self.assertEqual(self.frames(transport), [(1, b"")])

    def test_senderBuffersUntilConnected(self):
        """
        Events sent while no peer is connected go out in order when one
        connects.
        """
        end = self.make("tcp/client:127.0.0.1:12346", OUT)
        for index in (1, 2, 3):
            end.send(event(index), None)
        _, transport = self.peer(end)
        self.assertEqual([payload for _, payload in self.frames(transport)], [event(1), event(2), event(3)])

    def test_senderResendsUnacknowledged(self):
        """
        Events not acknowledged when the link drops are sent again on the
        next connection, before newer ones; acknowledged ones are not.
        """
        end = self.make("tcp/client:127.0.0.1:12346", OUT)
        protocol, transport = self.peer(end)
        for index in (1, 2, 3):
            end.send(event(index), None)
        sent = self.frames(transport)
        protocol.dataReceived(encode(sent[0][0], b""))
        protocol.connectionLost(Failure(ConnectionDone()))
        end.send(event(4), None)
        _, transport = self.peer(end)
        self.assertEqual([payload for _, payload in self.frames(transport)], [event(2), event(3), event(4)])

    def test_silentPeerNeverEmptiesBuffer(self):
        """
        A peer that acknowledges nothing is not taken for a Go tunnel: the
        events stay held however long it stays silent, and go to the next
        peer that connects.
        """
        end = self.make("tcp/client:127.0.0.1:12346", OUT)
        protocol, transport = self.peer(end)
        end.send(event(1), None)
        end.send(event(2), None)
        self.reactor.advance(3600)
        self.assertEqual(len(end.relay.buffer), 2)
        protocol.connectionLost(Failure(ConnectionDone()))
        _, transport = self.peer(end)
        self.assertEqual([payload for _, payload in self.frames(transport)], [event(1), event(2)])

    def test_goMode(self):
        """
        With --event-peer go, events are sent once to the peers connected
        and not held for acknowledgement; while none is, they are held.
        """
        end = self.make("tcp/client:127.0.0.1:12346", OUT, **{"event-peer": "go"})
        end.send(event(1), None)
        protocol, transport = self.peer(end)
        end.send(event(2), None)
        self.assertEqual([payload for _, payload in self.frames(transport)], [event(1), event(2)])
        self.assertEqual(len(end.relay.buffer), 0)
        protocol.connectionLost(Failure(ConnectionDone()))
        _, transport = self.peer(end)
        self.assertEqual(self.frames(transport), [])

    def test_acknowledgementBoundToConnection(self):
        """
        An acknowledgement counts only on the connection the event was sent
        on: a peer acknowledging ids it was never sent empties nothing, and
        the refusals are counted.
        """
        end = self.make("tcp/server:127.0.0.1:12346", OUT)
        for index in (1, 2, 3):
            end.send(event(index), None)
        rogue, rogue_transport = self.peer(end)
        [first] = self.frames(rogue_transport)[:1]
        rogue.dataReceived(b"".join(encode(n, b"") for n in range(first[0] + 3, first[0] + 100)))
        self.assertEqual(len(end.relay.buffer), 3)
        self.assertEqual(end.relay.refused, 97)
        host, host_transport = self.peer(end)
        self.assertEqual([payload for _, payload in self.frames(host_transport)], [event(1), event(2), event(3)])

    def test_everyPeerGetsEveryEvent(self):
        """
        With two peers connected, each is sent every event; the first
        acknowledgement from a peer that received one delivers it.
        """
        end = self.make("tcp/server:127.0.0.1:12346", OUT)
        a, ta = self.peer(end)
        b, tb = self.peer(end)
        end.send(event(1), None)
        [(frame_id, _)] = self.frames(ta)
        self.assertEqual(self.frames(tb), [(frame_id, event(1))])
        b.dataReceived(encode(frame_id, b""))
        self.assertEqual(len(end.relay.buffer), 0)

    def test_overflowDropsOldestAndSays(self):
        """
        A full buffer drops the oldest events and warns with the count;
        every drop is reported, at the latest when the end stops.
        """
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        end = self.make("tcp/client:127.0.0.1:12346", OUT, **{"event-buffer": 3})
        for index in range(1, 6):
            end.send(event(index), None)
        _, transport = self.peer(end)
        self.assertEqual([payload for _, payload in self.frames(transport)], [event(3), event(4), event(5)])
        warnings = [e for e in logged if "event buffer full" in e["log_format"]]
        self.assertEqual([w["n"] for w in warnings], [1])
        self.assertEqual(end.relay.buffer.lost, 2)
        end.stopService()
        warnings = [e for e in logged if "event buffer full" in e["log_format"]]
        self.assertEqual([w["n"] for w in warnings], [1, 1])

    def test_spooledOnStop(self):
        """
        Events still held when the end stops are kept in the spool and sent
        by the next run.
        """
        spool = os.path.abspath(self.mktemp())
        first = self.make("tcp/client:127.0.0.1:12346", OUT, **{"event-spool": spool})
        first.send(event(1), None)
        first.send(event(2), None)
        first.stopService()
        self.assertTrue(os.path.exists(spool + ".events"))
        second = self.make("tcp/client:127.0.0.1:12346", OUT, **{"event-spool": spool})
        _, transport = self.peer(second)
        self.assertEqual([payload for _, payload in self.frames(transport)], [event(1), event(2)])


class Listener(DatagramProtocol):
    def __init__(self):
        self.received = []

    def datagramReceived(self, data, address):
        self.received.append(data)


class EventTunnelTests(SynchronousTestCase):
    """
    A whole event tunnel in memory: a controller pushes events to the site,
    which relays them to the host's listener.
    """

    def tunnel(self, *args):
        options = Options()
        options.parseOptions(list(args) + ["--lockfile", os.path.abspath(self.mktemp())])
        service = TunnelService(options, self.reactor)
        service.startService()
        return service

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.reactor = FakeReactor()
        self.listener = Listener()
        self.reactor.listenUDP(60002, self.listener, interface="127.0.0.1")
        self.controller = self.reactor.listenUDP(60000, DatagramProtocol(), interface="127.0.0.1")

    def push(self, pump, events):
        for packet in events:
            self.controller.write(packet, ("127.0.0.1", 60001))
        for _ in range(5):
            self.reactor.advance(0)
            pump.flush()

    def test_forward(self):
        """
        site --in udp/event --out tcp/client; host --in tcp/server --out
        udp/event: every event reaches the listener in order, unlimited by
        the request rate limit.
        """
        host = self.tunnel("--in", "tcp/server:127.0.0.1:12346", "--out", "udp/event:127.0.0.1:60002")
        site = self.tunnel("--in", "udp/event:127.0.0.1:60001", "--out", "tcp/client:127.0.0.1:12346")
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        self.push(pump, [event(n) for n in range(1, 201)])
        self.assertEqual(self.listener.received, [event(n) for n in range(1, 201)])
        self.assertEqual(len(site.out.relay.buffer), 0)
        self.assertIsNone(host.router.limiter)

    def test_reverse(self):
        """
        site --out tcp/server; host --in tcp/client: the same, reversed.
        """
        self.tunnel("--in", "udp/event:127.0.0.1:60001", "--out", "tcp/server:127.0.0.1:12346")
        self.tunnel("--in", "tcp/client:127.0.0.1:12346", "--out", "udp/event:127.0.0.1:60002")
        pump = ConnectionCompleter(self.reactor).succeedOnce()
        self.push(pump, [event(n) for n in range(1, 51)])
        self.assertEqual(self.listener.received, [event(n) for n in range(1, 51)])


class _Counting(OrderedDict):
    """
    An C{OrderedDict} that counts the entries any iteration over it
    visits.
    """

    visited = 0

    def __iter__(self):
        for key in OrderedDict.__iter__(self):
            _Counting.visited += 1
            yield key

    def items(self):
        return [(key, self[key]) for key in self]

    def values(self):
        return [self[key] for key in self]

    def keys(self):
        return list(iter(self))


class EventBufferCostTests(SynchronousTestCase):
    def test_costProportional(self):
        """
        With 10,000 events held, sent and waiting for acknowledgement,
        adding one more, listing what follows the last sent and
        acknowledging one touches a few entries, not all 10,000 (the expiry
        used to copy the whole buffer on every event, and listing what was
        unsent walked all of it).
        """
        clock = Clock()
        buffer = EventBuffer(clock.seconds, limit=100000, max_age=60)
        for n in range(1, 10001):
            buffer.add(n, event(n))
        buffer._entries = _Counting(buffer._entries)
        _Counting.visited = 0
        clock.advance(30)
        buffer.add(10001, event(10001))
        self.assertEqual([frame_id for frame_id, _ in buffer.after(10000)], [10001])
        buffer.acknowledge(1)
        self.assertLessEqual(_Counting.visited, 5)

    def test_expiryProportional(self):
        """
        Expiring 100 of 10,000 events visits about 100 entries.
        """
        clock = Clock()
        buffer = EventBuffer(clock.seconds, limit=100000, max_age=60)
        for n in range(1, 101):
            buffer.add(n, event(n))
        clock.advance(1)
        for n in range(101, 10001):
            buffer.add(n, event(n))
        buffer._entries = _Counting(buffer._entries)
        _Counting.visited = 0
        clock.advance(59.5)
        self.assertEqual(buffer.expire(), 100)
        self.assertEqual(len(buffer), 9900)
        self.assertLessEqual(_Counting.visited, 110)
        self.assertEqual(buffer.after(0)[0][0], 101)


class StorageTests(SynchronousTestCase):
    """
    The spool (C{.events}) and the memory of what was forwarded (C{.seen})
    on disk: private, atomic, never following a link, and reporting what a
    damaged file lost.
    """

    def setUp(self):
        from twisted.internet.testing import EventLoggingObserver
        from twisted.logger import globalLogPublisher

        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.folder = os.path.abspath(self.mktemp())
        os.makedirs(self.folder)
        self.clock = Clock()

    def messages(self):
        from twisted.logger import formatEvent

        return [formatEvent(event) for event in self.logged]

    def buffer(self, count=3):
        buffer = EventBuffer(self.clock.seconds)
        for n in range(1, count + 1):
            buffer.add(n, event(n))
        return buffer

    def mode(self, path):
        import stat

        return stat.S_IMODE(os.lstat(path).st_mode)

    def test_spoolPrivateAndSynced(self):
        """
        The spool is written with mode 0600 and fsynced before it takes the
        old one's place; nothing else is left in the folder.
        """
        synced = []
        real = os.fsync
        self.patch(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
        path = os.path.join(self.folder, "site.events")
        self.buffer().spool(path)
        self.assertEqual(self.mode(path), 0o600)
        self.assertTrue(synced)
        self.assertEqual(os.listdir(self.folder), ["site.events"])

    def test_spoolReplacesLink(self):
        """
        A symbolic link planted at the spool's path is replaced; its target
        is untouched.
        """
        target = os.path.join(self.folder, "target")
        with open(target, "wb") as f:
            f.write(b"precious")
        path = os.path.join(self.folder, "site.events")
        os.symlink(target, path)
        self.buffer().spool(path)
        self.assertFalse(os.path.islink(path))
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"precious")

    def test_spoolFailureCounted(self):
        """
        A spool that cannot be written raises L{StorageError}, one line
        saying how many events could not be kept.
        """
        from uhppoted_tunnel.core.eventfiles import StorageError

        blocker = os.path.join(self.folder, "file")
        open(blocker, "w").close()
        path = os.path.join(blocker, "site.events")
        e = self.assertRaises(StorageError, self.buffer(2).spool, path)
        self.assertEqual(e.lost, 2)
        self.assertEqual(str(e), "could not keep 2 undelivered event(s) in {}: Not a directory".format(path))

    def test_failedWriteKeepsOldSpool(self):
        """
        A write that fails half way (here the fsync) leaves the previous
        spool as it was and no temporary file behind.
        """
        from uhppoted_tunnel.core.eventfiles import StorageError

        path = os.path.join(self.folder, "site.events")
        self.buffer(1).spool(path)
        with open(path, "rb") as f:
            before = f.read()

        def failing(fd):
            raise OSError(5, "Input/output error")

        self.patch(os, "fsync", failing)
        e = self.assertRaises(StorageError, self.buffer(3).spool, path)
        self.assertEqual(e.lost, 3)
        self.assertEqual(os.listdir(self.folder), ["site.events"])
        with open(path, "rb") as f:
            self.assertEqual(f.read(), before)

    def test_unspoolTruncated(self):
        """
        A spool cut short gives back the events before the cut; the loss is
        reported and the damaged file kept as C{.damaged}, not deleted.
        """
        path = os.path.join(self.folder, "site.events")
        self.buffer(3).spool(path)
        with open(path, "r+b") as f:
            f.truncate(os.path.getsize(path) - 10)
        events = EventBuffer.unspool(path)
        self.assertEqual([payload for _, payload in events], [event(1), event(2)])
        self.assertFalse(os.path.exists(path))
        self.assertTrue(os.path.exists(path + ".damaged"))
        [warning] = [m for m in self.messages() if "damaged" in m]
        self.assertEqual(warning, "{} was damaged: kept the 2 undelivered event(s) before the damage, discarded "
                                  "the last 68 byte(s); the damaged file is kept as {}.damaged".format(path, path))

    def test_unspoolGarbage(self):
        """
        A spool of garbage gives nothing, says so, and is kept aside.
        """
        path = os.path.join(self.folder, "site.events")
        with open(path, "wb") as f:
            f.write(b"\xff" * 100)
        self.assertEqual(EventBuffer.unspool(path), [])
        self.assertTrue(any("kept the 0 undelivered event(s)" in m for m in self.messages()))
        self.assertTrue(os.path.exists(path + ".damaged"))

    def test_unspoolLinkRefused(self):
        """
        A spool that is a symbolic link is not read, nor removed: the error
        is reported.
        """
        target = os.path.join(self.folder, "target")
        path = os.path.join(self.folder, "site.events")
        self.buffer(1).spool(target)
        os.symlink(target, path)
        self.assertEqual(EventBuffer.unspool(path), [])
        self.assertTrue(os.path.islink(path))
        self.assertTrue(any("a symbolic link" in m for m in self.messages()))

    def test_seenPrivate(self):
        """
        The C{.seen} file is created 0600, and one left 0644 by an older
        version is narrowed to 0600.
        """
        path = os.path.join(self.folder, "host.seen")
        seen = SeenEvents(10, path)
        seen.add((SESSION, 1))
        seen.close()
        self.assertEqual(self.mode(path), 0o600)
        os.chmod(path, 0o644)
        seen = SeenEvents(10, path)
        seen.close()
        self.assertEqual(self.mode(path), 0o600)

    def test_seenLinkRefused(self):
        """
        A C{.seen} that is a symbolic link is refused; its target is
        untouched.
        """
        target = os.path.join(self.folder, "target")
        with open(target, "wb") as f:
            f.write(b"precious")
        path = os.path.join(self.folder, "host.seen")
        os.symlink(target, path)
        self.assertRaises(OSError, SeenEvents, 10, path)
        with open(target, "rb") as f:
            self.assertEqual(f.read(), b"precious")

    def test_seenDamagedReported(self):
        """
        A C{.seen} with a torn last record and a record no event can have
        (frame id 0) keeps the rest, says what it discarded, keeps a copy of
        the damaged file, and goes on recording.
        """
        import struct

        path = os.path.join(self.folder, "host.seen")
        with open(path, "wb") as f:
            f.write(b"UHTSEEN2" + struct.pack("<16sI", SESSION, 1) + struct.pack("<16sI", SESSION, 0)
                    + struct.pack("<16sI", SESSION, 2) + b"\x01\x02\x03")
        seen = SeenEvents(10, path)
        self.assertEqual(((SESSION, 1) in seen, (SESSION, 2) in seen, len(seen)), (True, True, 2))
        [warning] = [m for m in self.messages() if "damaged" in m]
        self.assertEqual(warning, "{} was damaged: kept 2 forwarded event(s), discarded 1 invalid record(s) and 3 "
                                  "trailing byte(s); the damaged file is kept as {}.damaged".format(path, path))
        seen.add((SESSION, 3))
        seen.close()
        again = SeenEvents(10, path)
        self.assertEqual(len(again), 3)
        again.close()
        self.assertEqual(os.path.getsize(path + ".damaged"), 8 + 3 * 20 + 3)

    def test_seenFromRound1SetAside(self):
        """
        A C{.seen} written by round 1 (controller and event index records,
        no header) is reported, kept aside as C{.legacy} and not used.
        """
        import struct

        path = os.path.join(self.folder, "host.seen")
        with open(path, "wb") as f:
            f.write(struct.pack("<II", SERIAL, 1))
        seen = SeenEvents(10, path)
        self.assertEqual(len(seen), 0)
        seen.close()
        self.assertTrue(os.path.exists(path + ".legacy"))
        [warning] = [m for m in self.messages() if "earlier version" in m]
        self.assertIn(path, warning)

    def test_spoolKeepsSessionAndIds(self):
        """
        A spool keeps the sending half's session and each event's frame id,
        so the next run sends them again under the same names; a round-1
        spool (no header) still loads, with no session.
        """
        import struct

        path = os.path.join(self.folder, "site.events")
        buffer = EventBuffer(self.clock.seconds)
        buffer.add(7, event(1))
        buffer.add(9, event(2))
        buffer.spool(path, SESSION)
        session, events = EventBuffer.load(path)
        self.assertEqual((session, [(i, p) for i, _, p in events]), (SESSION, [(7, event(1)), (9, event(2))]))
        with open(path, "wb") as f:
            f.write(struct.pack("!dH", 1.0, 64) + event(3))
        self.assertEqual(EventBuffer.load(path), (None, [(None, 1.0, event(3))]))
