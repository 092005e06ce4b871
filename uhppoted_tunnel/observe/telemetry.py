# -*- test-case-name: tests.unit.test_telemetry -*-
"""
What a tunnel knows about itself, for its metrics (L{uhppoted_tunnel.observe.metrics}),
its health checks and its status page (L{uhppoted_tunnel.observe.monitor}).

Counting costs the relay nothing it can measure: the router and the ends
keep plain integers (most of which they kept already, for their throttled
warnings), and L{Telemetry} reads them only when asked, through each end's
C{tally(t)} (a L{uhppoted_tunnel.core.counts.Tally}) and C{link} (a L{uhppoted_tunnel.link.lifecycle.LinkState}).
Only while something can read them (C{--metrics}, or an C{http/} end) is
each reply timed (L{uhppoted_tunnel.core.counts.Latency}) and are the controllers and events that
pass noted: by an out end that matches replies itself
(L{uhppoted_tunnel.interfaces.IReplyTimer}, from the time it sent the request, see
L{uhppoted_tunnel.core.replytimes}), else by the router (L{Telemetry.replied},
L{Telemetry.relayed}).

The status snapshot (L{Telemetry.snapshot}, served as C{/status.json}) is
JSON; times are seconds since the epoch (floats)::

    {
      "tunnel": {"version": "0.1.0", "started": 1764355200.0, "now": 1764355260.5, "ready": true},
      "ends": [
        {"role": "in", "connector": "udp/listen:127.0.0.1:60000", "state": "up", "since": 1764355200.1,
         "peers": []},
        {"role": "out", "connector": "tcp/server:127.0.0.1:4000", "state": "down", "since": 1764355201.0,
         "peers": [{"address": "127.0.0.1:54012", "since": 1764355201.0}]}
      ],
      "controllers": [{"serial": 405419896, "address": "127.0.0.1:60001", "last_reply": 1764355250.0,
                       "last_event": null}],
      "sites": [{"identity": "CN=site-a", "address": "203.0.113.7:50112", "since": 1764355201.0,
                 "last_seen": 1764355250.0, "serials": [405419896], "requests": 12, "replies": 13}],
      "totals": {"requests": 10, "replies": 9, "timeouts": 1, "dropped": 0, "events": 3, "unrouted": 0},
      "rates": {"interval": 1, "requests": [60 integers, oldest first], "events": [60 integers]},
      "events": [{"time": 1764355255.0, "serial": 405419896, "index": 17, "type": "swipe", "door": 1,
                  "granted": true, "card": 10058400}],
      "warnings": [{"time": 1764355251.0, "level": "warn", "text": "..."}]
    }

- C{state}: C{"up"}, C{"down"}, C{"connecting"} or C{"failed"}. A C{udp/}
  or C{http/} end is up once it listens; a stream server end once it
  listens and has a peer; a client end once it is connected
  (C{"connecting"} while it dials); C{"failed"} once it has given up.
  C{ready} is true when every end is up (C{/readyz} says the same).
- C{controllers}: the controllers whose replies or events passed, most
  recently seen first, at most L{uhppoted_tunnel.core.counts.MAX_CONTROLLERS} (the least recently
  seen is forgotten); C{address} is null where this half cannot know it
  (the replies came over the link), C{last_reply}/C{last_event} null until
  one passes.
- C{sites}: the connections of a request out end, each a site (see
  L{uhppoted_tunnel.core.routes}): its identity (certificate subject, else
  host), address, since when it is connected, when it last answered, the
  controller serials routed to it, the unicast requests sent to it alone
  and the replies it sent.
- C{totals}: requests received by the in end, replies sent back, requests
  that no controller answered within C{--udp-timeout} (counted by the half
  that sends to the controllers), packets dropped for any reason, events
  received, unicast requests for a serial no site serves (C{unrouted}).
- C{rates}: requests and events received in each of the last 60 seconds.
- C{events}: the last L{RECENT} events relayed, newest first (C{type} is
  C{"swipe"}, C{"door"}, C{"alarm"}, C{"overwritten"} or C{"unknown"};
  fields a packet does not carry are null).
- C{warnings}: the last L{RECENT} log events at C{warn} level or above,
  newest first, each as one line of text.
"""

import collections
import platform

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

import twisted
from uhppoted_tunnel import __version__
from uhppoted_tunnel.core.counts import Controllers, Latency, decode_event, serial_of, tally
from uhppoted_tunnel.core.replytimes import ReplyTimes
from uhppoted_tunnel.interfaces import IControllerObserver, IReplyTimer, ITelemetryServer
from uhppoted_tunnel.link.lifecycle import UP
from uhppoted_tunnel.observe.sdnotify import one_line

#: Events and warnings kept for the status page.
RECENT = 20

#: Seconds of request and event rates kept.
RATE_WINDOW = 60

#: The least time between two snapshots built (seconds).
SNAPSHOT_INTERVAL = 1.0


class WarningLog:
    """
    A log observer keeping the last L{RECENT} events at C{warn} or above
    as one line each.
    """

    def __init__(self, size=RECENT):
        self.recent = collections.deque(maxlen=size)

    def __call__(self, event):
        level = event.get("log_level")
        if level is None or level < LogLevel.warn:
            return
        try:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text = (text + ": " if text else "") + failure.getErrorMessage()
        except Exception:
            text = "(a warning that could not be formatted)"
        self.recent.append({"time": event.get("log_time"), "level": level.name, "text": one_line(text, 500)})

    def snapshot(self):
        return list(reversed(self.recent))


class Telemetry:
    """
    The tunnel's numbers and states, read from its router and ends.

    :ivar enabled: whether anything reads them (C{--metrics}, an C{http/}
        end): only then are replies timed and controllers and events
        noted (see L{hook}).
    :ivar events_tunnel: whether the tunnel relays events.
    """

    def __init__(self, clock, events_tunnel=False, version=__version__):
        self.clock = clock
        self.events_tunnel = events_tunnel
        self.version = version
        self.started = clock.seconds()
        self.enabled = False
        self.router = None
        self.ends = ()
        self.latency = Latency()
        self.controllers = Controllers(clock)
        #: what an out end that times its own replies records them in
        self.times = ReplyTimes(self.latency, self.controllers, clock.seconds)
        self.recent_events = collections.deque(maxlen=RECENT)
        self.warnings = WarningLog()
        self.rates = {"requests": collections.deque([0] * RATE_WINDOW, maxlen=RATE_WINDOW),
                      "events": collections.deque([0] * RATE_WINDOW, maxlen=RATE_WINDOW)}
        self._last_received = 0
        self._snapshot = None
        self._snapshot_at = None

    def watch(self, router, ends):
        """
        Read the counts of this router and these ends.

        :param ends: C{(in end, out end)}.
        """
        self.router = router
        self.ends = tuple(ends)
        for end in self.ends:
            if ITelemetryServer.providedBy(end):
                end.serveTelemetry(self)
                self.enabled = True

    def enable(self):
        """
        Something will read the numbers: have the router time replies and
        the UDP ends note controllers' addresses.
        """
        self.enabled = True

    def hook(self):
        """
        Wire the per-packet observations, if enabled (the tunnel calls this
        once every part is built).
        """
        if not self.enabled:
            return
        out = self.router.out
        if not self.events_tunnel and IReplyTimer.providedBy(out):
            # the out end times each reply where it matches it, from the
            # timestamp it took as the request went out: nothing for the
            # router to wrap (a request tunnel's router has nothing else
            # to tell, see relayed)
            out.reply_times = self.times
        else:
            self.router.telemetry = self
        for end in self.ends:
            if IControllerObserver.providedBy(end):
                end.seen_controllers = self.controllers

    # -- from the router, while enabled ---------------------------------

    def replied(self, start, reply, payload):
        """
        A reply to a request received at C{start} goes back: time it, count
        it, note its controller (L{ReplyTimes.replied}), and pass it on.
        The router wraps replies so only for an out end that does not time
        its own (L{IReplyTimer}).
        """
        self.times.replied(start, payload)
        reply(payload)

    def relayed(self, payload):
        """
        A packet that wants no reply was relayed: in an event tunnel, an
        event.
        """
        if not self.events_tunnel:
            return
        now = self.clock.seconds()
        self.recent_events.append((now, payload))
        serial = serial_of(payload)
        if serial is not None:
            self.controllers.event(serial, now)

    # -- reading ----------------------------------------------------------

    @property
    def replies(self):
        """
        Replies sent back through the in end (each is timed once: the
        latency histogram counts them).
        """
        return sum(self.latency.counts)

    def received(self):
        """
        Requests (or events) the in end handed to the router.
        """
        router = self.router
        if router is None:
            return 0
        return router.forwarded + router.dropped + router.source_dropped

    def tallies(self):
        """
        :return: C{[(role, Tally)]} for each end.
        """
        return [(end.role, tally(end)) for end in self.ends]

    def links(self):
        """
        :return: C{[(role, end, LinkState)]} for the ends that have one.
        """
        return [(end.role, end, end.link) for end in self.ends]

    def not_ready(self):
        """
        :return: C{[(role, connector, state)]} of the ends that are not up.
        """
        return [(role, end.spec.text, link.state) for role, end, link in self.links() if link.state != UP]

    @property
    def ready(self):
        return bool(self.ends) and not self.not_ready()

    def tick(self):
        """
        Once a second: the requests (or events) received in the last one.
        """
        received = self.received()
        delta, self._last_received = received - self._last_received, received
        self.rates["events" if self.events_tunnel else "requests"].append(delta)
        self.rates["requests" if self.events_tunnel else "events"].append(0)

    def totals(self, tallies=None):
        tallies = self.tallies() if tallies is None else tallies
        router = self.router
        dropped = sum(sum(t.dropped.values()) for _, t in tallies)
        if router is not None:
            dropped += router.dropped + router.source_dropped
        received = self.received()
        deduplicated = sum(t.events.get("deduplicated", 0) for _, t in tallies)
        return {
            "requests": 0 if self.events_tunnel else received,
            "replies": self.replies,
            "timeouts": sum(t.timeouts for _, t in tallies),
            "dropped": dropped,
            "events": received + deduplicated if self.events_tunnel else 0,
        }

    def snapshot(self):
        """
        The status snapshot (see the module docstring), built at most once
        every L{SNAPSHOT_INTERVAL} however many ask.
        """
        now = self.clock.seconds()
        if self._snapshot is not None and now - self._snapshot_at < SNAPSHOT_INTERVAL:
            return self._snapshot
        tallies = self.tallies()
        ends = []
        for role, end, link in self.links():
            ends.append({"role": role, "connector": end.spec.text, "state": link.state, "since": link.since,
                         "peers": [{"address": address, "since": since} for address, since in link.peers.values()]})
        self._snapshot = {
            "tunnel": {"version": self.version, "started": self.started, "now": now, "ready": self.ready},
            "ends": ends,
            "controllers": self.controllers.snapshot(),
            "sites": [site for _, t in tallies for site in t.sites],
            "totals": dict(self.totals(tallies), unrouted=sum(t.unrouted for _, t in tallies)),
            "rates": {"interval": 1, "requests": list(self.rates["requests"]), "events": list(self.rates["events"])},
            "events": [decode_event(stamp, packet) for stamp, packet in reversed(self.recent_events)],
            "warnings": self.warnings.snapshot(),
        }
        self._snapshot_at = now
        return self._snapshot

    def readiness(self):
        """
        :return: C{(ready, document)} for C{/readyz}.
        """
        ends = [{"role": role, "connector": end.spec.text, "state": link.state} for role, end, link in self.links()]
        waiting = self.not_ready()
        document = {"ready": not waiting and bool(ends), "ends": ends}
        if waiting:
            document["reason"] = "; ".join("{} end {} is {}".format(role, connector, state)
                                           for role, connector, state in waiting)
        elif not ends:
            document["reason"] = "no ends"
        return document["ready"], document

    @staticmethod
    def build_info():
        return {"version": __version__, "python": platform.python_version(), "twisted": twisted.__version__}


class TelemetryService(Service):
    """
    While the tunnel runs and something reads its telemetry: the rates,
    once a second, and the warnings, from the log.
    """

    def __init__(self, telemetry, clock, publisher=globalLogPublisher):
        self.telemetry = telemetry
        self.clock = clock
        self.publisher = publisher
        self._loop = None

    def startService(self):
        Service.startService(self)
        if not self.telemetry.enabled:
            return
        self.publisher.addObserver(self.telemetry.warnings)
        self._loop = LoopingCall(self.telemetry.tick)
        self._loop.clock = self.clock
        self._loop.start(1.0, now=False)

    def stopService(self):
        Service.stopService(self)
        self.publisher.removeObserver(self.telemetry.warnings)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
