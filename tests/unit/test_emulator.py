"""
Tests for L{uhppoted_tunnel.emulator}: requests are encoded and replies
decoded with the C{uhppoted} client library, so the emulator speaks what the
real client speaks.
"""

import datetime
import io
import ipaddress
import sys

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from uhppoted import decode, encode

from uhppoted_tunnel.emulator import (
    CARD,
    FUNCTIONS,
    Controller,
    EmulatorProtocol,
    push_events,
)
from uhppoted_tunnel.emulator.__main__ import Options, main

A = 405419896
B = 303986753
PEER = ("127.0.0.1", 54321)
NOW = datetime.datetime(2024, 6, 1, 12, 30, 15)


class RecordingTransport:
    """
    A datagram transport that records what is written.
    """

    def __init__(self):
        self.written = []

    def write(self, data, addr):
        self.written.append((data, addr))


class EmulatorProtocolTests(SynchronousTestCase):
    """
    L{EmulatorProtocol} answers C{uhppoted} requests for its controllers.
    """

    def setUp(self):
        self.now = NOW
        controllers = [Controller(A), Controller(B, address="127.0.0.2")]
        self.protocol = EmulatorProtocol(controllers, now=lambda: self.now)
        self.transport = RecordingTransport()
        self.protocol.makeConnection(self.transport)

    def send(self, request):
        """
        Deliver C{request} from L{PEER}; return the replies and check each went to L{PEER}.
        """
        before = len(self.transport.written)
        self.protocol.datagramReceived(bytes(request), PEER)
        written = self.transport.written[before:]
        self.assertEqual([addr for _, addr in written], [PEER] * len(written))
        return [data for data, _ in written]

    def ask(self, request, decoder):
        """
        Deliver C{request} and decode its single reply.
        """
        [reply] = self.send(request)
        self.assertEqual(len(reply), 64)
        return decoder(reply)

    def test_getControllerAnswersOnlyTheAddressedController(self):
        """
        get-controller to one serial is answered by that controller only, with its settings.
        """
        reply = self.ask(encode.get_controller_request(B), decode.get_controller_response)
        self.assertEqual(reply.controller, B)
        self.assertEqual(reply.ip_address, ipaddress.IPv4Address("127.0.0.2"))
        self.assertEqual(reply.subnet_mask, ipaddress.IPv4Address("255.255.255.0"))
        self.assertEqual(reply.gateway, ipaddress.IPv4Address("0.0.0.0"))
        self.assertEqual(reply.mac_address, "00:12:23:34:45:56")
        self.assertEqual(reply.version, "v8.92")
        self.assertEqual(reply.date, datetime.date(2018, 11, 5))
        self.assertEqual((self.protocol.received, self.protocol.replied), (1, 1))

    def test_broadcastIsAnsweredByEveryController(self):
        """
        A request for serial 0 is answered by every controller, each with its own serial.
        """
        replies = self.send(encode.get_controller_request(0))
        self.assertEqual([decode.get_controller_response(r).controller for r in replies], [A, B])
        self.assertEqual(self.protocol.replied, 2)

    def test_unknownSerialIsNotAnswered(self):
        """
        A request for a serial no controller has gets no reply.
        """
        self.assertEqual(self.send(encode.get_controller_request(12345)), [])

    def test_setIPIsAppliedWithoutReply(self):
        """
        set-ip gets no reply, like a real controller, but changes what get-controller reports.
        """
        address, netmask, gateway = map(ipaddress.IPv4Address, ("10.0.0.9", "255.255.0.0", "10.0.0.1"))
        self.assertEqual(self.send(encode.set_ip_request(A, address, netmask, gateway)), [])
        reply = self.ask(encode.get_controller_request(A), decode.get_controller_response)
        self.assertEqual((reply.ip_address, reply.subnet_mask, reply.gateway), (address, netmask, gateway))

    def test_setTimeThenGetTime(self):
        """
        set-time replies with the new time, and get-time later reports it plus the time elapsed.
        """
        wanted = datetime.datetime(2021, 2, 3, 4, 5, 6)
        reply = self.ask(encode.set_time_request(A, wanted), decode.set_time_response)
        self.assertEqual((reply.controller, reply.datetime), (A, wanted))
        self.now += datetime.timedelta(seconds=90)
        reply = self.ask(encode.get_time_request(A), decode.get_time_response)
        self.assertEqual(reply.datetime, wanted + datetime.timedelta(seconds=90))
        other = self.ask(encode.get_time_request(B), decode.get_time_response)
        self.assertEqual(other.datetime, self.now)

    def test_getStatus(self):
        """
        get-status reports the controller's clock and no event while the event index is 0.
        """
        reply = self.ask(encode.get_status_request(A), decode.get_status_response)
        self.assertEqual(reply.controller, A)
        self.assertEqual((reply.system_date, reply.system_time), (NOW.date(), NOW.time()))
        self.assertEqual(reply.event_index, 0)
        self.assertIsNone(reply.event_type)

    def test_cardRoundTrip(self):
        """
        A card stored with put-card comes back from get-card, counts in get-cards and goes with delete-card.
        """
        start, end = datetime.date(2024, 1, 1), datetime.date(2024, 12, 31)
        request = encode.put_card_request(A, 10058400, start, end, 1, 0, 29, 1, 7531, firstcard={3: True})
        self.assertTrue(self.ask(request, decode.put_card_response).stored)
        card = self.ask(encode.get_card_request(A, 10058400), decode.get_card_response)
        self.assertEqual(
            (card.controller, card.card_number, card.start_date, card.end_date),
            (A, 10058400, start, end),
        )
        self.assertEqual((card.door_1, card.door_2, card.door_3, card.door_4, card.pin), (1, 0, 29, 1, 7531))
        self.assertEqual(card.firstcard, {1: False, 2: False, 3: True, 4: False})
        self.assertEqual(self.ask(encode.get_cards_request(A), decode.get_cards_response).cards, 1)
        self.assertEqual(self.ask(encode.get_cards_request(B), decode.get_cards_response).cards, 0)
        delete = encode.delete_card_request(A, 10058400)
        self.assertTrue(self.ask(delete, decode.delete_card_response).deleted)
        self.assertFalse(self.ask(delete, decode.delete_card_response).deleted)
        gone = self.ask(encode.get_card_request(A, 10058400), decode.get_card_response)
        self.assertEqual(gone.card_number, 0)

    def test_unknownCardIsNotFound(self):
        """
        get-card for a card never stored answers card number 0, uhppoted's "not found".
        """
        card = self.ask(encode.get_card_request(A, 8165538), decode.get_card_response)
        self.assertEqual((card.controller, card.card_number), (A, 0))

    def test_listenerRoundTrip(self):
        """
        set-listener succeeds and get-listener then reports the address, port and interval.
        """
        address = ipaddress.IPv4Address("192.168.1.100")
        request = encode.set_listener_request(A, address, 60001, 15)
        self.assertTrue(self.ask(request, decode.set_listener_response).ok)
        reply = self.ask(encode.get_listener_request(A), decode.get_listener_response)
        self.assertEqual((reply.address, reply.port, reply.interval), (address, 60001, 15))

    def test_openDoor(self):
        """
        open-door succeeds for doors 1..4 only.
        """
        self.assertTrue(self.ask(encode.open_door_request(A, 4), decode.open_door_response).opened)
        self.assertFalse(self.ask(encode.open_door_request(A, 5), decode.open_door_response).opened)

    def test_malformedPacketsAreDropped(self):
        """
        A short packet, a bad start byte or an unknown function code gets no reply, a debug log and no error.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        good = bytes(encode.get_controller_request(0))
        for packet in (good[:63], good + b"\0", b"", b"\x19" + good[1:], good[:1] + b"\x01" + good[2:]):
            self.assertEqual(self.send(packet), [])
        self.assertEqual((self.protocol.received, self.protocol.replied), (5, 0))
        self.assertEqual(self.flushLoggedErrors(), [])
        dropped = [e for e in events if e["log_format"].startswith("dropped")]
        self.assertEqual([e["log_level"] for e in dropped], [LogLevel.debug] * 5)
        self.assertIn("unknown function code 0x01", dropped[-1]["reason"])

    @given(st.sampled_from(sorted(FUNCTIONS)), st.binary(min_size=56, max_size=56))
    def test_anyBroadcastRequestIsSafe(self, function, body):
        """
        Any broadcast request with a known function code gets a 64-byte reply or none, never an exception.
        """
        request = bytes([0x17, function, 0, 0, 0, 0, 0, 0]) + body
        reply = Controller(A).handle(request, NOW)
        self.assertIn(None if reply is None else len(reply), (None, 64))


    @given(st.datetimes(min_value=datetime.datetime(1, 1, 1), max_value=datetime.datetime(9999, 12, 31)))
    def test_setTimeAcceptsAnyYear(self, wanted):
        """
        set-time answers with the time it was given, to the second, for any four-digit year.
        """
        wanted = wanted.replace(microsecond=0)
        # Built by hand: uhppoted's encoder writes years before 1000 unpadded.
        request = bytearray(encode.get_time_request(A))
        request[1] = 0x30
        request[8:15] = bytes.fromhex(f"{wanted.year:04d}" + wanted.strftime("%m%d%H%M%S"))
        reply = Controller(A).handle(bytes(request), NOW)
        self.assertEqual(decode.set_time_response(reply).datetime, wanted)


class RecordingPort:
    """
    A UDP port that records what is written, with the time from a clock.
    """

    def __init__(self, clock):
        self.clock = clock
        self.written = []

    def write(self, data, addr):
        self.written.append((self.clock.seconds(), data, addr))


class EventTests(SynchronousTestCase):
    """
    L{Controller.event} makes the events a controller pushes to its
    listener, and L{push_events} sends them.
    """

    listener = ("127.0.0.1", 60001)

    def test_eventDecodes(self):
        """
        An event is a 64-byte packet that C{uhppoted.decode.event} reads as
        a granted card swipe by the controller, with index 1, stamped with
        the controller's clock, and the status fields of get-status.
        """
        controller = Controller(A)
        controller.offset = datetime.timedelta(minutes=5)
        packet = controller.event(NOW)
        self.assertEqual(len(packet), 64)
        self.assertEqual(packet[:2], b"\x17\x20")
        event = decode.event(packet)
        later = NOW + datetime.timedelta(minutes=5)
        self.assertEqual(
            (event.controller, event.event_index, event.event_type, event.event_access_granted, event.event_door,
             event.event_direction, event.event_card, event.event_timestamp, event.event_reason),
            (A, 1, 1, True, 1, 1, CARD, later, 1))
        self.assertEqual((event.system_date, event.system_time), (later.date(), later.time()))

    def test_indexesRise(self):
        """
        Each event has the next index, from the controller's C{event_index}
        (so a run can go on where another stopped); the door cycles 1..4;
        get-status then reports the last event.
        """
        controller = Controller(A)
        controller.event_index = 41
        events = [decode.event(controller.event(NOW)) for _ in range(5)]
        self.assertEqual([e.event_index for e in events], [42, 43, 44, 45, 46])
        self.assertEqual([e.event_door for e in events], [2, 3, 4, 1, 2])
        status = decode.get_status_response(controller.handle(bytes(encode.get_status_request(A)), NOW))
        self.assertEqual((status.event_index, status.event_card, status.event_timestamp), (46, CARD, NOW))

    def push(self, controllers, count, interval):
        clock = Clock()
        port = RecordingPort(clock)
        done = push_events(clock, port, controllers, self.listener, count, interval, now=lambda: NOW)
        return clock, port, done

    def test_countAndInterval(self):
        """
        C{push_events} sends C{count} events to the listener, the first on
        the next turn of the reactor and then one every C{interval}
        seconds, and fires with the count when the last is sent, leaving no
        timer behind.
        """
        clock, port, done = self.push([Controller(A)], 4, 0.25)
        self.assertEqual(port.written, [])
        clock.advance(0)
        self.assertEqual(len(port.written), 1)
        clock.advance(0.2)
        self.assertEqual(len(port.written), 1)
        self.assertNoResult(done)
        clock.pump([0.05, 0.25, 0.25])
        self.assertEqual(self.successResultOf(done), 4)
        self.assertEqual([(when, addr) for when, _, addr in port.written],
                         [(0, self.listener), (0.25, self.listener), (0.5, self.listener), (0.75, self.listener)])
        self.assertEqual([decode.event(data).event_index for _, data, _ in port.written], [1, 2, 3, 4])
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_roundRobin(self):
        """
        With several controllers, C{count} is the total: the controllers
        take turns, each with its own rising index.
        """
        clock, port, done = self.push([Controller(A), Controller(B)], 5, 0)
        clock.advance(0)
        clock.pump([0] * 4)
        self.assertEqual(self.successResultOf(done), 5)
        keys = [(e.controller, e.event_index) for e in (decode.event(data) for _, data, _ in port.written)]
        self.assertEqual(keys, [(A, 1), (B, 1), (A, 2), (B, 2), (A, 3)])

    def test_fixedSchedule(self):
        """
        A late turn of the reactor does not push later events back: event
        n goes at n times the interval from the start, or at once if that
        has passed.
        """
        clock, port, done = self.push([Controller(A)], 3, 1.0)
        clock.advance(0)
        clock.advance(1.5)
        clock.advance(0.5)
        self.assertEqual([when for when, _, _ in port.written], [0, 1.5, 2.0])
        self.assertEqual(self.successResultOf(done), 3)

    def test_none(self):
        """
        Pushing no events fires at once with 0 and sends nothing.
        """
        clock, port, done = self.push([Controller(A)], 0, 1.0)
        self.assertEqual(self.successResultOf(done), 0)
        self.assertEqual((port.written, clock.getDelayedCalls()), ([], []))

    def test_cancel(self):
        """
        Cancelling the Deferred stops sending and leaves no timer behind.
        """
        clock, port, done = self.push([Controller(A)], 10, 1.0)
        clock.advance(0)
        done.cancel()
        self.failureResultOf(done, CancelledError)
        clock.advance(10)
        self.assertEqual(len(port.written), 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_writeFails(self):
        """
        An error writing an event stops the push: the Deferred fails with
        it, and it is logged.
        """

        class Broken(RecordingPort):
            def write(self, data, addr):
                raise OSError("no route")

        clock = Clock()
        done = push_events(clock, Broken(clock), [Controller(A)], self.listener, 3, 1.0, now=lambda: NOW)
        clock.advance(0)
        self.failureResultOf(done, OSError)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        self.assertEqual(clock.getDelayedCalls(), [])


class OptionsTests(SynchronousTestCase):
    """
    The emulator's command line.
    """

    def test_defaults(self):
        """
        With no arguments it binds 127.0.0.1:60000 and emulates two controllers.
        """
        options = Options()
        options.parseOptions([])
        self.assertEqual(
            {k: options[k] for k in ("bind", "controllers", "debug")},
            {"bind": ("127.0.0.1", 60000), "controllers": [A, B], "debug": 0},
        )

    def test_arguments(self):
        """
        --bind takes HOST:PORT (port 0 allowed) and --controller repeats.
        """
        options = Options()
        options.parseOptions(["--bind", "127.0.0.1:0", "--controller", "1", "--controller", "2", "--debug"])
        self.assertEqual(
            {k: options[k] for k in ("bind", "controllers", "debug")},
            {"bind": ("127.0.0.1", 0), "controllers": [1, 2], "debug": 1},
        )

    def test_events(self):
        """
        --events, --listener, --interval (a duration) and --event-start set
        up event mode; without --events, no events are pushed.
        """
        options = Options()
        options.parseOptions(["--events", "200", "--listener", "127.0.0.1:60001", "--interval", "10ms",
                              "--event-start", "51"])
        self.assertEqual(
            {k: options[k] for k in ("events", "listener", "interval", "event-start")},
            {"events": 200, "listener": ("127.0.0.1", 60001), "interval": 0.01, "event-start": 51},
        )
        options = Options()
        options.parseOptions([])
        self.assertEqual(
            {k: options[k] for k in ("events", "listener", "interval", "event-start")},
            {"events": 0, "listener": None, "interval": 0.1, "event-start": 1},
        )

    def test_badArguments(self):
        """
        Bad arguments make main print one line on stderr and return 2.
        """
        bad = (["--bind", "localhost"], ["--bind", "127.0.0.1:70000"], ["--controller", "x"], ["--nope"],
               ["--events", "5"], ["--events", "-1", "--listener", "127.0.0.1:60001"],
               ["--events", "5", "--listener", "127.0.0.1:0"], ["--events", "5", "--listener", "here"],
               ["--interval", "soon"], ["--interval", "-1s"], ["--event-start", "0"])
        for argv in bad:
            stderr = io.StringIO()
            self.patch(sys, "stderr", stderr)
            self.assertEqual(main(argv), 2)
            self.assertEqual(stderr.getvalue().count("\n"), 1, stderr.getvalue())
