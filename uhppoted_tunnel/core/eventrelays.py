# -*- test-case-name: tests.unit.test_events -*-
"""
The relays of an event tunnel (one way): L{EventReceiver} at the in end,
which acknowledges events and forwards each once, and L{EventSender} at
the out end, which numbers, buffers, spools and resends them until
acknowledged (see L{uhppoted_tunnel.core.relays} for the role table).
"""

from zope.interface import implementer

from uhppoted_tunnel.core.events import (
    SESSION_ID,
    EventBuffer,
    new_session,
    parse_session,
    session_frame,
)
from uhppoted_tunnel.core.eventfiles import StorageError
from uhppoted_tunnel.core.seenevents import SeenEvents
from uhppoted_tunnel.core.relay import Numbering, Relay
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.core.counts import QUEUE_FULL
from uhppoted_tunnel.interfaces import IOutRelay, IRelay, ITally


@implementer(IRelay, ITally)
class EventReceiver(Relay):
    """
    An in end of an event tunnel: acknowledges every event frame with an
    empty frame of its id, and forwards each event once.

    A sending half names its session in the first frame of each
    connection (id 0); the receiver then remembers the (session, frame
    id) of each event it forwards (across restarts, in
    C{<event-spool>.seen}) and does not forward one resent after a
    reconnect again. Those are the sending half's own numbers, which no
    packet from a controller or from anyone on the site's network can
    set, so forged events can be relayed (as the Go tunnel relays them)
    but can never make a real one be dropped. Frames from a sender that
    names no session (a Go tunnel, which never resends) are forwarded as
    they come.
    """

    def __init__(self, settings, router, clock, connections, log_tag="TCP", failed=None):
        Relay.__init__(self, settings, router, clock, connections, log_tag, failed)
        self.trace = settings["debug"]
        self.path = settings["event-spool"] + ".seen"
        self.window = settings["event-window"]
        self.seen = None
        self.duplicates = 0
        #: connection -> the session its sender named
        self.sessions = {}

    def start(self):
        self.seen = SeenEvents(self.window, self.path, self.clock.seconds)

    def stop(self):
        if self.seen is not None:
            seen, self.seen = self.seen, None
            seen.close()
            if seen.failing is not None:
                # every event was delivered, but the record of them was
                # not kept: not a clean exit
                self.failed("could not record {n} forwarded event(s) in {path}: {reason}; every event was "
                            "delivered, but after a restart one the sending half resends may be forwarded twice. "
                            "Free space on the disk that holds {path}.", n=seen.unrecorded, path=self.path,
                            reason=seen.failing)

    def disconnected(self, connection):
        self.sessions.pop(connection, None)

    def tally(self, t):
        t.event("deduplicated", self.duplicates)

    def frameReceived(self, connection, frame_id, payload):
        if not payload:
            return
        if frame_id == SESSION_ID:
            session = parse_session(payload)
            if session is not None:
                self.sessions[connection] = session
                return
        session = self.sessions.get(connection)
        if session is None:
            self.router.request(payload, None)
        else:
            key = (session, frame_id)
            if key in self.seen:
                self.duplicates += 1
                if self.trace:
                    self.log.debug("event frame {id} already forwarded", id=frame_id)
            else:
                self.router.request(payload, None)
                self.seen.add(key)
        connection.sendFrame(frame_id, b"")


@implementer(IOutRelay, ITally)
class EventSender(Relay):
    """
    An out end of an event tunnel: holds events in an L{EventBuffer} until
    acknowledged, sends each connected peer every event held, in order, and
    keeps what is left in C{<event-spool>.events} for the next run.

    An acknowledgement counts only on the connection the event was sent on
    (an id at or below what that connection was sent); an event stays held
    until a peer that received it acknowledges it. With several peers (a
    server end's fan-out) every peer is sent every event held, and the
    first acknowledgement from one that received it delivers it. A peer
    that says nothing never empties the buffer.

    With C{--event-peer go} the peer is a Go tunnel, which acknowledges
    nothing: events are sent as the Go tunnel sends them, once, to the
    peers connected, and held only while none is.

    :ivar cursors: connection -> the last event id sent on it.
    """

    def __init__(self, settings, router, clock, connections, log_tag="TCP", failed=None):
        Relay.__init__(self, settings, router, clock, connections, log_tag, failed)
        self.path = settings["event-spool"] + ".events"
        self.buffer = EventBuffer(clock.seconds, settings["event-buffer"], settings["event-buffer-age"])
        self.ids = Numbering()
        self.go = settings.get("event-peer") == "go"
        self.session = new_session()
        self.cursors = {}
        self._lost = Throttle(clock, self._warnLost)
        self._refused = Throttle(clock, self._warnRefused)
        self._last_refused = None
        #: acknowledgements that delivered an event; events loaded from
        #: the spool at start
        self.acknowledged = 0
        self.spooled = 0

    def start(self):
        session, spooled = EventBuffer.load(self.path)
        # a spool keeps its session and ids, so the receiving half knows
        # the events it sends again; a new run without one starts a new
        # session
        self.session = session or new_session()
        if session is not None and spooled:
            self.ids.after(max(frame_id for frame_id, _, _ in spooled))
        self.spooled += len(spooled)
        for frame_id, stamp, payload in spooled:
            self.buffer.add(frame_id if session is not None else self.ids.next(), payload, stamp)
        if spooled:
            self.log.info("{n} undelivered event(s) from the last run, from {path}", n=len(spooled), path=self.path)
        if self.go:
            self.log.info("relaying events as the Go tunnel does (--event-peer go): each sent once to the peers "
                          "connected, held only while none is, never acknowledged")

    def _sent(self):
        """
        The highest id sent to a connected peer.
        """
        return max(self.cursors.values(), default=0)

    def stop(self):
        self.buffer.expire(self._sent())
        unconfirmed = self.buffer.forgetUnconfirmed()
        if unconfirmed:
            self.log.warn("{n} event(s) dropped from the full buffer after they were sent were never acknowledged: "
                          "they may be lost", n=unconfirmed)
        self._lost.flush()
        self._refused.flush()
        if self.buffer:
            try:
                self.buffer.spool(self.path, self.session)
            except StorageError as e:
                # an error the tunnel cannot get past: exit 1, saying how
                # many events are lost
                self.failed("could not keep {n} undelivered event(s) in {path}: {reason}", n=e.lost, path=e.path,
                            reason=e.reason)
            else:
                self.log.info("kept {n} undelivered event(s) for the next run in {path}", n=len(self.buffer),
                              path=self.path)

    def send(self, payload, reply):
        last = self.buffer.last
        frame_id = self.ids.next()
        dropped = self.buffer.add(frame_id, payload, sent=self._sent())
        if dropped:
            self._lost.count(dropped)
        # a peer that has every earlier event gets this one now; one still
        # catching up gets it in order from _catchUp
        sent = False
        for connection in self.connections:
            if self.cursors.get(connection) == last:
                if connection.sendFrame(frame_id, payload):
                    self.cursors[connection] = frame_id
                    sent = True
            else:
                sent = self._catchUp(connection) or sent
        if sent and self.go:
            self.buffer.acknowledge(frame_id)

    def _catchUp(self, connection):
        """
        Send a connection every event held that it has not been sent, in
        order.

        :return: True if anything was sent.
        """
        cursor = self.cursors.get(connection, 0)
        sent = []
        for frame_id, payload in self.buffer.after(cursor):
            if not connection.sendFrame(frame_id, payload):
                break
            self.cursors[connection] = frame_id
            sent.append(frame_id)
        if self.go:
            for frame_id in sent:
                self.buffer.acknowledge(frame_id)
        return bool(sent)

    def _warnLost(self, count):
        self.log.warn("event buffer full: dropped the {n} oldest event(s) from the buffer; so far {late} of those "
                      "dropped were delivered (sent before, acknowledged later), {waiting} were sent and await "
                      "acknowledgement, and {total} are lost (never sent, or never acknowledged) (--event-buffer "
                      "{limit}, --event-buffer-age {age:g}s)", n=count, late=self.buffer.late,
                      waiting=len(self.buffer.unconfirmed), total=self.buffer.lost, limit=self.buffer.limit,
                      age=self.buffer.max_age)

    def frameReceived(self, connection, frame_id, payload):
        # an event sender hears only acknowledgements; like the Go
        # tunnel's, it discards anything else sent back
        if payload:
            return
        if frame_id <= self.cursors.get(connection, 0):
            if self.buffer.acknowledge(frame_id):
                self.acknowledged += 1
        else:
            # an id never sent on this connection: whoever it is, it cannot
            # acknowledge what it did not receive
            self._last_refused = connection.peer
            self._refused.count()

    @property
    def refused(self):
        """
        Acknowledgements ignored: ids never sent on their connection.
        """
        return self._refused.total

    def _warnRefused(self, count):
        self.log.warn("ignored {n} acknowledgement(s) of events never sent on their connection, the last from "
                      "{peer}", n=count, peer=self._last_refused)

    def connected(self, connection):
        self.cursors[connection] = 0
        if not self.go:
            # the receiving half de-duplicates by this session and the ids
            # (a Go receiver would forward the frame as a datagram)
            connection.sendFrame(SESSION_ID, session_frame(self.session))
        self._catchUp(connection)

    def disconnected(self, connection):
        self.cursors.pop(connection, None)
        if not self.cursors:
            # nobody is left to acknowledge what was dropped after it was
            # sent (a reconnect resends only what is held)
            lost = self.buffer.forgetUnconfirmed()
            if lost:
                self.log.warn("{n} event(s) dropped from the full buffer after they were sent were never "
                              "acknowledged before the link dropped: they may be lost (--event-buffer {limit})",
                              n=lost, limit=self.buffer.limit)

    def tally(self, t):
        t.event("acknowledged", self.acknowledged)
        t.event("spooled", self.spooled)
        t.events["buffered"] = len(self.buffer)
        t.drop(QUEUE_FULL, self.buffer.lost)
