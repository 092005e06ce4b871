# -*- test-case-name: tests.unit.test_nats -*-
"""
Where frames go on a NATS cluster: the subjects, the JetStream names and
the message ids, as pure functions and small tables (no nats-py, no
reactor).

With the prefix C{P} (C{--nats-subject}, default C{uhppoted.tunnel}):

============================ =========================================
C{P.request.SERIAL}           a unicast request for controller SERIAL
                              (bytes 4..7 of the packet, little-endian),
                              heard only by the site that serves it
C{P.broadcast}                a request for every controller (serial 0),
                              heard by every site
C{HOSTINBOX}                  replies to a host's requests, each frame
                              naming its request (each host has its own
                              inbox)
C{P.events.SERIAL}            events, in the JetStream stream L{stream_name}
============================ =========================================
"""

import re
import struct

from uhppoted_tunnel.core.events import SESSION_SIZE

DEFAULT_PREFIX = "uhppoted.tunnel"

#: the events' JetStream stream and the hosts' durable consumer
DEFAULT_DURABLE = "uhppoted-tunnel"

#: replicas of the events' stream: up to 3 (as many as the cluster has)
MAX_REPLICAS = 3

#: the metrics' reason for a message that is not this tunnel's frames (as
#: the xmpp/ ends name theirs)
BAD_FRAME = "bad_frame"

_TOKEN = re.compile(r"^[A-Za-z0-9_-]+$")
_SERIAL = struct.Struct("<I")


def check_prefix(prefix):
    """
    :return: C{prefix}, if it is a subject without wildcards.
    :raise ValueError: naming what is wrong.
    """
    if type(prefix) is not str or not prefix or not all(_TOKEN.match(token) for token in prefix.split(".")):
        raise ValueError("expected a NATS subject of letters, digits, '-' and '_' between dots, such as "
                         "uhppoted.tunnel, got {!r}".format(prefix))
    return prefix


def check_durable(name):
    """
    :return: C{name}, if it can name a JetStream consumer.
    :raise ValueError: naming what is wrong.
    """
    if type(name) is not str or not _TOKEN.match(name):
        raise ValueError("expected a name of letters, digits, '-' and '_', got {!r}".format(name))
    return name


def check_serial(value):
    """
    A controller serial from the command line or the TOML file.
    """
    try:
        serial = int(value)
    except (TypeError, ValueError):
        raise ValueError("expected a controller serial number, got {!r}".format(value)) from None
    if not 0 < serial <= 0xFFFFFFFF:
        raise ValueError("expected a controller serial number (1..4294967295), got {}".format(serial))
    return serial


def serial_of(payload):
    """
    :return: the controller serial a packet names (0 for a broadcast), or
        C{None} for what is too short to be a UHPPOTE packet.
    """
    if len(payload) < 8:
        return None
    return _SERIAL.unpack_from(payload, 4)[0]


def stream_name(prefix):
    """
    The JetStream stream of the events under C{prefix}: stream names
    cannot hold dots.
    """
    return prefix.replace(".", "_").upper() + "_EVENTS"


class Subjects:
    """
    The subjects under one prefix.
    """

    def __init__(self, prefix=DEFAULT_PREFIX):
        self.prefix = check_prefix(prefix)
        self.broadcast = prefix + ".broadcast"
        self.events = prefix + ".events.>"
        self.stream = stream_name(prefix)

    def request(self, serial):
        """
        The subject of unicast requests for controller C{serial}.
        """
        return "{}.request.{}".format(self.prefix, serial)

    def for_request(self, payload):
        """
        :return: the subject a request is published on: its controller's,
            or the broadcast subject for serial 0 (and for what is too
            short to name one, which every site relays as it would).
        """
        serial = serial_of(payload)
        return self.broadcast if not serial else self.request(serial)

    def for_event(self, payload):
        """
        :return: the subject an event is published on.
        """
        return "{}.events.{}".format(self.prefix, serial_of(payload) or 0)


def message_id(session, frame_id):
    """
    The C{Nats-Msg-Id} of a site's event: its session and the event's id
    in it, so that JetStream stores an event resent after a reconnect
    once.
    """
    return "{}.{}".format(session.hex(), frame_id)


def parse_message_id(text):
    """
    :return: C{(session, frame_id)} from L{message_id}'s text, or C{None}.
    """
    if not text:
        return None
    session, dot, frame_id = text.partition(".")
    if len(session) != 2 * SESSION_SIZE or not frame_id.isdigit():
        return None
    try:
        session = bytes.fromhex(session)
    except ValueError:
        return None
    frame_id = int(frame_id)
    return (session, frame_id) if 0 < frame_id <= 0xFFFFFFFF else None


class ReplyRoutes:
    """
    A site's requests in flight: the id it gives each request it hands its
    relay, and where each reply to it goes (the request's reply subject
    and the host's id of the request). A route
    lives while replies keep coming (a broadcast is answered by every
    controller), and is forgotten C{idle} seconds after the last one, or
    when C{limit} newer requests have come.
    """

    def __init__(self, seconds, idle=15.0, limit=4096):
        """
        :param seconds: the clock, C{() -> float}.
        """
        self.seconds = seconds
        self.idle = idle
        self.limit = limit
        self._routes = {}
        self._last = 0

    def __len__(self):
        return len(self._routes)

    def add(self, reply):
        """
        :param reply: where the request's replies go.
        :return: the request's id (1 to 2**32-1).
        """
        now = self.seconds()
        self._expire(now)
        self._last = self._last + 1 if self._last < 0xFFFFFFFF else 1
        routes = self._routes
        routes.pop(self._last, None)
        routes[self._last] = (reply, now)
        while len(routes) > self.limit:
            del routes[next(iter(routes))]
        return self._last

    def get(self, frame_id):
        """
        :return: where the replies to request C{frame_id} go, or C{None} if
            it is forgotten.
        """
        route = self._routes.pop(frame_id, None)
        if route is None:
            return None
        now = self.seconds()
        if now - route[1] > self.idle:
            return None
        # the newest last: the oldest first in line to expire
        self._routes[frame_id] = (route[0], now)
        return route[0]

    def _expire(self, now):
        # the oldest first: stop at the first still alive
        routes = self._routes
        while routes:
            frame_id = next(iter(routes))
            if now - routes[frame_id][1] <= self.idle:
                break
            del routes[frame_id]
