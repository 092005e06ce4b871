# -*- test-case-name: tests.loopback.test_emulator,tests.unit.test_emulator -*-
"""
An emulator of UHPPOTE access controllers, for tests, the demo and the bench.

Requests and replies are 64-byte UDP packets: byte 0 is 0x17, byte 1 the
function code, bytes 4..7 the controller serial (little-endian; 0 in a
broadcast, which every controller answers). A reply repeats the function code
with the answering controller's serial; other fields sit where
C{uhppoted.decode} reads them, integers little-endian, dates and times BCD.

L{Controller} turns a request into a reply (the commands on doors, time
profiles, tasks, events and the like come from L{commands}, so the
controller console has an answer to each of its commands);
L{EmulatorProtocol} serves controllers on a UDP port. Run: C{python -m uhppoted_tunnel.emulator --help} (L{__main__}).

Controllers also push status events to their listener: a get-status reply
(function 0x20) whose event fields describe a new event, with the
controller's event index rising from 1. L{Controller.event} makes the next
one; L{push_events} sends a number of them, round-robin over the
controllers, one every interval, from the emulator's own port, as a real
controller sends them from its port 60000. On the command line: C{--events N
--listener HOST:PORT [--interval 10ms] [--event-start INDEX]}; the emulator
prints C{emulator sent N events} when done and keeps answering requests.
"""

import datetime
import ipaddress
import struct

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from uhppoted_tunnel.emulator.codec import bcd_date, bcd_datetime, bcd_time, uint32
from uhppoted_tunnel.emulator.commands import FUNCTIONS as SETTINGS_FUNCTIONS
from uhppoted_tunnel.emulator.commands import SETTINGS, SettingsCommands

PACKET_SIZE = 64
SOM = 0x17
SET_IP_MAGIC = 0x55AAAA55
NOT_A_CARD = (0, 0xFFFFFFFF)
DEFAULT_SERIALS = (405419896, 303986753)

#: Function code of get-status, which is also an event's.
GET_STATUS = 0x20

#: What every emulated event is: a card swipe (event type 1), granted
#: (reason 1, "swipe"), going in (direction 1), by this card; the door
#: cycles 1..4 with the event index.
SWIPE = 1
SWIPE_REASON = 1
DIRECTION_IN = 1
CARD = 10058400

#: The function codes the emulator knows; L{Controller} handles each one in
#: the method named after it (C{"get-time"} -> C{_get_time}).
FUNCTIONS = {
    0x20: "get-status", 0x30: "set-time", 0x32: "get-time", 0x40: "open-door",
    0x50: "put-card", 0x52: "delete-card", 0x58: "get-cards", 0x5A: "get-card",
    0x90: "set-listener", 0x92: "get-listener", 0x94: "get-controller", 0x96: "set-ip",
    **SETTINGS_FUNCTIONS,
}


def problem(packet):
    """
    :return: why C{packet} is not a request the emulator handles, or C{None} if it is one.
    """
    if len(packet) != PACKET_SIZE:
        return f"{len(packet)} bytes, not {PACKET_SIZE}"
    if packet[0] != SOM:
        return f"start byte 0x{packet[0]:02x}, not 0x{SOM:02x}"
    if packet[1] not in FUNCTIONS:
        return f"unknown function code 0x{packet[1]:02x}"
    return None


class Controller(SettingsCommands):
    """
    One emulated controller: its settings, clock, cards and listener; the
    door, profile, task and event commands come from L{SettingsCommands}.

    :ivar cards: card number -> the 20-byte card record (bytes 8..27 of the
        put-card request: number, dates, door permissions, PIN, first-card).
    :ivar offset: how far this controller's clock is from the caller's C{now}.
    :ivar event_index: index of the last event; 0 means no event yet.
    :ivar last_event: bytes 12..27 of the last event (type, granted, door,
        direction, card, timestamp, reason), which get-status reports too;
        C{None} before the first.
    """

    __slots__ = (
        "serial", "address", "netmask", "gateway", "mac", "version", "released",
        "offset", "cards", "listener", "interval", "event_index", "last_event", "events", "read_index",
    ) + SETTINGS

    log = Logger()

    def __init__(self, serial, address="127.0.0.1", netmask="255.255.255.0", gateway="0.0.0.0",
                 mac="00:12:23:34:45:56", version=0x0892, released=datetime.date(2018, 11, 5)):
        """
        :param serial: the controller's serial number, 1..2**32-1.
        :param version: firmware version as BCD digits: 0x0892 is v8.92.
        :param released: firmware release date.
        """
        self.serial = serial
        self.address, self.netmask, self.gateway = map(ipaddress.IPv4Address, (address, netmask, gateway))
        self.mac = mac
        self.version = version
        self.released = released
        self.offset = datetime.timedelta(0)
        self.cards = {}
        self.listener = (ipaddress.IPv4Address("0.0.0.0"), 0)
        self.interval = 0
        self.event_index = 0
        self.last_event = None
        self.events = {}
        self.read_index = 0
        self.reset()

    def __repr__(self):
        return f"<Controller {self.serial}>"

    def time(self, now):
        """:return: the controller's own clock when the local time is C{now}."""
        return now + self.offset

    def event(self, now):
        """
        Make the next event, at local time C{now}: a granted card swipe
        with the next event index (the door cycles 1..4).

        :return: the 64-byte event packet, laid out as a get-status reply.
        """
        self.event_index += 1
        record = bytearray(16)
        record[0:4] = bytes([SWIPE, True, (self.event_index - 1) % 4 + 1, DIRECTION_IN])
        struct.pack_into("<I", record, 4, CARD)
        record[8:15] = bcd_datetime(self.time(now))
        record[15] = SWIPE_REASON
        self.last_event = bytes(record)
        self.remember(self.event_index, record)
        packet = bytearray(PACKET_SIZE)
        packet[0] = SOM
        packet[1] = GET_STATUS
        struct.pack_into("<I", packet, 4, self.serial)
        self._get_status(None, packet, now)
        return bytes(packet)

    def handle(self, request, now):
        """
        Apply a request received at local time C{now}.

        :return: the 64-byte reply, or C{None} when this controller does not answer:
            a malformed packet, an unknown function, another controller's serial, or set-ip.
        """
        if problem(request) is not None or uint32(request, 4) not in (0, self.serial):
            return None
        reply = bytearray(PACKET_SIZE)
        reply[0] = SOM
        reply[1] = request[1]
        struct.pack_into("<I", reply, 4, self.serial)
        handler = getattr(self, "_" + FUNCTIONS[request[1]].replace("-", "_"))
        if handler(request, reply, now) is False:
            return None
        return bytes(reply)

    # Each handler reads the request, updates state and fills in the reply;
    # returning False means "send no reply".

    def _get_controller(self, request, reply, now):
        reply[8:12] = self.address.packed
        reply[12:16] = self.netmask.packed
        reply[16:20] = self.gateway.packed
        reply[20:26] = bytes.fromhex(self.mac.replace(":", ""))
        struct.pack_into(">H", reply, 26, self.version)  # BCD digits, high byte first
        reply[28:32] = bcd_date(self.released)

    def _set_ip(self, request, reply, now):
        if uint32(request, 20) != SET_IP_MAGIC:
            self.log.debug("controller {serial}: set-ip without the magic word ignored", serial=self.serial)
            return False
        address, netmask, gateway = (ipaddress.IPv4Address(bytes(request[i : i + 4])) for i in (8, 12, 16))
        self.address, self.netmask, self.gateway = address, netmask, gateway
        self.log.info("controller {serial}: set-ip {address} netmask {netmask} gateway {gateway} (no reply)",
                      serial=self.serial, address=address, netmask=netmask, gateway=gateway)
        return False

    def _get_time(self, request, reply, now):
        reply[8:15] = bcd_datetime(self.time(now))

    def _set_time(self, request, reply, now):
        try:
            wanted = datetime.datetime.strptime(bytes(request[8:15]).hex(), "%Y%m%d%H%M%S")
        except ValueError:
            self.log.debug("controller {serial}: set-time with an invalid time ignored", serial=self.serial)
            return False
        self.offset = wanted - now
        reply[8:15] = bcd_datetime(self.time(now))

    def _get_status(self, request, reply, now):
        clock = self.time(now)
        struct.pack_into("<I", reply, 8, self.event_index)
        if self.last_event is not None:
            reply[12:28] = self.last_event
        reply[37:40] = bcd_time(clock)
        reply[51:54] = bcd_date(clock)[1:]  # YYMMDD

    def _open_door(self, request, reply, now):
        door = request[8]
        reply[8] = 1 <= door <= 4
        self.log.info("controller {serial}: open door {door}", serial=self.serial, door=door)

    def _put_card(self, request, reply, now):
        card = uint32(request, 8)
        if card not in NOT_A_CARD:
            self.cards[card] = bytes(request[8:28])
            reply[8] = True

    def _delete_card(self, request, reply, now):
        reply[8] = self.cards.pop(uint32(request, 8), None) is not None

    def _get_cards(self, request, reply, now):
        struct.pack_into("<I", reply, 8, len(self.cards))

    def _get_card(self, request, reply, now):
        # An unknown card leaves the record zero: card number 0, "not found".
        reply[8:28] = self.cards.get(uint32(request, 8), bytes(20))

    def _set_listener(self, request, reply, now):
        address = ipaddress.IPv4Address(bytes(request[8:12]))
        self.listener = (address, struct.unpack_from("<H", request, 12)[0])
        self.interval = request[14]
        reply[8] = True

    def _get_listener(self, request, reply, now):
        address, port = self.listener
        reply[8:12] = address.packed
        struct.pack_into("<HB", reply, 12, port, self.interval)


class EmulatorProtocol(DatagramProtocol):
    """
    Serve emulated controllers on one UDP port.

    Every controller addressed by a request (all of them for serial 0)
    answers the sender with its own reply.

    :ivar received: datagrams received, valid or not.
    :ivar replied: replies sent.
    """

    log = Logger()
    noisy = False

    def __init__(self, controllers, now=datetime.datetime.now):
        """
        :param controllers: the L{Controller}s to serve.
        :param now: a callable returning the current local time.
        """
        self.controllers = list(controllers)
        self.now = now
        self.received = 0
        self.replied = 0

    def datagramReceived(self, data, addr):
        self.received += 1
        reason = problem(data)
        if reason is not None:
            self.log.debug("dropped a packet from {peer}: {reason}", peer=addr, reason=reason)
            return
        self.log.debug("{function} request from {peer}", function=FUNCTIONS[data[1]], peer=addr)
        now = self.now()
        for controller in self.controllers:
            try:
                reply = controller.handle(data, now)
            except Exception:
                self.log.failure("{controller} failed to handle a request", controller=controller)
                continue
            if reply is not None:
                self.transport.write(reply, addr)
                self.replied += 1


def listen(reactor, controllers, host="127.0.0.1", port=0, now=datetime.datetime.now):
    """
    Serve C{controllers} on UDP C{host:port} (port 0: a free one, see C{getHost()}).

    :param reactor: an IReactorUDP.
    :return: the IListeningPort.
    """
    return reactor.listenUDP(port, EmulatorProtocol(controllers, now), interface=host)


from uhppoted_tunnel.emulator.events import EventPusher, push_events  # noqa: E402 (uses the above)

__all__ = ["Controller", "EmulatorProtocol", "listen", "EventPusher", "push_events", "DEFAULT_SERIALS", "FUNCTIONS",
           "CARD"]
