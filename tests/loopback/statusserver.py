"""
Serves the status page with a scripted snapshot that changes over time,
for the browser tests and the screenshot in C{docs/}.

    python -m tests.loopback.statusserver [--port 0] [--max-status-streams N]

prints C{status page listening on 127.0.0.1:PORT} once it listens, then
reads commands on standard input, one a line:

    state ROLE STATE     set an end's state (in/out; up, down, connecting, failed)
    warn TEXT            add a warning
    quit                 stop (so does the end of standard input)

Every second the scripted tunnel relays a few requests and, now and then,
an event: the totals rise, the rates move, events and warnings come in.
Data are realistic but made up: addresses from the documentation ranges,
the emulator's controller serials. The snapshot is also at
C{/status.json}.
"""

import argparse
import json
import random
import sys

from twisted.internet import reactor, stdio
from twisted.internet.task import LoopingCall
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.protocols.basic import LineReceiver
from twisted.web import server
from twisted.web.resource import Resource

from uhppoted_tunnel import __version__
from uhppoted_tunnel.observe.status import StatusPage
from uhppoted_tunnel.observe.web import add_security_headers

A = 405419896
B = 303986753
C = 201020304

CARDS = [10058400, 10058401, 8165538, 6154410, 10058399]


class ScriptedTunnel:
    """
    A tunnel that is not there: a snapshot that moves with the clock.
    """

    def __init__(self, clock, seed=1):
        self.clock = clock
        self.random = random.Random(seed)
        now = clock.seconds()
        self.started = now - (3 * 3600 + 12 * 60 + 7)
        self.ends = {
            "in": {"role": "in", "connector": "udp/listen:0.0.0.0:60000", "state": "up",
                   "since": self.started + 0.2, "peers": []},
            "out": {"role": "out", "connector": "tls/server:0.0.0.0:12345", "state": "up",
                    "since": now - 2 * 3600 - 41 * 60,
                    "peers": [{"address": "198.51.100.23:50514", "since": now - 2 * 3600 - 41 * 60}]},
        }
        self.controllers = {
            A: {"serial": A, "address": "192.168.1.100:60000", "last_reply": now - 1.2, "last_event": now - 14},
            B: {"serial": B, "address": "192.168.1.101:60000", "last_reply": now - 2.5, "last_event": now - 95},
            C: {"serial": C, "address": "192.168.1.125:60000", "last_reply": now - 610, "last_event": None},
        }
        self.totals = {"requests": 48210, "replies": 48102, "timeouts": 97, "dropped": 11, "events": 1734}
        self.requests = [self._requests(i) for i in range(60)]
        self.events_rate = [1 if self.random.random() < 0.2 else 0 for _ in range(60)]
        self.index = {A: 20817, B: 9313}
        self.events = []
        for age in (610, 420, 300, 215, 160, 95, 61, 40, 14):
            self._event(now - age)
        self.warnings = [
            {"time": now - 2 * 3600 - 41 * 60 - 3, "level": "warn",
             "text": "TLS handshake with 203.0.113.9:41877 failed: certificate unknown (is the client using "
                     "the right CA?)"},
            {"time": now - 610, "level": "warn", "text": "no reply from 192.168.1.125:60000 within 5s"},
            {"time": now - 33, "level": "warn",
             "text": "dropped 11 request(s) from 192.0.2.44: over the per-source rate limit (--rate-limit-per-source)"},
        ]
        self._tick = 0

    def _requests(self, i):
        return max(0, int(4 + 3 * ((i % 20) / 10 - 1) ** 2 + self.random.randint(-1, 3)))

    def _event(self, when):
        serial = self.random.choice([A, A, B])
        self.index[serial] += 1
        granted = self.random.random() < 0.85
        self.events.append({"time": when, "serial": serial, "index": self.index[serial], "type": "swipe",
                            "door": self.random.randint(1, 4), "granted": granted,
                            "card": self.random.choice(CARDS)})
        self.events = self.events[-25:]
        self.controllers[serial]["last_event"] = when

    def step(self):
        """
        One second of traffic.
        """
        now = self.clock.seconds()
        self._tick += 1
        linked = all(end["state"] == "up" for end in self.ends.values())
        n = self._requests(self._tick) if linked else 0
        self.requests = self.requests[1:] + [n]
        self.totals["requests"] += max(n, 1)
        self.totals["replies"] += n
        if not linked:
            self.totals["timeouts"] += 1
        events = 1 if linked and self._tick % 4 == 0 else 0
        self.events_rate = self.events_rate[1:] + [events]
        self.totals["events"] += events
        if events:
            self._event(now)
        if linked:
            for serial in (A, B):
                self.controllers[serial]["last_reply"] = now - self.random.random()

    def set_state(self, role, state):
        end = self.ends[role]
        end["state"] = state
        end["since"] = self.clock.seconds()
        if state != "up":
            end["peers"] = []
            self.warn("{} end {}".format(role, "lost its peer" if state == "down" else state))

    def warn(self, text):
        self.warnings = (self.warnings + [{"time": self.clock.seconds(), "level": "warn", "text": text}])[-20:]

    def snapshot(self):
        return {
            "tunnel": {"version": __version__, "started": self.started, "now": self.clock.seconds(),
                       "ready": all(end["state"] == "up" for end in self.ends.values())},
            "ends": [dict(self.ends["in"]), dict(self.ends["out"])],
            "controllers": sorted(self.controllers.values(), key=lambda c: c["serial"]),
            "totals": dict(self.totals),
            "rates": {"interval": 1, "requests": list(self.requests), "events": list(self.events_rate)},
            "events": list(self.events),
            "warnings": list(self.warnings),
        }


class StatusJSON(Resource):
    """
    C{/status.json}, as the tunnel serves it.
    """

    isLeaf = True

    def __init__(self, tunnel):
        Resource.__init__(self)
        self.tunnel = tunnel

    def render_GET(self, request):
        add_security_headers(request, False)
        request.setHeader(b"Content-Type", b"application/json")
        request.setHeader(b"Cache-Control", b"no-store")
        return json.dumps(self.tunnel.snapshot()).encode("utf-8")


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, tunnel):
        self.tunnel = tunnel

    def lineReceived(self, line):
        words = line.decode("utf-8").strip().split(None, 2)
        if not words:
            return
        if words[0] == "state" and len(words) == 3:
            self.tunnel.set_state(words[1], words[2])
            print("state {} {}".format(words[1], words[2]), flush=True)
        elif words[0] == "warn" and len(words) >= 2:
            self.tunnel.warn(line.decode("utf-8").strip()[5:])
        elif words[0] == "quit":
            reactor.stop()
        else:
            print("unknown command: " + line.decode("utf-8", "replace"), file=sys.stderr, flush=True)

    def connectionLost(self, reason):
        if reactor.running:
            reactor.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--max-status-streams", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--stall-timeout", type=float, default=30.0)
    parser.add_argument("--pad", type=int, default=0, help="bytes of padding in each snapshot, to fill a "
                                                          "connection that is not read quickly")
    parser.add_argument("--log", action="store_true", help="log warnings to stdout")
    args = parser.parse_args(argv)
    tunnel = ScriptedTunnel(reactor, args.seed)
    if args.log:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stdout)], redirectStandardIO=False)
    snapshot = tunnel.snapshot
    if args.pad:
        padding = "x" * args.pad

        def snapshot():
            return dict(tunnel.snapshot(), pad=padding)

    page = StatusPage(snapshot, reactor, max_streams=args.max_status_streams, stall_timeout=args.stall_timeout)
    page.putChild(b"status.json", StatusJSON(tunnel))
    site = server.Site(page)
    site.displayTracebacks = False
    LoopingCall(tunnel.step).start(1.0, now=False)
    port = reactor.listenTCP(args.port, site, interface="127.0.0.1")
    print("status page listening on 127.0.0.1:{}".format(port.getHost().port), flush=True)
    stdio.StandardIO(Commands(tunnel))
    reactor.run()


if __name__ == "__main__":
    main()
