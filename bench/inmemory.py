#!/usr/bin/env python3
"""
A tunnel pair in memory (host udp/listen -> tcp/server, site tcp/client ->
udp/broadcast, the emulator behind it) driven through N unicast requests
with Twisted's fakes: no sockets, no real time, so that the work per
request is the relay's own and can be counted exactly:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/inmemory.py --requests 2000 2>&1 | grep refs

The difference between two request counts, divided by their difference,
is the instructions per request (Python, Twisted and the emulator
included): repeatable to the instruction, whatever else the machine is
doing, and so fit to compare two versions of the code in one run.
"""

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.protocol import DatagramProtocol  # noqa: E402
from twisted.test.iosim import ConnectionCompleter  # noqa: E402

from uhppoted_tunnel.app import config  # noqa: E402
from uhppoted_tunnel.emulator import Controller, EmulatorProtocol  # noqa: E402
from uhppoted_tunnel.app.options import Options  # noqa: E402
from uhppoted_tunnel.testing import FakeReactor  # noqa: E402
from uhppoted_tunnel.app.tunnel import TunnelService  # noqa: E402

SERIAL = 405419896


class Application(DatagramProtocol):
    def __init__(self):
        self.replies = 0

    def datagramReceived(self, data, address):
        self.replies += 1


def tunnel(reactor, folder, *args):
    options = Options()
    options.parseOptions(list(args) + ["--rate-limit", "1000000", "--rate-limit-burst", "1000000",
                                       "--lockfile", os.path.join(folder, args[1].replace("/", "_") + ".pid")])
    return TunnelService(options, reactor)


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--transport", choices=("tcp", "ws"), default="tcp",
                        help="what joins the halves (default tcp)")
    parser.add_argument("--metrics", action="store_true",
                        help="the telemetry's per-packet work on in both halves, as --metrics turns it on (without "
                             "its once-a-second timer, which Twisted's fake clock would charge to every request)")
    args = parser.parse_args()
    folder = tempfile.mkdtemp()
    config.DEFAULT_CONFIG = os.path.join(folder, "none.toml")
    reactor = FakeReactor()
    reactor.listenUDP(60005, EmulatorProtocol([Controller(SERIAL)]), interface="127.0.0.1")
    app = Application()
    app_port = reactor.listenUDP(50000, app, interface="127.0.0.1")
    kind = args.transport
    host = tunnel(reactor, folder, "--in", "udp/listen:127.0.0.1:60000", "--out", kind + "/server:127.0.0.1:12345")
    site = tunnel(reactor, folder, "--in", kind + "/client:127.0.0.1:12345", "--out", "udp/broadcast:127.0.0.1:60005",
                  "--udp-timeout", "1s")
    host.startService()
    site.startService()
    if args.metrics:
        for half in (host, site):
            half.telemetry.enable()
            half.telemetry.hook()
    pump = ConnectionCompleter(reactor).succeedOnce()
    request = bytes([0x17, 0x94, 0, 0]) + SERIAL.to_bytes(4, "little") + bytes(56)
    for _ in range(args.requests):
        app_port.write(request, ("127.0.0.1", 60000))
        for _ in range(3):
            reactor.advance(0)
            pump.flush()
    reactor.advance(5)
    print("{} requests, {} replies".format(args.requests, app.replies))
    return 0 if app.replies == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
