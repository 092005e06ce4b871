# -*- test-case-name: tests.loopback.test_events_forged -*-
"""
Forged events cannot hide real ones, with real processes on 127.0.0.1.

Anyone who can send one UDP packet to a site's C{udp/event} port, or
reach a host's plain stream port, can send packets that look like a
controller's events (the controllers authenticate nothing). The tunnel
relays them, as the Go tunnel does, but de-duplicates only what a sending
half resends, by its own session and frame ids: forged events carrying the
serial and the indexes the controller sends next must not stop a single
real event reaching the listener.
"""

import datetime
import struct

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from tests.gowire import go_packetize
from tests.loopback.processes import DEADLINE, emulator_sent_line, start_event_emulator
from tests.loopback.eventpairs import A, EventTunnels, stream_connected, stream_listening
from uhppoted_tunnel.emulator import Controller
from uhppoted_tunnel.core.events import SESSION_ID, session_frame

COUNT = 100
#: The card number a forged event carries, to tell it from a real one.
FORGED_CARD = 0xDEADBEEF


def forged_events(count):
    """
    Events for controller A with indexes 1 to C{count}, as the emulator
    will send next, but with another card.
    """
    controller = Controller(A)
    now = datetime.datetime.now()
    events = []
    for _ in range(count):
        packet = bytearray(controller.event(now))
        struct.pack_into("<I", packet, 16, FORGED_CARD)
        events.append(bytes(packet))
    return events


class ForgedEventTests(EventTunnels, TestCase):
    def setUp(self):
        EventTunnels.setUp(self)
        self.raw = []
        received = self.listener.datagramReceived

        def record(data, address):
            self.raw.append(data)
            received(data, address)

        self.listener.datagramReceived = record

    def real(self):
        """
        The indexes of controller A's real events that reached the listener.
        """
        return sorted(struct.unpack_from("<I", packet, 8)[0] for packet in self.raw
                      if struct.unpack_from("<I", packet, 4)[0] == A
                      and struct.unpack_from("<I", packet, 16)[0] != FORGED_CARD)

    @inlineCallbacks
    def test_forgedEventsHideNothing(self):
        """
        100 forged events with the indexes 1-100 of controller A sent to the
        site's udp/event port, and 100 more sent by a fake site connected to
        the host's stream port, before the controller's real events 1-100:
        every real event reaches the listener.
        """
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port))
        yield site.waitFor(stream_connected("tcp", stream_port))
        site_port = yield self.site_port(site)

        forged = forged_events(COUNT)
        for packet in forged:
            self.listener.transport.write(packet, ("127.0.0.1", site_port))
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", stream_port, timeout=DEADLINE)
        fake = yield connectProtocol(endpoint, Protocol())
        self.addCleanup(lambda: fake.transport.abortConnection() if fake.transport.connected else None)
        # a fake site naming a session of its own, and one naming none
        fake.transport.write(go_packetize(SESSION_ID, session_frame(b"\x00" * 16)))
        fake.transport.write(b"".join(go_packetize(n, packet) for n, packet in enumerate(forged, 1)))
        yield self.events.waitForCount(2 * COUNT)

        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "5ms", serials=[A])
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield self.finish(site_port)
        self.assertEqual(self.real(), list(range(1, COUNT + 1)))
