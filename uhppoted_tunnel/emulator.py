# -*- test-case-name: tests.test_emulator -*-
"""
An emulator of UHPPOTE access controllers, for tests, the demo and the bench.

Requests and replies are 64-byte UDP packets: byte 0 is 0x17, byte 1 the
function code, bytes 4..7 the controller serial (little-endian; 0 in a
broadcast, which every controller answers). A reply repeats the function code
with the answering controller's serial; other fields sit where
C{uhppoted.decode} reads them, integers little-endian, dates and times BCD.

L{Controller} turns a request into a reply; L{EmulatorProtocol} serves
controllers on a UDP port. Run: C{python -m uhppoted_tunnel.emulator --help}.

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
import sys

from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, Logger
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python import usage

from uhppoted_tunnel.config import parse_duration

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


def _uint32(packet, offset):
    return struct.unpack_from("<I", packet, offset)[0]


def _bcd_date(d):
    """Encode a date as 4 BCD bytes, YYYYMMDD (strftime would not pad years before 1000)."""
    return bytes.fromhex(f"{d.year:04d}{d.month:02d}{d.day:02d}")


def _bcd_time(t):
    """Encode a time of day as 3 BCD bytes, HHmmss."""
    return bytes.fromhex(f"{t.hour:02d}{t.minute:02d}{t.second:02d}")


def _bcd_datetime(t):
    """Encode a datetime as 7 BCD bytes, YYYYMMDDHHmmss."""
    return _bcd_date(t) + _bcd_time(t)


class Controller:
    """
    One emulated controller: its settings, clock, cards and listener.

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
        "offset", "cards", "listener", "interval", "event_index", "last_event",
    )

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
        record[8:15] = _bcd_datetime(self.time(now))
        record[15] = SWIPE_REASON
        self.last_event = bytes(record)
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
        if problem(request) is not None or _uint32(request, 4) not in (0, self.serial):
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
        reply[28:32] = _bcd_date(self.released)

    def _set_ip(self, request, reply, now):
        if _uint32(request, 20) != SET_IP_MAGIC:
            self.log.debug("controller {serial}: set-ip without the magic word ignored", serial=self.serial)
            return False
        address, netmask, gateway = (ipaddress.IPv4Address(bytes(request[i : i + 4])) for i in (8, 12, 16))
        self.address, self.netmask, self.gateway = address, netmask, gateway
        self.log.info("controller {serial}: set-ip {address} netmask {netmask} gateway {gateway} (no reply)",
                      serial=self.serial, address=address, netmask=netmask, gateway=gateway)
        return False

    def _get_time(self, request, reply, now):
        reply[8:15] = _bcd_datetime(self.time(now))

    def _set_time(self, request, reply, now):
        try:
            wanted = datetime.datetime.strptime(bytes(request[8:15]).hex(), "%Y%m%d%H%M%S")
        except ValueError:
            self.log.debug("controller {serial}: set-time with an invalid time ignored", serial=self.serial)
            return False
        self.offset = wanted - now
        reply[8:15] = _bcd_datetime(self.time(now))

    def _get_status(self, request, reply, now):
        clock = self.time(now)
        struct.pack_into("<I", reply, 8, self.event_index)
        if self.last_event is not None:
            reply[12:28] = self.last_event
        reply[37:40] = _bcd_time(clock)
        reply[51:54] = _bcd_date(clock)[1:]  # YYMMDD

    def _open_door(self, request, reply, now):
        door = request[8]
        reply[8] = 1 <= door <= 4
        self.log.info("controller {serial}: open door {door}", serial=self.serial, door=door)

    def _put_card(self, request, reply, now):
        card = _uint32(request, 8)
        if card not in NOT_A_CARD:
            self.cards[card] = bytes(request[8:28])
            reply[8] = True

    def _delete_card(self, request, reply, now):
        reply[8] = self.cards.pop(_uint32(request, 8), None) is not None

    def _get_cards(self, request, reply, now):
        struct.pack_into("<I", reply, 8, len(self.cards))

    def _get_card(self, request, reply, now):
        # An unknown card leaves the record zero: card number 0, "not found".
        reply[8:28] = self.cards.get(_uint32(request, 8), bytes(20))

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


class EventPusher:
    """
    Sends a number of events to a listener, round-robin over controllers,
    one every C{interval} seconds: see L{push_events}.

    :ivar sent: events sent so far.
    :ivar done: fires with C{sent} once all are sent.
    """

    log = Logger()

    def __init__(self, reactor, port, controllers, listener, count, interval, now=datetime.datetime.now):
        self.reactor = reactor
        self.port = port
        self.controllers = list(controllers)
        self.listener = listener
        self.count = count
        self.interval = interval
        self.now = now
        self.sent = 0
        self.done = Deferred(self._cancel)
        self._call = None
        self._start = None

    def start(self):
        """
        Send the first event on the next turn of the reactor.

        :return: L{done}.
        """
        if self.count <= 0 or not self.controllers:
            self.done.callback(0)
        else:
            self._start = self.reactor.seconds()
            self._call = self.reactor.callLater(0, self._next)
        return self.done

    def _next(self):
        self._call = None
        controller = self.controllers[self.sent % len(self.controllers)]
        try:
            packet = controller.event(self.now())
            self.port.write(packet, self.listener)
        except Exception:
            self.log.failure("{controller} could not send event {index} to {host}:{port}", controller=controller,
                             index=controller.event_index, host=self.listener[0], port=self.listener[1])
            self.done.errback()
            return
        self.sent += 1
        self.log.debug("controller {serial}: sent event {index} to {host}:{port}", serial=controller.serial,
                       index=controller.event_index, host=self.listener[0], port=self.listener[1])
        if self.sent >= self.count:
            self.done.callback(self.sent)
            return
        # on a fixed schedule from the start, so that a late turn does not
        # delay every later event
        delay = self._start + self.sent * self.interval - self.reactor.seconds()
        self._call = self.reactor.callLater(max(0.0, delay), self._next)

    def _cancel(self, done):
        if self._call is not None:
            self._call.cancel()
            self._call = None


def push_events(reactor, port, controllers, listener, count, interval, now=datetime.datetime.now):
    """
    Push C{count} events in all to C{listener}, taking the controllers in
    turn (with controllers A and B: A1, B1, A2, B2, ...), the first on the
    next turn of the reactor and then one every C{interval} seconds.

    :param reactor: an IReactorTime.
    :param port: the UDP port to send from (the emulator's, from L{listen}).
    :param controllers: the L{Controller}s whose events these are.
    :param listener: C{(host, port)} to send to.
    :param count: how many events to send.
    :param interval: seconds between events (0: as fast as the reactor turns).
    :param now: a callable returning the local time, for the events' timestamps.
    :return: a Deferred firing with the number sent; cancelling it stops
        sending.
    """
    return EventPusher(reactor, port, controllers, listener, count, interval, now).start()


def _host_port(flag, text, allow_zero):
    """
    Parse an IPv4 C{HOST:PORT} option.

    :raise usage.UsageError: naming C{flag}.
    """
    host, _, port = text.rpartition(":")
    try:
        ipaddress.IPv4Address(host)
        port = int(port)
    except ValueError:
        raise usage.UsageError(f"--{flag}: {text!r} is not IPv4-HOST:PORT") from None
    if not (0 if allow_zero else 1) <= port <= 0xFFFF:
        raise usage.UsageError(f"--{flag}: port {port} is out of range")
    return host, port


def _whole(flag, text, low, high=0xFFFFFFFF):
    if not text.isdigit() or not low <= int(text) <= high:
        raise usage.UsageError(f"--{flag}: {text!r} is not a whole number from {low} to {high}")
    return int(text)


class Options(usage.Options):
    """The command line of C{python -m uhppoted_tunnel.emulator}."""

    synopsis = "Usage: python -m uhppoted_tunnel.emulator [options]"
    longdesc = ("Emulates UHPPOTE access controllers on a UDP port until stopped. With --events N it also pushes "
                "N events to --listener, round-robin over the controllers, one every --interval, and prints "
                "'emulator sent N events' when done.")
    optFlags = [["debug", "d", "Log every request."]]
    optParameters = [
        ["bind", "b", "127.0.0.1:60000", "UDP HOST:PORT to listen on (port 0: any free port)."],
        ["events", None, "0", "Push this many events in all to --listener, the controllers taking turns."],
        ["listener", None, None, "UDP HOST:PORT events go to (the tunnel's udp/event in end); needed with --events."],
        ["interval", None, "100ms", "Time between events, as a duration: 10ms, 1s, 0 (as fast as possible)."],
        ["event-start", None, "1", "The index of each controller's first event (e.g. to go on from a last run)."],
    ]

    def __init__(self):
        super().__init__()
        self["controllers"] = []

    def opt_controller(self, serial):
        """
        Emulate a controller with this serial number (repeatable; default 405419896 and 303986753).
        """
        if not serial.isdigit() or not 0 < int(serial) <= 0xFFFFFFFF:
            raise usage.UsageError(f"--controller: {serial!r} is not a serial number (1..4294967295)")
        self["controllers"].append(int(serial))

    opt_c = opt_controller

    def postOptions(self):
        self["bind"] = _host_port("bind", self["bind"], allow_zero=True)
        if not self["controllers"]:
            self["controllers"] = list(DEFAULT_SERIALS)
        self["events"] = _whole("events", self["events"], 0)
        self["event-start"] = _whole("event-start", self["event-start"], 1)
        try:
            self["interval"] = parse_duration(self["interval"])
        except ValueError as e:
            raise usage.UsageError(f"--interval: {e}") from None
        if self["listener"] is not None:
            self["listener"] = _host_port("listener", self["listener"], allow_zero=False)
        elif self["events"]:
            raise usage.UsageError("--events: needs --listener HOST:PORT to send them to")


def main(argv=None):
    """
    Run the emulator until SIGINT or SIGTERM.

    :param argv: the arguments, without the program name; default C{sys.argv[1:]}.
    :return: the exit status: 0, 1 if it cannot listen, 2 for bad arguments.
    """
    options = Options()
    try:
        options.parseOptions(argv)
    except usage.UsageError as e:
        print(f"emulator: {e}", file=sys.stderr)
        return 2

    from twisted.internet import reactor

    controllers = [Controller(serial) for serial in options["controllers"]]
    for controller in controllers:
        controller.event_index = options["event-start"] - 1
        if options["listener"] is not None:
            host, port = options["listener"]
            controller.listener = (ipaddress.IPv4Address(host), port)
    host, port = options["bind"]
    try:
        listening = listen(reactor, controllers, host, port)
    except CannotListenError as e:
        print(f"emulator: {e}", file=sys.stderr)
        return 1

    # The address line comes first so scripts can read the port; events
    # logged so far are buffered and replayed after it.
    bound = listening.getHost()
    print(f"emulator listening on {bound.host}:{bound.port}", flush=True)
    level = LogLevel.debug if options["debug"] else LogLevel.info
    observer = FilteringLogObserver(textFileLogObserver(sys.stdout), [LogLevelFilterPredicate(level)])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    if options["events"]:
        pushing = push_events(reactor, listening, controllers, options["listener"], options["events"],
                              options["interval"])
        pushing.addCallbacks(lambda sent: print(f"emulator sent {sent} events", flush=True),
                             lambda failure: print(f"emulator: stopped sending events: {failure.getErrorMessage()}",
                                                   file=sys.stderr, flush=True))
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
