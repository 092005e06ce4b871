#!/usr/bin/env python3
"""
The route table's cost per request, in memory: a host out end
(L{uhppoted_tunnel.core.relays.RequestSender}) with N fake site connections
that answer each request at once, as controller serials learned from one
broadcast; then R unicast get-controller requests to random serials. No
sockets, no real time, so the instructions counted are the relay's own:

    for n in 1 100 10000; do for r in 10000 20000; do
        valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
            python bench/routes_inmemory.py --sites $n --requests $r 2>&1 | grep refs
    done; done

(refs at 20000 - refs at 10000) / 10000 is the instructions per request
(the relay, the reply table, the route table and the fake site's answer),
which must not grow with N.
"""

import argparse
import os
import random
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.defer import succeed  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402
from zope.interface import implementer  # noqa: E402

from uhppoted_tunnel.core.relays import RequestSender  # noqa: E402
from uhppoted_tunnel.interfaces import IFrameConnection  # noqa: E402

FIRST_SERIAL = 100000001


@implementer(IFrameConnection)
class Site:
    """
    A connection to a site whose one controller answers at once.
    """

    def __init__(self, relay, number, serial):
        self.relay = relay
        self.peer = "10.%d.%d.%d:60000" % (number >> 16 & 255, number >> 8 & 255, number & 255)
        self.reply = bytes([0x17, 0x94, 0, 0]) + serial.to_bytes(4, "little") + bytes(56)
        self.received = 0

    def sendFrame(self, frame_id, payload):
        self.received += 1
        self.pending = frame_id
        return True

    def answer(self):
        self.relay.frameReceived(self, self.pending, self.reply)

    def close(self):
        pass

    def whenClosed(self):
        return succeed(None)


def main():
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--sites", type=int, default=100)
    parser.add_argument("--requests", type=int, default=10000)
    args = parser.parse_args()
    clock = Clock()
    connections = []
    relay = RequestSender({"debug": False, "udp-timeout": 5.0}, None, clock, connections)
    serials = list(range(FIRST_SERIAL, FIRST_SERIAL + args.sites))
    for number, serial in enumerate(serials):
        site = Site(relay, number, serial)
        connections.append(site)
        relay.connected(site)
    replies = []
    relay.send(bytes([0x17, 0x94]) + bytes(62), replies.append)
    for site in connections:
        site.answer()
    by_serial = dict(zip(serials, connections))
    rng = random.Random(1)
    chosen = [rng.choice(serials) for _ in range(args.requests)]
    # built for every serial, so that the setup does not depend on --requests
    packets = {serial: bytes([0x17, 0x94, 0, 0]) + serial.to_bytes(4, "little") + bytes(56) for serial in serials}
    append = replies.append
    for serial in chosen:
        relay.send(packets[serial], append)
        by_serial[serial].answer()
    unicast = sum(site.received for site in connections) - args.sites
    print("{} sites, {} requests, {} replies, {} unicast frames sent".format(
        args.sites, args.requests, len(replies) - args.sites, unicast))
    return 0 if unicast == args.requests and len(replies) == args.sites + args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
