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
"""

import datetime
import ipaddress
import struct
import sys

from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate, Logger
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.python import usage

PACKET_SIZE = 64
SOM = 0x17
SET_IP_MAGIC = 0x55AAAA55
NOT_A_CARD = (0, 0xFFFFFFFF)
DEFAULT_SERIALS = (405419896, 303986753)

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
    """

    # Event mode, to come: pushing status events with a rising event_index
    # to self.listener every self.interval seconds. get-status already
    # reports event_index; nothing here sends anything yet.

    __slots__ = (
        "serial", "address", "netmask", "gateway", "mac", "version", "released",
        "offset", "cards", "listener", "interval", "event_index",
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

    def __repr__(self):
        return f"<Controller {self.serial}>"

    def time(self, now):
        """:return: the controller's own clock when the local time is C{now}."""
        return now + self.offset

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


class Options(usage.Options):
    """The command line of C{python -m uhppoted_tunnel.emulator}."""

    synopsis = "Usage: python -m uhppoted_tunnel.emulator [options]"
    longdesc = "Emulates UHPPOTE access controllers on a UDP port until stopped."
    optFlags = [["debug", "d", "Log every request."]]
    optParameters = [["bind", "b", "127.0.0.1:60000", "UDP HOST:PORT to listen on (port 0: any free port)."]]

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
        host, _, port = self["bind"].rpartition(":")
        try:
            ipaddress.IPv4Address(host)
            self["bind"] = (host, int(port))
        except ValueError:
            raise usage.UsageError(f"--bind: {self['bind']!r} is not IPv4-HOST:PORT") from None
        if not 0 <= self["bind"][1] <= 0xFFFF:
            raise usage.UsageError(f"--bind: port {port} is out of range")
        if not self["controllers"]:
            self["controllers"] = list(DEFAULT_SERIALS)


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

    host, port = options["bind"]
    try:
        listening = listen(reactor, [Controller(serial) for serial in options["controllers"]], host, port)
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
    reactor.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
