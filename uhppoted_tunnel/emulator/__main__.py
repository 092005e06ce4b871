# -*- test-case-name: tests.loopback.test_emulator,tests.unit.test_emulator -*-
"""
The emulator's command line: C{python -m uhppoted_tunnel.emulator --bind
127.0.0.1:60000 --controller 405419896 [--events N --listener HOST:PORT
--interval 10ms --event-start INDEX] [--debug]}.
"""

import ipaddress
import sys

from twisted.internet.error import CannotListenError
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)
from twisted.python import usage

from uhppoted_tunnel.core.durations import parse_duration
from uhppoted_tunnel.emulator import DEFAULT_SERIALS, Controller, listen, push_events


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

    synopsis = "Usage: uhppoted-tunnel emulator [options]   (or: python -m uhppoted_tunnel.emulator [options])"
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
