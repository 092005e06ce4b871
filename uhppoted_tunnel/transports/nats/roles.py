# -*- test-case-name: tests.unit.test_nats -*-
"""
How frames map onto NATS for each role of an end: pure logic on the
reactor's side, given the link's C{command} (what the NATS loop is to
do) and the connection to hand frames to; tested with fakes. A request
tunnel's messages carry frames in the stream wire format, several to a
message when they go the same way in one turn
(L{uhppoted_tunnel.transports.nats.batch}); an event is one JetStream
message, its payload alone, so that its message id stays one event's.

============== ========================================================
role           mapping
============== ========================================================
L{HostRequests} out end of a request tunnel (the host half): a request
                is a frame published on its controller's subject
                (C{P.request.SERIAL}) or C{P.broadcast}, with the link's
                own inbox as the reply subject; each frame of a message
                on the inbox is a reply to the request of its id
L{SiteRequests} in end (a site): subscribes to C{P.broadcast} and to
                the subjects of the controllers it serves (listed, or
                learned from their replies); each frame of a request
                message goes to the relay under an id of the site's, and
                each reply goes back as a frame of the host's id on the
                message's reply subject
L{EventStore}   out end of an event tunnel (a site): each event is stored
                in JetStream with the message id C{SESSION.ID}; once it
                is stored, the relay gets its acknowledgement (an empty
                frame of its id)
L{EventTake}    in end of an event tunnel (a host): each event from the
                durable consumer is a frame with the site's id, after a
                frame naming the site's session when it changes; the
                relay's acknowledgement acknowledges the message
============== ========================================================
"""

from collections import deque

from twisted.logger import Logger

from uhppoted_tunnel.core.counts import EMPTY, TOO_LONG
from uhppoted_tunnel.core.events import SESSION_ID, new_session, parse_session, session_frame
from uhppoted_tunnel.core.frames import encode
from uhppoted_tunnel.transports.nats.batch import BadBatch, decode
from uhppoted_tunnel.transports.nats.subjects import BAD_FRAME, ReplyRoutes, message_id, parse_message_id, serial_of

#: the most controllers a site learns (a site LAN can forge replies)
MAX_LEARNED = 1024


def frames_of(role, subject, data, what):
    """
    The frames of a message a request tunnel's role received, or C{None}
    if it is not frames of this tunnel: then C{role.bad} is told (warned
    of, throttled, and counted by its reason).

    :param role: a L{HostRequests} or L{SiteRequests}.
    :param what: the message, in words: C{"a reply"}, C{"a request"}.
    """
    try:
        return decode(data, role.max_payload)
    except BadBatch as e:
        role.bad(subject, "{} of {} bytes holding {}".format(what, len(data), e), e.reason)
        return None


class HostRequests:
    """
    The host half's requests: published by controller, replies by id.
    """

    def __init__(self, subjects, max_payload, command, bad, no_site):
        """
        :param subjects: the L{uhppoted_tunnel.transports.nats.subjects.Subjects}.
        :param command: C{command(*item)}: what the NATS loop is to do.
        :param bad: C{bad(subject, why, reason)}: a message that is not a
            frame, with the metrics' reason (L{TOO_LONG}, L{EMPTY},
            L{BAD_FRAME}).
        :param no_site: called for a request no site subscribes to.
        """
        self.subjects = subjects
        self.max_payload = max_payload
        self.command = command
        self.bad = bad
        self.no_site = no_site
        self.inbox = None
        self.connection = None

    def ready(self, connection, inbox):
        self.connection = connection
        self.inbox = inbox

    def sendFrame(self, frame_id, payload):
        self.command("publish", self.subjects.for_request(payload), encode(frame_id, payload), self.inbox)
        return True

    def message(self, subject, reply, data, headers):
        if headers and headers.get("Status") == "503":
            self.no_site()
        elif subject != self.inbox:
            self.bad(subject, "not a reply to a request of this end", BAD_FRAME)
        else:
            frames = frames_of(self, subject, data, "a reply")
            if frames is None:
                return
            received = self.connection.frameReceived
            for frame_id, payload in frames:
                received(frame_id, payload)


class SiteRequests:
    """
    A site's requests: those for its controllers and broadcasts, answered
    on each request's reply subject.

    :ivar served: the serials the site subscribes to.
    """

    log = Logger()
    log_tag = "NATS"

    def __init__(self, subjects, max_payload, command, bad, seconds, serials=(), learn=True):
        """
        :param seconds: the clock, C{() -> float}.
        :param serials: the serials subscribed to from the start.
        :param learn: whether a reply from another controller adds its
            serial.
        """
        self.subjects = subjects
        self.max_payload = max_payload
        self.command = command
        self.bad = bad
        self.routes = ReplyRoutes(seconds)
        self.served = set(serials)
        self.learn = learn
        self.connection = None
        self._full = False

    def ready(self, connection, inbox):
        self.connection = connection

    def message(self, subject, reply, data, headers):
        if not reply:
            self.bad(subject, "a request with no reply subject", BAD_FRAME)
            return
        frames = frames_of(self, subject, data, "a request")
        if frames is None:
            return
        add = self.routes.add
        received = self.connection.frameReceived
        for host_id, payload in frames:
            received(add((reply, host_id)), payload)

    def sendFrame(self, frame_id, payload):
        route = self.routes.get(frame_id)
        if route is None:
            return False
        reply, host_id = route
        self.command("publish", reply, encode(host_id, payload), None)
        serial = serial_of(payload)
        if self.learn and serial and serial not in self.served:
            self._serve(serial)
        return True

    def _serve(self, serial):
        if len(self.served) >= MAX_LEARNED:
            if not self._full:
                self._full = True
                self.log.warn("serving {n} controllers already: not subscribing to controller {serial}'s "
                              "requests (list the site's controllers with --nats-serial)", n=len(self.served),
                              serial=serial)
            return
        self.served.add(serial)
        self.command("subscribe", self.subjects.request(serial))
        self.log.info("serving controller {serial}", serial=serial)


class EventStore:
    """
    A site's events, stored in JetStream in order, each acknowledged to
    the relay once stored.
    """

    def __init__(self, subjects, command):
        self.subjects = subjects
        self.command = command
        # the relay names its session in frame 0; a sender that names none
        # (--event-peer go) gets one for this link
        self.session = new_session()
        self.connection = None

    def ready(self, connection, inbox):
        self.connection = connection

    def sendFrame(self, frame_id, payload):
        if frame_id == SESSION_ID:
            session = parse_session(payload)
            if session is not None:
                self.session = session
                return True
        if not payload:
            return True
        self.command("store", self.subjects.for_event(payload), payload, message_id(self.session, frame_id),
                     frame_id)
        return True

    def stored(self, frame_id):
        self.connection.frameReceived(frame_id, b"")

    def message(self, subject, reply, data, headers):
        pass


class EventTake:
    """
    A host's events, from the durable consumer, each acknowledged once the
    relay acknowledges it (once its listener has it).
    """

    def __init__(self, max_payload, command, bad):
        self.max_payload = max_payload
        self.command = command
        self.bad = bad
        self.session = None
        self.taken = {}
        self.connection = None

    def ready(self, connection, inbox):
        self.connection = connection

    def event(self, token, data, headers):
        named = parse_message_id((headers or {}).get("Nats-Msg-Id"))
        if named is None or not data or len(data) > self.max_payload:
            # not a tunnel's event: acknowledged, so that it blocks nothing
            self.command("ack", token)
            if named is None:
                self.bad("the events' stream", "a message that no tunnel stored", BAD_FRAME)
            else:
                self.bad("the events' stream", "an event of {} bytes (--max-payload {})".format(
                    len(data), self.max_payload), TOO_LONG if data else EMPTY)
            return
        session, frame_id = named
        if session != self.session:
            self.session = session
            self.connection.frameReceived(SESSION_ID, session_frame(session))
        self.taken.setdefault(frame_id, deque()).append(token)
        self.connection.frameReceived(frame_id, data)

    def sendFrame(self, frame_id, payload):
        tokens = self.taken.get(frame_id)
        if payload or not tokens:
            return False
        token = tokens.popleft()
        if not tokens:
            del self.taken[frame_id]
        self.command("ack", token)
        return True

    def message(self, subject, reply, data, headers):
        pass
