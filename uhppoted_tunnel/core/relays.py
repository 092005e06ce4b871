# -*- test-case-name: tests.unit.test_stream,tests.unit.test_events -*-
"""
What a stream end does with frames: one relay for each role a stream end
can play.

================== ====================== =====================
                   requests and replies   events (one way)
================== ====================== =====================
in end             L{RequestReceiver}     L{EventReceiver}
out end            L{RequestSender}       L{EventSender}
================== ====================== =====================

The request relays are here, the event relays in
L{uhppoted_tunnel.core.eventrelays}, and what they share in
L{uhppoted_tunnel.core.relay}. A relay is given its collaborators (the router, the clock, the list of
ready connections its transport keeps) and hears of each connection and
frame from the transport; it reaches a connection only through
L{IFrameConnection} (C{sendFrame}, C{peer}, C{close}) and never touches a
socket or the end itself.
"""

from collections import deque
from functools import partial

from twisted.internet.task import LoopingCall
from zope.interface import implementer

from uhppoted_tunnel.core.accounting import NoPeerWarnings
from uhppoted_tunnel.core.eventrelays import EventReceiver, EventSender
from uhppoted_tunnel.core.relay import Numbering, Relay
from uhppoted_tunnel.core.replies import MAX_PENDING_REPLIES, REPLY_IDLE, ReplyTable
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.core.routes import BROADCAST, NO_ROUTE, NOBODY, REFUSED, UNKNOWN_ALL, RouteTable
from uhppoted_tunnel.core.counts import EMPTY, NO_PEER, QUEUE_FULL, UNMATCHED
from uhppoted_tunnel.interfaces import IN, IOutRelay, IRelay, IReplyTimer, ITally

#: Requests held while an out end has no peer (Go holds 16).
QUEUE_SIZE = 16



def relay_for(role, settings, router, clock, connections, log_tag="TCP", failed=None):
    """
    The relay for an end in a role, in a request tunnel or an event tunnel.

    :param role: L{IN} or L{OUT}.
    :param settings: the tunnel's options; C{settings["events"]} says
        whether the tunnel relays events.
    :param router: the tunnel's router (in relays hand it what arrives).
    :param clock: an C{IReactorTime}.
    :param connections: the list of ready connections the transport keeps
        (the relay reads it, never changes it).
    :param log_tag: the tag of the relay's log lines.
    :param failed: called as C{failed(log_format, **fields)} when the
        relay cannot go on (its end's
        L{uhppoted_tunnel.link.lifecycle.EndLifecycle.failed}), or C{None}
        to log it only.
    """
    if settings["events"]:
        kind = EventReceiver if role == IN else EventSender
    else:
        kind = RequestReceiver if role == IN else RequestSender
    return kind(settings, router, clock, connections, log_tag, failed)


@implementer(IRelay, ITally)
class RequestReceiver(Relay):
    """
    An in end of a request tunnel: each request frame goes to the router,
    and each reply goes back on the connection it came by, with its id.
    """

    empty = 0

    def frameReceived(self, connection, frame_id, payload):
        if payload:
            self.router.request(payload, partial(self._reply, connection, frame_id))
        else:
            self.empty += 1

    def tally(self, t):
        t.drop(EMPTY, self.empty)

    def _reply(self, connection, frame_id, payload):
        if connection in self.connections:
            connection.sendFrame(frame_id, payload)


@implementer(IOutRelay, ITally, IReplyTimer)
class RequestSender(Relay):
    """
    An out end of a request tunnel: numbers each request, sends it to every
    connected peer, and matches replies by connection and id. A unicast
    request for a serial its L{RouteTable} knows goes to that peer only; an
    unknown serial goes to every peer (or, with C{--unknown-serial drop},
    nowhere) and is learned from the reply. While no peer
    is connected it holds the newest few requests, and sends only those
    still younger than C{--udp-timeout} when one connects.
    """

    def __init__(self, settings, router, clock, connections, log_tag="TCP", failed=None):
        Relay.__init__(self, settings, router, clock, connections, log_tag, failed)
        self.trace = settings["debug"]
        self.udp_timeout = settings["udp-timeout"]
        self.replies = ReplyTable(clock.seconds, limit=settings.get("max-pending-replies", MAX_PENDING_REPLIES))
        self._full = Throttle(clock, self._warnFull)
        self._no_peer = NoPeerWarnings(clock, log_tag, QUEUE_SIZE, self.udp_timeout)
        self.queue = deque(maxlen=QUEUE_SIZE)
        self.ids = Numbering()
        self._sweeper = None
        self.routes = RouteTable(clock, settings.get("routes"), settings.get("client-auth", False),
                                 settings.get("unknown-serial", UNKNOWN_ALL), log_tag)
        #: replies no request waits for; queued requests too old to send
        self.unmatched = 0
        self.stale = 0

    @property
    def reply_times(self):
        """
        See L{IReplyTimer}: its reply table times each reply as it
        dispatches it.
        """
        return self.replies.times

    @reply_times.setter
    def reply_times(self, times):
        self.replies.times = times

    def start(self):
        self._sweeper = LoopingCall(self._sweep)
        self._sweeper.clock = self.clock
        self._sweeper.start(REPLY_IDLE / 3, now=False)

    def _sweep(self):
        self.replies.sweep()
        self.routes.tick()

    def stop(self):
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None
        self.queue.clear()
        self._no_peer.flush()
        self._full.flush()
        self.routes.flush()

    def _warnFull(self, count):
        self.log.warn("dropped {count} request(s): {limit} requests already wait for replies on this end "
                      "(--max-pending-replies); are the controllers behind the other half answering?",
                      count=count, limit=self.replies.limit)

    def send(self, payload, reply, start=None):
        """
        :param start: when a request held while no peer was connected
            arrived (what its replies are timed from).
        """
        connections = self.connections
        if not connections:
            if len(self.queue) == self.queue.maxlen:
                self._no_peer.dropped()
            self.queue.append((self.clock.seconds(), payload, reply))
            self._no_peer.held(payload)
            return
        if reply is not None:
            handlers = self.replies.handlers
            if len(handlers) >= self.replies.limit:
                self._full.count()
                return
            # read before the request is written: its replies are timed
            # from here
            now = self.clock.seconds()
            if start is None:
                start = now
        frame_id = self.ids.next()
        key = payload[4:8]
        once = len(key) == 4 and key != BROADCAST
        if once:
            # the route table's look-up, its usual case written out: this
            # is every request's path
            routes = self.routes
            site = routes.learned.get(key)
            if site is None:
                site = routes.target(key)
                if site is None:
                    routes.unrouted += 1
                    if routes.drop_unknown:
                        routes.dropped += 1
                        return
                elif site is NOBODY:
                    routes.unrouted += 1
                    routes.dropped += 1
                    return
            if site is not None:
                site.requests += 1
                connection = site.connection
                if connection.sendFrame(frame_id, payload) and reply is not None:
                    # the reply table's add, written out: every request's
                    # path
                    handlers[(connection, frame_id)] = [reply, now, True, start]
                return
        for connection in connections:
            # no handler waits for a frame dropped for a peer not reading
            if connection.sendFrame(frame_id, payload) and reply is not None:
                handlers[(connection, frame_id)] = [reply, now, once, start]

    def frameReceived(self, connection, frame_id, payload):
        if len(payload) >= 8:
            key = payload[4:8]
            routes = self.routes
            if routes.strict and not routes.allows(connection, key):
                return
            if self.replies.dispatch(connection, frame_id, payload):
                site = routes.learned.get(key)
                if site is not None and site.connection is connection:
                    site.replies += 1
                else:
                    routes.replied(connection, key)
                return
        elif payload and self.replies.dispatch(connection, frame_id, payload):
            return
        self.unmatched += 1
        if self.trace:
            self.log.debug("dropped reply {id} from {peer}: no request is waiting for it", id=frame_id,
                           peer=connection.peer)

    def tally(self, t):
        t.drop(QUEUE_FULL, self._no_peer.total_dropped + self._full.total)
        t.drop(NO_PEER, self.stale)
        t.drop(UNMATCHED, self.unmatched)
        t.drop(NO_ROUTE, self.routes.dropped)
        t.drop(REFUSED, self.routes.refused)
        t.sites.extend(self.routes.snapshot())
        t.unrouted += self.routes.unrouted

    def connected(self, connection):
        self.routes.connected(connection)
        if self.queue:
            self._flush()

    def disconnected(self, connection):
        self.routes.disconnected(connection)
        self.replies.discard(connection)

    def _flush(self):
        cutoff = self.clock.seconds() - self.udp_timeout
        queued, self.queue = list(self.queue), deque(maxlen=QUEUE_SIZE)
        stale = 0
        for stamp, payload, reply in queued:
            if stamp < cutoff:
                stale += 1
            else:
                self.send(payload, reply, stamp)
        if stale:
            self.stale += stale
            self._no_peer.stale(stale)
