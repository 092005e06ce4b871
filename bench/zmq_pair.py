#!/usr/bin/env python3
"""
A zmq/server and a zmq/client end's sockets in one process, joined over
127.0.0.1, echoing frames: K frames in flight, N round trips. What it
counts is the zmq transport's own work per frame (the ends' sockets,
readers and connections, and libzmq), without the relay, the UDP ends or
the emulator, so that a change to C{transports/zmq} can be compared by
instructions:

    valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/zmq_pair.py --requests 1000 --in-flight 1 2>&1 | grep refs

The difference between 1,000 and 3,000 round trips, divided by 2,000, is
the instructions per round trip (libzmq's threads included; callgrind
runs them one at a time, so the count varies by a few per cent). Without
valgrind it prints the CPU time (all threads) and the wall time per
round trip. C{--curve} adds CURVE.
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import zmq  # noqa: E402
from twisted.internet import reactor  # noqa: E402
from twisted.internet.protocol import Factory  # noqa: E402

from uhppoted_tunnel.transports.zmq.client import ZMQClientEndpoint  # noqa: E402
from uhppoted_tunnel.transports.zmq.connection import ZMQConnection  # noqa: E402
from uhppoted_tunnel.transports.zmq.server import ZMQServerEndpoint  # noqa: E402

SETTINGS = {"max-payload": 1024, "max-send-queue": 1 << 20, "dead-peer-timeout": 60.0, "handshake-timeout": 15.0,
            "max-connections": 16, "max-connections-per-source": 16}
PAYLOAD = b"\x17\x94" + b"\x00" * 62


class Ends(Factory):
    """
    What a stream end's factory is to its connections: the relay, and
    what they report.
    """

    def __init__(self, relay):
        self.relay = relay

    def buildProtocol(self, address):
        connection = ZMQConnection()
        connection.factory = self
        connection.relay = self.relay
        return connection

    def connectionReady(self, connection):
        self.relay.ready(connection)

    def connectionClosed(self, connection, reason):
        pass

    def frameDropped(self, connection):
        sys.exit("a frame was dropped")

    def frameTooLong(self, connection, error):
        sys.exit(str(error))


class Echo:
    def ready(self, connection):
        pass

    def frameReceived(self, connection, frame_id, payload):
        connection.sendFrame(frame_id, payload)


class Driver:
    """
    Keeps C{in_flight} frames going until C{requests} have come back.
    """

    def __init__(self, requests, in_flight):
        self.requests = requests
        self.in_flight = in_flight
        self.done = 0

    def ready(self, connection):
        self.cpu, self.wall = time.process_time(), time.perf_counter()
        for frame_id in range(self.in_flight):
            connection.sendFrame(frame_id, PAYLOAD)

    def frameReceived(self, connection, frame_id, payload):
        self.done += 1
        if self.done + self.in_flight <= self.requests:
            connection.sendFrame(frame_id, payload)
        elif self.done == self.requests:
            cpu, wall = time.process_time() - self.cpu, time.perf_counter() - self.wall
            print("{} round trips, {} in flight: {:.1f} us CPU, {:.1f} us wall each".format(
                self.requests, self.in_flight, cpu / self.requests * 1e6, wall / self.requests * 1e6))
            reactor.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--in-flight", type=int, default=16)
    parser.add_argument("--curve", action="store_true")
    args = parser.parse_args()
    server_keys = client_keys = None
    if args.curve:
        public, secret = zmq.curve_keypair()
        client_public, client_secret = zmq.curve_keypair()
        server_keys, client_keys = (public, secret), (public, client_public, client_secret)

    def dial(port):
        number = port.getHost().port
        client = ZMQClientEndpoint(reactor, ("127.0.0.1", number), "127.0.0.1:{}".format(number), SETTINGS,
                                   client_keys)
        client.connect(Ends(Driver(args.requests, args.in_flight)))

    server = ZMQServerEndpoint(reactor, ("127.0.0.1", 0), SETTINGS, server_keys, None)
    server.listen(Ends(Echo())).addCallback(dial)
    reactor.run()
    sys.stdout.flush()
    # the ends' contexts are not closed: leave at once
    os._exit(0)


if __name__ == "__main__":
    main()
