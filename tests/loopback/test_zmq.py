# -*- test-case-name: tests.loopback.test_zmq -*-
"""
The zmq/ ends end to end: real C{uhppoted-tunnel} processes on 127.0.0.1
joined by ZeroMQ (plain and CURVE), the controller emulator, and the
C{uhppoted} client as the application. Nothing sleeps: each step waits,
with a deadline, for a log line, an exit or a reply.
"""

import datetime
import os

import zmq
import zmq.auth
import zmq.utils.monitor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.processes import (
    Client,
    emulator_sent_line,
    free_port,
    lockfile,
    run_tunnel,
    start_emulator,
    start_event_emulator,
    start_host,
    start_site,
    stop,
    workdir,
)
from tests.loopback.eventpairs import COUNT, EventTunnels
from tests.loopback.eventpairs import A as EVENT_CONTROLLER
from tests.loopback.pairs import A, B, Pairs
from uhppoted_tunnel.core.frames import encode
from uhppoted_tunnel.testing import packet
from uhppoted_tunnel.transports.zmq.wire import FRAMES, decode

#: What a zmq/ end logs once it listens, and once a link is ready.
LISTENING = r"\bZMQ\s+listening on 127\.0\.0\.1:(\d+)\s*$"


def connected(port=None):
    return r"\bZMQ\s+connected to 127\.0\.0\.1:" + (r"\d+" if port is None else str(port)) + r"\s*$"


def retrying(port):
    return r"WARN\s+ZMQ\s+could not connect to 127\.0\.0\.1:{}\b.*retrying in (\d+)s".format(port)


def make_keys(testcase):
    """
    CURVE key files as C{zmq.auth.create_certificates} makes them: the
    server's, an authorised client's (its public key in the folder the
    server reads) and an unauthorised client's.

    :return: a dict of paths.
    """
    root = os.path.join(workdir(testcase), "keys")
    authorized = os.path.join(root, "authorized")
    os.makedirs(authorized)
    server_public, server_secret = zmq.auth.create_certificates(root, "server")
    client_public, client_secret = zmq.auth.create_certificates(root, "client")
    _, rogue_secret = zmq.auth.create_certificates(root, "rogue")
    os.rename(client_public, os.path.join(authorized, "client.key"))
    return {"server": server_secret, "server-public": server_public, "client": client_secret,
            "rogue": rogue_secret, "authorized": authorized}


class ZMQPairTests(Pairs, TestCase):
    """
    The uhppoted client's requests through a zmq pair, forward and
    reverse, plain and with CURVE.
    """

    @inlineCallbacks
    def assertRequests(self, client):
        """
        Discovery gets both controllers; get-time and get-controller reach
        the controller named; a card put through the tunnel reads back.
        """
        yield self.assertDiscovers(client)
        yield self.assertUnicast(client)
        for serial in (A, B):
            when = yield client.get_time(serial)
            self.assertEqual(when.controller, serial)
        start, end = datetime.date(2024, 1, 1), datetime.date(2025, 12, 31)
        stored = yield client.put_card(B, 8165538, start, end, (1, 0, 29, 1), 7531)
        self.assertEqual((stored.controller, stored.stored), (B, True))
        card = yield client.get_card(B, 8165538)
        self.assertEqual((card.controller, card.card_number, card.start_date, card.door_3, card.pin),
                         (B, 8165538, start, 29, 7531))

    @inlineCallbacks
    def forward(self, server_flags=(), client_flags=()):
        emulator, emulator_port = yield start_emulator(self, A, B)
        host, udp_port = yield start_host(self, "zmq/server:127.0.0.1:0", *server_flags)
        port = int((yield host.waitFor(LISTENING)).group(1))
        site = start_site(self, "zmq/client:127.0.0.1:{}".format(port), emulator_port, *client_flags)
        yield site.waitFor(connected(port))
        yield host.waitFor(connected())
        return host, site, Client(udp_port), port

    @inlineCallbacks
    def test_forward(self):
        """
        Site dialling host over plain ZeroMQ: every request is answered by
        the controllers it was meant for; SIGTERM stops the host, then the
        site waiting to redial, each with exit 0 and no traceback.
        """
        host, site, client, port = yield self.forward()
        yield self.assertRequests(client)
        mark = site.mark()
        yield self.assertCleanStop(host, "TERM", lockfile(self, "host"))
        yield site.waitFor(r"ZMQ\s+connection to 127\.0\.0\.1:{} closed".format(port), since=mark)
        yield site.waitFor(r"ZMQ\s+reconnecting to 127\.0\.0\.1:{} in 5s".format(port), since=mark)
        yield self.assertCleanStop(site, "TERM", lockfile(self, "site"))

    @inlineCallbacks
    def test_reverse(self):
        """
        Host dialling site over plain ZeroMQ: every request is answered;
        SIGTERM stops the site, then the host, cleanly.
        """
        emulator, emulator_port = yield start_emulator(self, A, B)
        site = start_site(self, "zmq/server:127.0.0.1:0", emulator_port)
        port = int((yield site.waitFor(LISTENING)).group(1))
        host, udp_port = yield start_host(self, "zmq/client:127.0.0.1:{}".format(port))
        yield host.waitFor(connected(port))
        yield site.waitFor(connected())
        yield self.assertRequests(Client(udp_port))
        yield self.assertCleanStop(site, "TERM", lockfile(self, "site"))
        yield self.assertCleanStop(host, "TERM", lockfile(self, "host"))

    @inlineCallbacks
    def test_curve(self):
        """
        A CURVE pair with the client's key authorised relays every request,
        and the host warns of nothing.
        """
        keys = make_keys(self)
        host, site, client, port = yield self.forward(
            ["--zmq-server-key", keys["server"], "--zmq-authorized-keys", keys["authorized"]],
            ["--zmq-server-key", keys["server-public"], "--zmq-client-key", keys["client"]])
        yield self.assertRequests(client)
        self.assertNotIn("WARN", host.output() + site.output())

    @inlineCallbacks
    def test_unauthorised_key(self):
        """
        A client whose key is not authorised is refused in the handshake:
        it warns once per attempt, naming the refusal, and backs off (5 s,
        then 10 s); the server warns once (throttled), naming the client's
        address. Neither ever logs a link, and SIGTERM stops both cleanly.
        """
        keys = make_keys(self)
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "zmq/server:127.0.0.1:0",
                          "--zmq-server-key", keys["server"], "--zmq-authorized-keys", keys["authorized"])
        port = int((yield host.waitFor(LISTENING)).group(1))
        site = run_tunnel(self, "site", "--in", "zmq/client:127.0.0.1:{}".format(port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(free_port()),
                          "--zmq-server-key", keys["server-public"], "--zmq-client-key", keys["rogue"])
        first = yield site.waitFor(retrying(port))
        self.assertIn("the server refused this client (ZAP 400)", first.string)
        self.assertEqual(first.group(1), "5")
        second = yield site.waitFor(retrying(port), since=site.mark())
        self.assertEqual(second.group(1), "10")
        warnings = [line for _, line in host.lines if "WARN" in line]
        self.assertEqual(len(warnings), 1, host.recent())
        self.assertRegex(warnings[0], r"ZMQ\s+refused 1 client\(s\) whose CURVE key is not in "
                                      r"--zmq-authorized-keys, the last from 127\.0\.0\.1$")
        self.assertNotRegex(site.output() + host.output(), r"connected to")
        yield self.assertCleanStop(site, "TERM", lockfile(self, "site"))
        yield self.assertCleanStop(host, "TERM", lockfile(self, "host"))

    @inlineCallbacks
    def test_out_of_retries(self):
        """
        With --max-retries 1, a client with no server exits 1 after its
        second failed attempt, naming the address.
        """
        port = free_port()
        site = run_tunnel(self, "site", "--in", "zmq/client:127.0.0.1:{}".format(port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(free_port()), "--max-retries", "1")
        code = yield site.exited(timeout=30)
        self.assertEqual(code, 1, site.recent())
        self.assertRegex(site.output(), r"ERROR\s+ZMQ\s+could not connect to 127\.0\.0\.1:{} after 2 attempt\(s\)"
                         .format(port))
        self.assertNotIn("Traceback", site.output())

    def test_bad_key_file(self):
        """
        A key file that is missing is a one-line error naming the flag and
        the file, exit 2, before anything listens.
        """
        missing = os.path.join(workdir(self), "nowhere.key_secret")
        child = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "zmq/server:127.0.0.1:0",
                           "--zmq-server-key", missing)
        return self.assertUsageError(child, "--zmq-server-key", missing)


class ZMQEventTests(EventTunnels, TestCase):
    """
    An event tunnel over ZeroMQ loses nothing when a half restarts.
    """

    @inlineCallbacks
    def test_host_restart(self):
        """
        A host stopped with SIGTERM while events stream in, and started
        again on the same port with the same lockfile, is redialled by the
        site, which sends again what was not acknowledged: every one of the
        200 events arrives exactly once.
        """
        keys = make_keys(self)
        server = ["--zmq-server-key", keys["server"], "--zmq-authorized-keys", keys["authorized"]]
        client = ["--zmq-server-key", keys["server-public"], "--zmq-client-key", keys["client"]]
        host = self.host("zmq/event/server:127.0.0.1:0", *server)
        port = int((yield host.waitFor(LISTENING)).group(1))
        site = self.site(0, "zmq/event/client:127.0.0.1:{}".format(port), *client)
        yield site.waitFor(connected(port))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "20ms", serials=[EVENT_CONTROLLER])
        yield self.events.waitForCount(50)
        code = yield stop(host, "TERM")
        self.assertEqual(code, 0, host.recent())
        self.assertNotIn("Traceback", host.output())
        self.assertLess(len(self.events.keys), COUNT, "the stream ended before the host stopped")
        mark = site.mark()
        host = self.host("zmq/event/server:127.0.0.1:{}".format(port), *server, name="host")
        yield host.waitFor(LISTENING)
        yield site.waitFor(connected(port), since=mark)
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield self.events.waitForKey((EVENT_CONTROLLER, COUNT))
        yield self.finish(site_port)
        received = self.events.of(EVENT_CONTROLLER)
        self.assertEqual(sorted(received), list(range(1, COUNT + 1)), "lost or duplicated events")
        for half in (site, host):
            self.assertNotIn("Traceback", half.output())
        code = yield stop(site, "TERM")
        self.assertEqual(code, 0, site.recent())


class RawClient:
    """
    A DEALER in the test process, dialling a zmq/server end as a client
    end would, with its monitor; every wait is a poll with a deadline.
    """

    def __init__(self, testcase, port, announce=False):
        """
        :param announce: whether it says that it reads several frames a
            message, as an end of this version does (an older end does
            not).
        """
        self.context = zmq.Context()
        testcase.addCleanup(self.close)
        self.socket = self.context.socket(zmq.DEALER)
        self.socket.reconnect_ivl = -1
        if announce:
            self.socket.setsockopt(zmq.METADATA, "{}:1030".format(FRAMES).encode("ascii"))
        self.monitor = self.socket.get_monitor_socket()
        self.socket.connect("tcp://127.0.0.1:{}".format(port))
        try:
            # the introduction; never waiting: a refused client's link
            # (reconnect_ivl -1) may be gone already, and a blocking send
            # would then wait for ever
            self.socket.send(b"", zmq.NOBLOCK)
        except zmq.Again:
            pass

    def close(self):
        """
        Close the monitor, then the socket, then the context (as the ends
        do: the context waits for every socket).
        """
        self.socket.disable_monitor()
        self.monitor.close(0)
        self.socket.close(0)
        self.context.term()

    def receive(self, frames, timeout=10.0):
        """
        :return: the messages received until they hold C{frames} frames in
            all (fewer if C{timeout} seconds pass).
        """
        messages = []
        while sum(len(decode(message, 1024)) for message in messages) < frames:
            if not self.socket.poll(timeout * 1000):
                break
            messages.append(self.socket.recv())
        return messages

    def waitForEvent(self, wanted, timeout=10.0):
        """
        :return: the value of the first monitor event of kind C{wanted},
            or C{None} if none came within C{timeout} seconds.
        """
        while self.monitor.poll(timeout * 1000):
            event = zmq.utils.monitor.parse_monitor_message(self.monitor.recv_multipart())
            if event["event"] == wanted:
                return event["value"]
        return None


class ZMQServerGuardTests(Pairs, TestCase):
    """
    A zmq/server end's guards against its peers.
    """

    @inlineCallbacks
    def test_not_a_frame(self):
        """
        A peer that sends a message that is not one frame is warned of and
        disconnected, though ZeroMQ has no call to close one peer of a
        ROUTER (the end shuts the peer's TCP connection down under libzmq).
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "zmq/server:127.0.0.1:0")
        port = int((yield host.waitFor(LISTENING)).group(1))
        client = RawClient(self, port)
        self.assertIsNotNone(client.waitForEvent(zmq.EVENT_HANDSHAKE_SUCCEEDED))
        yield host.waitFor(connected())
        client.socket.send(b"\x00\x40\x00\x00\x00\x01 not 64 bytes")
        self.assertIsNotNone(client.waitForEvent(zmq.EVENT_DISCONNECTED), "the server kept the peer")
        line = yield host.waitFor(r"WARN\s+ZMQ\s+closing connection from 127\.0\.0\.1:\d+: (.*)$")
        self.assertIn("holds a frame of", line.group(1))
        yield host.waitFor(r"ZMQ\s+connection to 127\.0\.0\.1:\d+ closed")
        yield self.assertCleanStop(host, "TERM", lockfile(self, "host"))

    @inlineCallbacks
    def test_max_connections(self):
        """
        With --max-connections 1 a second client is refused in its
        handshake (ZAP 400, so a client end backs off), and the server
        warns naming the cap; the first stays connected.
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "zmq/server:127.0.0.1:0",
                          "--max-connections", "1")
        port = int((yield host.waitFor(LISTENING)).group(1))
        first = RawClient(self, port)
        self.assertIsNotNone(first.waitForEvent(zmq.EVENT_HANDSHAKE_SUCCEEDED))
        yield host.waitFor(connected())
        second = RawClient(self, port)
        self.assertEqual(second.waitForEvent(zmq.EVENT_HANDSHAKE_FAILED_AUTH), 400)
        yield host.waitFor(r"WARN\s+ZMQ\s+refused 1 connection\(s\), the last from 127\.0\.0\.1: 1 open "
                           r"connections already \(--max-connections; 1 open when it was refused\)")
        self.assertEqual(len([line for _, line in host.lines if "connected to" in line]), 1)
        yield self.assertCleanStop(host, "TERM", lockfile(self, "host"))


class ZMQWireTests(Pairs, TestCase):
    """
    An end of this version and one from before it (one frame a message,
    no announcement) understand each other.
    """

    @inlineCallbacks
    def exchange(self, announce):
        """
        Eight requests to a site's zmq/server end from a raw client, sent
        in one message if it announces that it reads several frames a
        message, else one message each.

        :return: the messages of the replies.
        """
        _, emulator_port = yield start_emulator(self, A, B)
        site = start_site(self, "zmq/server:127.0.0.1:0", emulator_port)
        port = int((yield site.waitFor(LISTENING)).group(1))
        client = RawClient(self, port, announce)
        self.assertIsNotNone(client.waitForEvent(zmq.EVENT_HANDSHAKE_SUCCEEDED))
        yield site.waitFor(connected())
        requests = [encode(frame_id, packet(0x94, serial)) for frame_id, serial in enumerate((A, B) * 4, 1)]
        if announce:
            client.socket.send(b"".join(requests))
        else:
            for request in requests:
                client.socket.send(request)
        messages = client.receive(8)
        yield self.assertCleanStop(site, "TERM", lockfile(self, "site"))
        return messages

    @inlineCallbacks
    def test_olderPeer(self):
        """
        A peer that did not announce several frames a message gets every
        reply in a message of its own.
        """
        messages = yield self.exchange(False)
        frames = [decode(message, 1024) for message in messages]
        self.assertEqual([len(each) for each in frames], [1] * 8)
        self.assertEqual(sorted(frame_id for [(frame_id, _)] in frames), list(range(1, 9)))

    @inlineCallbacks
    def test_severalFrames(self):
        """
        Eight requests in one message are each answered, to a peer that
        announced it.
        """
        messages = yield self.exchange(True)
        frames = [frame for message in messages for frame in decode(message, 1024)]
        self.assertEqual(sorted(frame_id for frame_id, _ in frames), list(range(1, 9)))
