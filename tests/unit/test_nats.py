# -*- test-case-name: tests.unit.test_nats -*-
"""
Tests for the nats/ transport's parts with fakes: the subject mapping,
the reply routes, the options, the mailboxes between the reactor and the
NATS loop, each role's mapping of frames onto NATS, and a link driven by
hand through what its asyncio half would report. No nats-server, no
thread, no sleep.
"""

import asyncio
import os
import threading

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.interfaces import IStreamClientEndpoint, ITransport
from twisted.internet.protocol import Factory
from twisted.internet.task import Clock
from twisted.logger import globalLogPublisher
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.core.counts import EMPTY, TOO_LONG, Tally
from uhppoted_tunnel.core.frames import encode
from uhppoted_tunnel.core.spec import parse
from uhppoted_tunnel.core.events import SESSION_ID, parse_session, session_frame
from uhppoted_tunnel.interfaces import IN, OUT, ICountingEndpoint, IConnectorMaker, IFrameConnection, IInEnd, IOutEnd
from uhppoted_tunnel.link.ends import ClientEnd
from uhppoted_tunnel.testing import FakeReactor, RecordingRouter, packet
from uhppoted_tunnel.transports.nats import roles
from uhppoted_tunnel.transports.nats.batch import BadBatch, Batches, decode
from uhppoted_tunnel.transports.nats.bridge import LoopThread, Mailbox, ReactorLoop, waker
from uhppoted_tunnel.transports.nats.connection import NATSConnection
from uhppoted_tunnel.transports.nats.link import DialFailed, NATSClientEndpoint
from uhppoted_tunnel.transports.nats.maker import NATSConnectorMaker, credentials
from uhppoted_tunnel.transports.nats.options import credentials_problem, serials
from uhppoted_tunnel.transports.nats.session import Plan, Session
from uhppoted_tunnel.transports.nats.subjects import (
    BAD_FRAME,
    ReplyRoutes,
    Subjects,
    check_prefix,
    message_id,
    parse_message_id,
    serial_of,
    stream_name,
)

A, B = 405419896, 303986753
SESSION = bytes(range(16))


class SubjectTests(SynchronousTestCase):
    """
    Where a frame goes on the cluster.
    """

    def test_unicast(self):
        """
        A request for one controller goes on that controller's subject,
        the serial read little-endian from bytes 4..7.
        """
        subjects = Subjects("site.tunnel")
        self.assertEqual(serial_of(packet(0x20, A)), A)
        self.assertEqual(subjects.for_request(packet(0x20, A)), "site.tunnel.request.405419896")

    def test_broadcast(self):
        """
        Serial 0, and what is too short to name a controller, go on the
        broadcast subject every site hears.
        """
        subjects = Subjects()
        self.assertEqual(subjects.for_request(packet(0x94, 0)), "uhppoted.tunnel.broadcast")
        self.assertEqual(subjects.for_request(b"\x17\x94"), "uhppoted.tunnel.broadcast")

    def test_prefix(self):
        """
        A prefix with wildcards or empty tokens is refused, saying what is
        expected.
        """
        for bad in ("", "a..b", "a.*", "a.>", "a b", 3):
            self.assertRaises(ValueError, check_prefix, bad)
        self.assertEqual(check_prefix("uhppoted.tunnel-1"), "uhppoted.tunnel-1")

    def test_events(self):
        """
        Events go under C{PREFIX.events.}, in a stream named without dots.
        """
        subjects = Subjects("a.b")
        self.assertEqual(subjects.for_event(packet(0x20, A)), "a.b.events.405419896")
        self.assertEqual(subjects.events, "a.b.events.>")
        self.assertEqual(stream_name("a.b"), "A_B_EVENTS")

    def test_messageId(self):
        """
        An event's message id names its session and id, and reads back;
        anything else reads as none.
        """
        self.assertEqual(parse_message_id(message_id(SESSION, 12)), (SESSION, 12))
        for text in (None, "", "zz.1", SESSION.hex() + ".0", SESSION.hex() + ".x", SESSION.hex()[:-2] + ".1"):
            self.assertIsNone(parse_message_id(text))


class ReplyRoutesTests(SynchronousTestCase):
    """
    A site's requests in flight.
    """

    def test_route(self):
        """
        Each request gets a new id, whose replies go to its reply subject
        while they keep coming.
        """
        clock = Clock()
        routes = ReplyRoutes(clock.seconds, idle=15)
        first, second = routes.add("r.1"), routes.add("r.2")
        self.assertNotEqual(first, second)
        clock.advance(10)
        self.assertEqual(routes.get(first), "r.1")
        clock.advance(10)
        self.assertEqual(routes.get(first), "r.1")
        self.assertIsNone(routes.get(second))

    def test_limit(self):
        """
        Past the limit, the oldest routes are forgotten.
        """
        routes = ReplyRoutes(Clock().seconds, limit=2)
        ids = [routes.add("r.{}".format(i)) for i in range(3)]
        self.assertIsNone(routes.get(ids[0]))
        self.assertEqual(routes.get(ids[2]), "r.2")
        self.assertEqual(len(routes), 2)


class OptionsTests(SynchronousTestCase):
    """
    The nats/ options' conversions and checks.
    """

    def test_serials(self):
        """
        Serials come as a TOML list of numbers or strings, or a comma list.
        """
        self.assertEqual(serials([A, str(B)]), [B, A])
        self.assertEqual(serials("{}, {}".format(A, B)), [B, A])
        self.assertRaises(ValueError, serials, ["x"])
        self.assertRaises(ValueError, serials, [0])
        self.assertRaises(ValueError, serials, 3)

    def test_commandLine(self):
        """
        The flags parse into the settings the ends read, repeatable
        serials added up, a bad prefix refused naming the flag.
        """
        options = Options()
        options.parseOptions(["--in", "nats/client:127.0.0.1:4222", "--out", "udp/broadcast:127.0.0.1:60000",
                              "--nats-serial", str(A), "--nats-serial", str(B), "--nats-subject", "acme.t",
                              "--nats-pending-limit", "100000"])
        self.assertEqual((sorted(options["nats-serials"]), options["nats-subject"]), ([B, A], "acme.t"))
        self.assertEqual((options["nats-durable"], options["nats-pending-limit"]), ("uhppoted-tunnel", 100000))
        with self.assertRaises(UsageError) as caught:
            Options().parseOptions(["--in", "nats/client:h:1", "--out", "udp/broadcast:127.0.0.1:1",
                                    "--nats-subject", "a.*"])
        self.assertIn("nats-subject", str(caught.exception))

    def test_credentialsReadable(self):
        """
        A credentials file others can read is reported; one only its owner
        reads is not; a missing one is.
        """
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("SUAAAA\n")
        os.chmod(path, 0o644)
        self.assertIn("others can read it", credentials_problem(path))
        os.chmod(path, 0o600)
        self.assertIsNone(credentials_problem(path))
        self.assertIn("a .creds file or an nkey seed", credentials_problem(path + ".missing"))

    def test_credentialsKind(self):
        """
        A .creds file and an nkey seed are told apart; anything else is
        refused naming the flag.
        """
        creds, seed, other = self.mktemp(), self.mktemp(), self.mktemp()
        with open(creds, "w") as f:
            f.write("-----BEGIN NATS USER JWT-----\neyJ...\n------END NATS USER JWT------\n")
        with open(seed, "w") as f:
            f.write("SUAGMJH5XLGZKQQWAWKRZJIGMOU4HPFUYLXJMXOO5NLFEO2OOQJ5LPRDPM\n")
        with open(other, "w") as f:
            f.write("hello\n")
        self.assertEqual(credentials(creds), {"user_credentials": creds})
        self.assertEqual(credentials(seed), {"nkeys_seed": seed})
        self.assertRaises(ValueError, credentials, other)
        self.assertEqual(credentials(None), {})


class BatchTests(SynchronousTestCase):
    """
    A request tunnel's messages: frames back to back in the stream wire
    format.
    """

    def test_decode(self):
        """
        A message is its frames, in order; one frame is a message too.
        """
        self.assertEqual(decode(encode(7, b"one") + encode(8, b"two"), 1024), [(7, b"one"), (8, b"two")])
        self.assertEqual(decode(encode(9, b"x" * 1024), 1024), [(9, b"x" * 1024)])

    def test_bad(self):
        """
        A message with any part that is not a frame of this tunnel is
        refused whole, with the metrics' reason.
        """
        good = encode(1, b"ok")
        cases = [(b"", EMPTY), (good + encode(2, b""), EMPTY), (good + encode(2, b"x" * 65), TOO_LONG),
                 (good + b"\x00\x05", BAD_FRAME), (good + encode(2, b"abc")[:-1], BAD_FRAME),
                 (encode(0, b"ok"), BAD_FRAME)]
        for data, reason in cases:
            with self.assertRaises(BadBatch) as raised:
                decode(data, 64)
            self.assertEqual(raised.exception.reason, reason)

    def test_batches(self):
        """
        Frames for the same subject and reply subject join in one message,
        each subject's in order; a batch that reaches the limit is
        published at once.
        """
        batches = Batches(limit=30)
        self.assertFalse(batches)
        one, two, three = encode(1, b"a"), encode(2, b"b"), encode(3, b"c")
        self.assertIsNone(batches.add("s", "r", one))
        self.assertIsNone(batches.add("t", None, two))
        self.assertIsNone(batches.add("s", "r", three))
        self.assertTrue(batches)
        self.assertEqual(batches.take(), [("s", "r", one + three, 2), ("t", None, two, 1)])
        self.assertFalse(batches)
        big = encode(4, b"x" * 10)
        self.assertIsNone(batches.add("s", None, big))
        self.assertEqual(batches.add("s", None, big), ("s", None, big + big, 2))
        self.assertEqual(batches.take(), [])


class MailboxTests(SynchronousTestCase):
    """
    The queue between the reactor's thread and the NATS loop's.
    """

    def test_oneWakeABurst(self):
        """
        A burst of items wakes the other side once, and each is handled in
        order when it drains.
        """
        woken, handled = [], []
        box = Mailbox(woken.append, handled.append)
        for item in range(5):
            box.put(item)
        self.assertEqual(len(woken), 1)
        woken[0]()
        self.assertEqual(handled, [0, 1, 2, 3, 4])
        box.put(5)
        self.assertEqual(len(woken), 2)

    def test_limit(self):
        """
        A full mailbox refuses an item, unless forced.
        """
        box = Mailbox(lambda drain: None, None, limit=1)
        self.assertTrue(box.put(1))
        self.assertFalse(box.put(2))
        self.assertTrue(box.put(3, force=True))
        self.assertEqual(box.take(), [1, 3])


class LoopThreadTests(SynchronousTestCase):
    """
    The NATS loop's thread, and a mailbox from this thread to it.
    """

    def test_jobs(self):
        """
        Jobs share one loop on a daemon thread, which stops after the last;
        a later job starts a new one.
        """
        loops = LoopThread("test-nats")
        release = threading.Event()
        seen = []

        async def job(n):
            current = threading.current_thread()
            seen.append((current.name, current.daemon))
            while not release.is_set():
                await asyncio.sleep(0.001)
            return n

        first_loop = loops.acquire()
        first = loops.run(first_loop, job, 1)
        self.assertIs(loops.acquire(), first_loop)
        second = loops.run(first_loop, job, 2)
        release.set()
        self.assertEqual((first.result(10), second.result(10)), (1, 2))
        third_loop = loops.acquire()
        self.assertEqual(loops.run(third_loop, job, 3).result(10), 3)
        self.assertIsNot(third_loop, first_loop)
        self.assertEqual(seen, [("test-nats", True)] * 3)

    def test_commands(self):
        """
        What this thread puts in a mailbox made with L{waker} reaches a job
        on the loop, in order, however many wake-ups it took.
        """
        loops = LoopThread("test-nats")
        loop = loops.acquire()
        wakeup = asyncio.Event()
        outbox = Mailbox(waker(loop, wakeup), None)

        async def job():
            taken = []
            while len(taken) < 100:
                await wakeup.wait()
                wakeup.clear()
                taken.extend(outbox.take())
            return taken

        for n in range(50):
            outbox.put(n)
        done = loops.run(loop, job)
        for n in range(50, 100):
            outbox.put(n)
        self.assertEqual(done.result(10), list(range(100)))


class FakeNATS:
    """
    What a session's writer uses of a nats-py client.
    """

    def __init__(self):
        self.published = []

    async def publish(self, subject, data, reply=""):
        self.published.append((subject, data, reply))


class WriterTests(SynchronousTestCase):
    """
    A session's writer, on a loop of the test's own.
    """

    def test_coalesced(self):
        """
        The frames the reactor publishes in one turn on one subject with
        one reply subject go as one message, each subject's in order, and
        before the turn's next other command (closing included).
        """
        loop = asyncio.new_event_loop()
        self.addCleanup(loop.close)
        wakeup = asyncio.Event()
        outbox = Mailbox(lambda drain: wakeup.set(), None)
        session = Session(Plan("nats://127.0.0.1:4222"), Mailbox(lambda drain: None, None), outbox, wakeup)
        session.nc = nc = FakeNATS()
        one, two, three, four = (encode(n, packet(0x20, A)) for n in range(1, 5))
        for command in [("publish", "s", one, "r"), ("publish", "t", two, None), ("publish", "s", three, "r"),
                        ("ack", 99), ("publish", "s", four, "r"), ("close",)]:
            outbox.put(command)
        loop.run_until_complete(asyncio.wait_for(session._write(), 5))
        self.assertEqual(nc.published, [("s", one + three, "r"), ("t", two, ""), ("s", four, "r")])


class FakeConnection:
    def __init__(self):
        self.frames = []

    def frameReceived(self, frame_id, payload):
        self.frames.append((frame_id, payload))


class RoleTests(SynchronousTestCase):
    """
    How each role maps frames onto NATS.
    """

    def setUp(self):
        self.commands, self.bad, self.no_site = [], [], []
        self.connection = FakeConnection()
        self.subjects = Subjects()

    def command(self, *item):
        self.commands.append(item)

    def test_host(self):
        """
        A host publishes a request, as a frame naming its id, on its
        controller's subject with its inbox as the reply subject; each
        frame of a message there is a reply to the request of its id;
        "no responders" is reported; anything else is bad.
        """
        role = roles.HostRequests(self.subjects, 1024, self.command, lambda *a: self.bad.append(a),
                                  lambda: self.no_site.append(1))
        role.ready(self.connection, "_INBOX.h")
        request = packet(0x20, A)
        self.assertTrue(role.sendFrame(9, request))
        self.assertEqual(self.commands, [("publish", "uhppoted.tunnel.request.405419896", encode(9, request),
                                          "_INBOX.h")])
        role.message("_INBOX.h", None, encode(9, b"reply"), None)
        role.message("_INBOX.h", None, encode(9, b"again") + encode(10, b"ten"), None)
        role.message("_INBOX.h", None, b"", {"Status": "503"})
        role.message("_INBOX.other", None, encode(9, b"reply"), None)
        role.message("_INBOX.h", None, encode(9, b"x" * 1025), None)
        self.assertEqual(self.connection.frames, [(9, b"reply"), (9, b"again"), (10, b"ten")])
        self.assertEqual(self.no_site, [1])
        self.assertEqual([reason for _, _, reason in self.bad], [BAD_FRAME, TOO_LONG])

    def test_site(self):
        """
        A site hands each request to its relay under an id of its own,
        publishes each reply on the request's reply subject as a frame of
        the host's id, and subscribes once to the requests of each
        controller that answers.
        """
        clock = Clock()
        role = roles.SiteRequests(self.subjects, 1024, self.command, lambda *a: self.bad.append(a), clock.seconds)
        role.ready(self.connection, None)
        role.message("uhppoted.tunnel.broadcast", "_INBOX.h", encode(1, packet(0x94, 0)), None)
        [(frame_id, payload)] = self.connection.frames
        self.assertEqual(payload, packet(0x94, 0))
        self.assertTrue(role.sendFrame(frame_id, packet(0x94, A)))
        self.assertTrue(role.sendFrame(frame_id, packet(0x94, A)))
        self.assertEqual(self.commands, [("publish", "_INBOX.h", encode(1, packet(0x94, A)), None),
                                         ("subscribe", "uhppoted.tunnel.request.405419896"),
                                         ("publish", "_INBOX.h", encode(1, packet(0x94, A)), None)])
        self.assertFalse(role.sendFrame(frame_id + 1, packet(0x94, A)))

    def test_siteBatch(self):
        """
        Each frame of a request message is a request of its own, and each
        is answered to the host under the host's id; a message that is not
        all frames is dropped whole and counted by reason.
        """
        role = roles.SiteRequests(self.subjects, 1024, self.command, lambda *a: self.bad.append(a),
                                  Clock().seconds, serials=[A, B], learn=False)
        role.ready(self.connection, None)
        role.message("uhppoted.tunnel.request.405419896", "_INBOX.h",
                     encode(7, packet(0x20, A)) + encode(8, packet(0x20, A)), None)
        role.message("uhppoted.tunnel.request.405419896", "_INBOX.g", encode(7, packet(0x20, A)), None)
        ids = [frame_id for frame_id, _ in self.connection.frames]
        self.assertEqual(len(set(ids)), 3)
        for frame_id in reversed(ids):
            role.sendFrame(frame_id, packet(0x20, A))
        self.assertEqual([c[1:3] for c in self.commands], [("_INBOX.g", encode(7, packet(0x20, A))),
                                                           ("_INBOX.h", encode(8, packet(0x20, A))),
                                                           ("_INBOX.h", encode(7, packet(0x20, A)))])
        role.message("uhppoted.tunnel.request.405419896", "_INBOX.h", encode(9, packet(0x20, A)) + b"\x00", None)
        self.assertEqual(len(self.connection.frames), 3)
        self.assertEqual([reason for _, _, reason in self.bad], [BAD_FRAME])

    def test_siteListed(self):
        """
        A site given its serials learns no others, and drops requests with
        no reply subject or too long.
        """
        role = roles.SiteRequests(self.subjects, 64, self.command, lambda *a: self.bad.append(a), Clock().seconds,
                                  serials=[A], learn=False)
        role.ready(self.connection, None)
        role.message("uhppoted.tunnel.broadcast", "_INBOX.h", encode(1, packet(0x94, 0)), None)
        role.sendFrame(self.connection.frames[0][0], packet(0x94, B))
        self.assertEqual([c[0] for c in self.commands], ["publish"])
        role.message("uhppoted.tunnel.broadcast", None, encode(1, packet(0x94, 0)), None)
        role.message("uhppoted.tunnel.broadcast", "r", encode(1, b"x" * 65), None)
        self.assertEqual(len(self.bad), 2)

    def test_store(self):
        """
        A site's events are stored with the message id of the session its
        relay named, and the relay hears each stored one acknowledged.
        """
        role = roles.EventStore(self.subjects, self.command)
        role.ready(self.connection, None)
        self.assertTrue(role.sendFrame(SESSION_ID, session_frame(SESSION)))
        event = packet(0x20, A)
        self.assertTrue(role.sendFrame(3, event))
        self.assertEqual(self.commands, [("store", "uhppoted.tunnel.events.405419896", event,
                                          message_id(SESSION, 3), 3)])
        role.stored(3)
        self.assertEqual(self.connection.frames, [(3, b"")])

    def test_take(self):
        """
        A host hands its relay the session of each site before its events,
        each event under the site's id, and acknowledges the message when
        the relay acknowledges the frame; a message no tunnel stored is
        acknowledged and counted.
        """
        role = roles.EventTake(1024, self.command, lambda *a: self.bad.append(a))
        role.ready(self.connection, None)
        event = packet(0x20, A)
        role.event(1, event, {"Nats-Msg-Id": message_id(SESSION, 5)})
        role.event(2, event, {"Nats-Msg-Id": message_id(SESSION, 6)})
        role.event(3, event, None)
        frames = self.connection.frames
        self.assertEqual(parse_session(frames[0][1]), SESSION)
        self.assertEqual(frames[1:], [(5, event), (6, event)])
        self.assertEqual(self.commands, [("ack", 3)])
        self.assertTrue(role.sendFrame(6, b""))
        self.assertFalse(role.sendFrame(6, b""))
        self.assertEqual(self.commands[1:], [("ack", 2)])
        self.assertEqual(len(self.bad), 1)


class FakeLoops:
    """
    A NATS loop that never runs: what would run is recorded.
    """

    def __init__(self):
        self.runs = []

    def acquire(self):
        return self

    def call_soon_threadsafe(self, function, *args):
        pass

    def run(self, loop, job, *args):
        self.runs.append(args)


class FakeThreadReactor(Clock):
    def callFromThread(self, function, *args):
        function(*args)


class LinkTests(SynchronousTestCase):
    """
    A link driven by hand with what its asyncio half would report.
    """

    def setUp(self):
        self.reactor = FakeThreadReactor()
        self.loops = FakeLoops()
        self.endpoint = NATSClientEndpoint(self.reactor, "127.0.0.1:4222", Plan("nats://127.0.0.1:4222"),
                                           self.role, self.loops, None)
        self.factory = Factory.forProtocol(NATSConnection)
        self.ready, self.closed = [], []
        self.factory.connectionReady = self.ready.append
        self.factory.connectionClosed = lambda c, reason: self.closed.append(reason)
        self.factory.relay = None

    def role(self, link):
        return roles.HostRequests(Subjects(), 1024, link.command, link.bad, link.noSite)

    def report(self, *item):
        plan, inbox, outbox, wakeup = self.loops.runs[-1]
        inbox.put(item)
        return outbox

    def test_interfaces(self):
        """
        The endpoint, the link and the connection provide their interfaces.
        """
        verifyObject(IStreamClientEndpoint, self.endpoint)
        verifyObject(IFrameConnection, NATSConnection())
        d = self.endpoint.connect(self.factory)
        outbox = self.report("ready", "127.0.0.1:4222", "_INBOX.h")
        connection = self.successResultOf(d)
        verifyObject(ITransport, connection.transport)
        self.assertEqual(self.ready, [connection])
        self.assertTrue(connection.sendFrame(1, packet(0x94, 0)))
        self.assertEqual(outbox.take(), [("publish", "uhppoted.tunnel.broadcast", encode(1, packet(0x94, 0)),
                                          "_INBOX.h")])

    def test_failed(self):
        """
        An attempt that fails fails C{connect} with the reason.
        """
        d = self.endpoint.connect(self.factory)
        self.report("failed", "the server refused this end's credentials")
        self.assertIn("credentials", str(self.failureResultOf(d, DialFailed).value))

    def test_closed(self):
        """
        Closing asks the loop to close, and the connection is told once the
        link is gone; a lost link is told as lost.
        """
        d = self.endpoint.connect(self.factory)
        outbox = self.report("ready", "127.0.0.1:4222", "_INBOX.h")
        connection = self.successResultOf(d)
        connection.close()
        self.assertEqual(outbox.take(), [("close",)])
        self.assertFalse(connection.sendFrame(1, packet(0x94, 0)))
        self.report("lost", "closed")
        self.assertEqual(len(self.closed), 1)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel(self):
        """
        Cancelling an attempt closes it; a late "ready" builds nothing.
        """
        d = self.endpoint.connect(self.factory)
        outbox = self.loops.runs[-1][2]
        d.cancel()
        self.failureResultOf(d)
        self.assertEqual(outbox.take(), [("close",)])
        self.report("ready", "127.0.0.1:4222", "_INBOX.h")
        self.assertEqual(self.ready, [])

    def test_badCounted(self):
        """
        A message that is not this end's frames is dropped, warned of
        (throttled: two in a window are one warning until the link ends),
        and counted by reason where the end's other drops are, whatever
        attempt's link took it.
        """
        verifyObject(ICountingEndpoint, self.endpoint)
        logged = []
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        globalLogPublisher.addObserver(logged.append)
        self.endpoint.connect(self.factory)
        self.report("ready", "127.0.0.1:4222", "_INBOX.h")
        self.report("message", "_INBOX.other", None, encode(9, b"reply"), None)
        self.report("message", "_INBOX.h", None, encode(9, b"x" * 1025), None)
        warned = [e for e in logged if "not this tunnel's frames" in e.get("log_format", "")]
        self.assertEqual(len(warned), 1)
        self.report("lost", "gone")
        self.endpoint.connect(self.factory)
        self.report("ready", "127.0.0.1:4222", "_INBOX.h")
        self.report("message", "_INBOX.h", None, encode(9, b"x" * 1025), None)
        t = Tally()
        t.endpoint(self.endpoint)
        self.assertEqual(t.dropped, {BAD_FRAME: 1, TOO_LONG: 2})


SETTINGS = {"max-payload": 1024, "max-send-queue": 262144, "stall-timeout": 30.0, "dead-peer-timeout": 60.0,
            "udp-timeout": 5.0, "debug": False, "max-retries": -1, "max-retry-delay": 300.0, "events": False,
            "nats-subject": "uhppoted.tunnel", "nats-credentials": None, "nats-serials": (),
            "nats-pending-limit": 1 << 20, "nats-durable": "d"}


class MakerTests(SynchronousTestCase):
    """
    The ends the maker builds.
    """

    def make(self, text, role, maker=None):
        maker = maker or NATSConnectorMaker("nats", FakeLoops(), None)
        _, spec = parse(text, {prefix: maker for prefix in maker.prefixes})
        return maker.makeEnd(spec, role, SETTINGS, RecordingRouter(), FakeReactor())

    def test_interfaces(self):
        """
        The maker is a connector maker; its ends are client ends.
        """
        verifyObject(IConnectorMaker, NATSConnectorMaker())
        end = self.make("nats/client:127.0.0.1:4222", IN)
        self.assertIsInstance(end, ClientEnd)
        verifyObject(IInEnd, end)
        verifyObject(IOutEnd, self.make("nats/client:127.0.0.1:4222", OUT))

    def test_plans(self):
        """
        A site subscribes to broadcasts; a host has an inbox; the URL names
        the address, port 4222 when none is given, tls:// for natss/.
        """
        site = self.make("nats/client:nats1.example.com", IN)
        self.assertEqual(site.endpoint.plan.url, "nats://nats1.example.com:4222")
        self.assertEqual(site.endpoint.plan.subscribe, ("uhppoted.tunnel.broadcast",))
        host = self.make("nats/client:[::1]:4223", OUT)
        self.assertEqual(host.endpoint.plan.url, "nats://[::1]:4223")
        self.assertTrue(host.endpoint.plan.inbox)
        maker = NATSConnectorMaker("natss", FakeLoops(), None)
        self.assertEqual(maker.url(parse("natss/client:h:1", {"natss/client:": maker})[1]), "tls://h:1")

    def test_dropsInTally(self):
        """
        What an end's links drop as not its frames is in the end's tally,
        which C{/metrics} and the status page read.
        """
        end = self.make("nats/client:127.0.0.1:4222", OUT)
        end.endpoint.countDropped(TOO_LONG)
        end.endpoint.countDropped(BAD_FRAME)
        t = Tally()
        end.tally(t)
        self.assertEqual(t.dropped.get(TOO_LONG), 1)
        self.assertEqual(t.dropped.get(BAD_FRAME), 1)

    def test_asyncioReactor(self):
        """
        Under the asyncio reactor the links run on its own loop, with no
        thread; under any other, on the NATS loop's thread.
        """
        loops = FakeLoops()
        maker = NATSConnectorMaker("nats", loops, None)
        reactor = AsyncioSelectorReactor.__new__(AsyncioSelectorReactor)
        reactor._asyncioEventloop = loop = object()
        chosen = maker.loopsFor(reactor)
        self.assertIsInstance(chosen, ReactorLoop)
        self.assertIs(chosen.acquire(), loop)
        self.assertIs(maker.loopsFor(FakeReactor()), loops)
