# -*- test-case-name: tests.loopback.test_events_integration -*-
"""
Event tunnels that lose nothing, end to end: real C{uhppoted-tunnel}
processes on 127.0.0.1, the controller emulator pushing events to the
site's C{udp/event} in end, and the test itself as the application's
event listener behind the host's C{udp/event} out end.

Every event is decoded with C{uhppoted.decode.event} and known by its
controller and event index. A test knows it has seen everything the tunnel
will ever deliver by sending a last event of its own, from another
controller, into the site (or down the stream) after the rest have
arrived: the tunnel keeps order, so when that one arrives any duplicate
still on its way has arrived before it. Nothing sleeps: each step waits,
with a generous deadline, for a log line, an exit or an event.
"""

import datetime
import os
import re

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import Factory
from twisted.trial.unittest import TestCase

from tests.gowire import go_packetize
from tests.loopback.eventpairs import (
    A,
    COUNT,
    LAST,
    RECEIVED,
    SESSION,
    EventTunnels,
    GoHost,
    Events,
    stream_connected,
    stream_listening,
)
from tests.loopback.processes import LOOPBACK, emulator_sent_line, free_port, start_event_emulator, stop, wait_for_lines
from uhppoted_tunnel.emulator import Controller
from uhppoted_tunnel.core.events import SESSION_ID, session_frame


class RelayTests(EventTunnels, TestCase):
    """
    A connected event tunnel delivers every event once, in order, over
    each stream transport and in either direction of dialling.
    """

    @inlineCallbacks
    def relay(self, kind, reverse):
        """
        Push L{COUNT} events through a tunnel whose site and host are
        joined by C{kind}: the site dials the host, or with C{reverse} the
        host dials the site.
        """
        secure = kind == "tls"
        server_flags = self.tls_flags("server", client_auth=True) if secure else []
        client_flags = self.tls_flags("client") if secure else []
        if not reverse:
            host = self.host("{}/server:127.0.0.1:0".format(kind), *server_flags)
            stream_port = int((yield host.waitFor(stream_listening(kind))).group(1))
            site = self.site(0, "{}/client:127.0.0.1:{}".format(kind, stream_port), *client_flags)
            yield site.waitFor(stream_connected(kind, stream_port))
        else:
            site = self.site(0, "{}/server:127.0.0.1:0".format(kind), *server_flags)
            stream_port = int((yield site.waitFor(stream_listening(kind))).group(1))
            host = self.host("{}/client:127.0.0.1:{}".format(kind, stream_port), *client_flags)
            yield host.waitFor(stream_connected(kind, stream_port))
            yield site.waitFor(stream_connected(kind))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "10ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield self.events.waitForKey((A, COUNT))
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, COUNT + 1))
        for half in (site, host):
            self.assertNotIn("Traceback", half.output())

    def test_forward_tcp(self):
        """
        Site dialling host over TCP: all 200 events reach the listener, in
        order, none twice.
        """
        return self.relay("tcp", reverse=False)

    def test_reverse_tcp(self):
        """
        Host dialling site over TCP: all 200 events reach the listener, in
        order, none twice.
        """
        return self.relay("tcp", reverse=True)

    def test_forward_tls(self):
        """
        Site dialling host over TLS with client certificates: all 200
        events reach the listener, in order, none twice.
        """
        return self.relay("tls", reverse=False)

    def test_reverse_tls(self):
        """
        Host dialling site over TLS with client certificates: all 200
        events reach the listener, in order, none twice.
        """
        return self.relay("tls", reverse=True)


class RestartTests(EventTunnels, TestCase):
    """
    Events survive a half that dies or is stopped.
    """


    @inlineCallbacks
    def test_host_killed(self):
        """
        A host killed with SIGKILL mid-stream, with events sent to it and
        not acknowledged, and started again on the same port with the same
        lockfile (and so the same C{.seen} spool) is redialled by the site,
        which sends again what was not acknowledged: every one of the 200
        events arrives exactly once, those after the restart in order, and
        the site never takes the host for one that does not acknowledge.
        """
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port), "--debug")
        yield site.waitFor(stream_connected("tcp", stream_port))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "20ms", serials=[A])

        yield self.events.waitForCount(50)
        yield self.freeze(host, site)
        host.send_signal("KILL")
        yield host.exited()
        before = len(self.events.keys)
        self.assertLess(before, COUNT, "the stream ended before the host was killed")
        self.assertTrue(os.path.exists(self.spool("host") + ".seen"))
        mark = site.mark()

        host = self.host("tcp/server:127.0.0.1:{}".format(stream_port))
        yield host.waitFor(stream_listening("tcp"))
        yield site.waitFor(stream_connected("tcp", stream_port), since=mark)
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield self.events.waitForKey((A, COUNT))
        yield self.finish(site_port)

        received = self.events.of(A)
        self.assertEqual(sorted(received), list(range(1, COUNT + 1)), "lost or duplicated events")
        after = [index for serial, index in self.events.keys[before:] if serial == A]
        self.assertEqual(after, sorted(after), "events after the restart out of order")
        self.assertEqual(self.events.keys[-1], (LAST, self.last.event_index))
        self.assertNotIn("does not acknowledge", site.output())

    @inlineCallbacks
    def test_host_killed_after_forwarding(self):
        """
        A host killed with SIGKILL after forwarding events whose
        acknowledgements its site ignored, and started again with the same
        lockfile, remembers them in its C{.seen} spool: when the site sends
        them all again after reconnecting, with the rest, none is forwarded
        twice. (The site here is the test, writing frames by hand, so that
        the host's memory is what is tested.)
        """
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        controller = Controller(A)
        now = datetime.datetime.now()
        events = [controller.event(now) for _ in range(COUNT)]

        site = yield self.go_site(stream_port)
        # a Python site: its session first, then its frames
        site.transport.write(go_packetize(SESSION_ID, session_frame(SESSION)))
        site.transport.write(b"".join(go_packetize(i, event) for i, event in enumerate(events[:100], 1)))
        yield self.events.waitForKey((A, 100))
        # the host acknowledges an event once it has recorded it as forwarded
        yield site.waitForFrames(100)
        host.send_signal("KILL")
        yield host.exited()
        self.assertEqual(self.events.of(A), list(range(1, 101)))

        host = self.host("tcp/server:127.0.0.1:{}".format(stream_port))
        yield host.waitFor(stream_listening("tcp"))
        site = yield self.go_site(stream_port)
        site.transport.write(go_packetize(SESSION_ID, session_frame(SESSION)))
        site.transport.write(b"".join(go_packetize(i, event) for i, event in enumerate(events, 1)))
        site.transport.write(go_packetize(COUNT + 1, self.last.event(now)))
        yield self.events.waitForKey((LAST, self.last.event_index))
        self.assertEventsInOrder(range(1, COUNT + 1))

    @inlineCallbacks
    def test_site_stopped_while_host_down(self):
        """
        A site stopped with SIGTERM while its host is down keeps the events
        it holds in its spool and says so; started again with the same
        lockfile it loads them, and once the host is up every event arrives,
        once, in order.
        """
        stream_port = free_port()
        out = "tcp/client:127.0.0.1:{}".format(stream_port)
        site = self.site(0, out, "--debug")
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "5ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield wait_for_lines(site, RECEIVED, COUNT)

        code = yield stop(site, "TERM")
        self.assertEqual(code, 0, site.recent())
        spool = self.spool("site") + ".events"
        self.assertRegex(site.output(), r"kept {} undelivered event\(s\) for the next run in {}".format(
            COUNT, re.escape(spool)))
        self.assertTrue(os.path.exists(spool))
        self.assertEqual(self.events.keys, [])

        site = self.site(0, out, name="site")
        yield site.waitFor(r"{} undelivered event\(s\) from the last run".format(COUNT))
        site_port = yield self.site_port(site)
        self.host("tcp/server:127.0.0.1:{}".format(stream_port))
        yield site.waitFor(stream_connected("tcp", stream_port))
        yield self.events.waitForKey((A, COUNT))
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, COUNT + 1))
        self.assertFalse(os.path.exists(spool), "the spool was not removed once loaded")

    @inlineCallbacks
    def test_buffer_overflow(self):
        """
        A site with C{--event-buffer 50} and no host, sent 80 events, warns
        that its buffer is full and drops the oldest: once the host is up
        exactly the newest 50 arrive, in order; by the time the site stops
        it has reported all 30 lost.
        """
        stream_port = free_port()
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port), "--event-buffer", "50", "--debug")
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, 80, "5ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(80))
        yield wait_for_lines(site, RECEIVED, 80)

        # the warning comes at the first drop, the rest within 10 s of it
        # or when the site stops
        yield site.waitFor(r"event buffer full: dropped the \d+ oldest event\(s\)")

        self.host("tcp/server:127.0.0.1:{}".format(stream_port))
        yield site.waitFor(stream_connected("tcp", stream_port))
        yield self.events.waitForKey((A, 80))
        yield self.finish(site_port)
        self.assertEventsInOrder(range(31, 81))

        site.send_signal("TERM")
        code = yield site.exited()
        self.assertEqual(code, 0, site.recent())
        warnings = re.findall(r"event buffer full: dropped the (\d+) oldest event\(s\) from the buffer; so far 0 "
                              r"of those dropped were delivered .*, 0 were sent and await acknowledgement, and (\d+) "
                              r"are lost \(never sent, or never acknowledged\) \(--event-buffer 50, ", site.output())
        dropped = [int(n) for n, _ in warnings]
        self.assertTrue(all(n >= 1 for n in dropped))
        self.assertEqual((sum(dropped), int(warnings[-1][1])), (30, 30), site.recent())


class GoInteropTests(EventTunnels, TestCase):
    """
    A Python half against a peer framing events as the Go tunnel does,
    parsed and built by hand here.
    """

    @inlineCallbacks
    def test_go_host(self):
        """
        A Python site with --event-peer go sending to a Go host, which
        never acknowledges: every event arrives once, in order, and the
        site says it relays as the Go tunnel does.
        """
        events = Events()
        connections = []

        def build():
            protocol = GoHost(events)
            connections.append(protocol)
            return protocol

        server = reactor.listenTCP(0, Factory.forProtocol(build), interface=LOOPBACK)
        self.addCleanup(server.stopListening)
        self.addCleanup(lambda: [c.transport.abortConnection() for c in connections if c.transport.connected])
        go_port = server.getHost().port

        site = self.site(0, "tcp/client:127.0.0.1:{}".format(go_port), "--event-peer", "go")
        yield site.waitFor(stream_connected("tcp", go_port))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "10ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield events.waitForKey((A, COUNT))
        yield site.waitFor(r"relaying events as the Go tunnel does \(--event-peer go\)")
        yield self.finish(site_port, events)

        self.assertEqual(len(connections), 1)
        self.assertEventsInOrder(range(1, COUNT + 1), events)
        self.assertEqual(self.events.keys, [])

    @inlineCallbacks
    def test_go_site(self):
        """
        A Go site writing event frames to a Python host's tcp/server in end,
        and discarding what comes back: the listener receives every event
        once, in order; what came back is an acknowledgement of each event,
        an empty frame with its id, in order.
        """
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        site = yield self.go_site(stream_port)
        yield host.waitFor(stream_connected("tcp"))

        controller = Controller(A)
        now = datetime.datetime.now()
        for frame_id in range(1, COUNT + 1):
            site.transport.write(go_packetize(frame_id, controller.event(now)))
        yield self.events.waitForKey((A, COUNT))
        site.transport.write(go_packetize(COUNT + 1, self.last.event(now)))
        yield self.events.waitForKey((LAST, self.last.event_index))

        self.assertEventsInOrder(range(1, COUNT + 1))
        returned = yield site.waitForFrames(COUNT + 1)
        self.assertEqual(returned, [(frame_id, b"") for frame_id in range(1, COUNT + 2)])
        self.assertNotIn("Traceback", host.output())
