# -*- test-case-name: tests.unit.test_routes -*-
"""
The route table of a host out end with many sites (L{RouteTable}): which
connection serves which controller serial, learned from the replies it
relays (the serial at bytes 4..7, little-endian) or given statically per
site identity (the TOML C{[routes]} table), so that a unicast request goes
to one site only.

A site is one ready connection (L{Site}). Its identity is the subject of
the certificate it proved under TLS (a connection providing
L{uhppoted_tunnel.interfaces.IPeerIdentity}), else the host of its address
with no port: a Go site sends no name, and the port of an address behind
NAT changes on each reconnect.

Routes are keyed by the four serial bytes as they stand in the packet (no
conversion on the hot path); every operation per request or reply is a
few dictionary look-ups, whatever the number of sites. Pure: time comes in
as an C{IReactorTime}, warnings are throttled
(L{uhppoted_tunnel.core.throttle.Throttle}).
"""

from twisted.logger import Logger

from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.interfaces import IPeerIdentity

#: What L{RouteTable.unknown} does with a unicast request for a serial no
#: site has claimed: send it to every site, or drop it.
UNKNOWN_ALL = "all"
UNKNOWN_DROP = "drop"
UNKNOWN_SERIAL = (UNKNOWN_ALL, UNKNOWN_DROP)

#: Drop reasons (the C{reason} label of C{uhppoted_tunnel_dropped_total}):
#: requests no site may have, replies refused by static routes.
NO_ROUTE = "no_route"
REFUSED = "refused_route"

#: The serial bytes of a broadcast.
BROADCAST = b"\0\0\0\0"

#: L{RouteTable.target} for a serial routed statically to a site that is
#: not connected: nobody else may have its requests.
NOBODY = object()


def serial_key(serial):
    """
    :param serial: a controller serial number.
    :return: its four bytes as a packet carries them (the table's key).
    """
    return serial.to_bytes(4, "little")


def key_serial(key):
    """
    :param key: four serial bytes.
    :return: the serial number.
    """
    return int.from_bytes(key, "little")


def identity_of(connection):
    """
    A connection's site identity: the certificate subject it proved, else
    the host of its address (no port).

    :param connection: an L{uhppoted_tunnel.interfaces.IFrameConnection}.
    """
    if IPeerIdentity.providedBy(connection) and connection.identity:
        return connection.identity
    peer = connection.peer
    host, colon, port = peer.rpartition(":")
    if not colon or not port.isdigit():
        return peer
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


class Site:
    """
    One connected site: who it is, since when, what it serves and what it
    was sent.
    """

    __slots__ = ("connection", "identity", "address", "since", "last_seen", "serials", "requests", "replies",
                 "_replies_seen")

    def __init__(self, connection, identity, since):
        self.connection = connection
        self.identity = identity
        self.address = connection.peer
        self.since = since
        self.last_seen = since
        #: the serial keys routed to it by learning
        self.serials = set()
        #: unicast requests routed to it alone; replies it sent
        self.requests = 0
        self.replies = 0
        self._replies_seen = 0


class RouteTable:
    """
    Serial -> site, learned or static.

    Static routes win over learning: a serial routed statically to an
    identity is learned only from that identity's connections, and while
    none is connected its requests go nowhere (L{NOBODY}). When C{strict}
    (C{--client-auth} with static routes, so identities are proven), a
    site's replies for serials not routed to it are refused: a rogue site
    with a valid certificate cannot take another site's controllers, and
    a request for a serial not in the static table goes nowhere (no reply
    to it would be let through). Two
    connections claiming one serial is a conflict: the newer claim wins,
    and a throttled warning names both.

    :ivar unrouted: unicast requests for a serial no site serves.
    :ivar dropped: those of them dropped (C{--unknown-serial drop}, or a
        static route to a site not connected).
    :ivar refused: replies refused in strict mode.
    :ivar conflicts: serials claimed by a second connection.
    """

    log = Logger()

    def __init__(self, clock, static=None, strict=False, unknown=UNKNOWN_ALL, log_tag="TCP"):
        """
        :param clock: an C{IReactorTime}.
        :param static: C{{identity: [serial, ...]}} (the TOML C{[routes]}
            table), or C{None}.
        :param strict: refuse replies for serials not routed to the site
            (meaningful when identities are proven: C{--client-auth}).
        :param unknown: L{UNKNOWN_ALL} or L{UNKNOWN_DROP}.
        :param log_tag: the tag of its log lines.
        """
        self._seconds = clock.seconds
        self.log_tag = log_tag
        self.static = {serial_key(serial): identity
                       for identity, serials in (static or {}).items() for serial in serials}
        self.strict = bool(strict and self.static)
        self.drop_unknown = unknown == UNKNOWN_DROP
        #: serial key -> Site, for learned routes (and static ones once
        #: their site has answered)
        self.learned = {}
        #: connection -> Site
        self.sites = {}
        #: identity -> [Site, ...], newest last
        self.identities = {}
        self.unrouted = 0
        self.dropped = 0
        self.refused = 0
        self._conflict = Throttle(clock, self._warnConflict)
        self._refused = Throttle(clock, self._warnRefused)
        self._last_conflict = None
        self._last_refused = None

    @property
    def conflicts(self):
        return self._conflict.total

    def connected(self, connection):
        """
        A connection is ready: it is a site.

        :return: its L{Site}.
        """
        site = Site(connection, identity_of(connection), self._seconds())
        self.sites[connection] = site
        self.identities.setdefault(site.identity, []).append(site)
        return site

    def disconnected(self, connection):
        """
        A connection closed: its routes end with it.
        """
        site = self.sites.pop(connection, None)
        if site is None:
            return
        learned = self.learned
        for key in site.serials:
            if learned.get(key) is site:
                del learned[key]
        same = self.identities.get(site.identity)
        if same is not None:
            same.remove(site)
            if not same:
                del self.identities[site.identity]

    def target(self, key):
        """
        Where a unicast request for a serial goes.

        :param key: the four serial bytes of the request.
        :return: the L{Site} serving it, C{None} when no site has claimed
            it, or L{NOBODY} when it is routed statically to a site not
            connected, or (strict) not routed statically at all.
        """
        site = self.learned.get(key)
        if site is not None:
            return site
        identity = self.static.get(key)
        if identity is None:
            # strict: no site's reply for it would be let through, so
            # sending it to every site would only spread it
            return NOBODY if self.strict else None
        same = self.identities.get(identity)
        return same[-1] if same else NOBODY

    def allows(self, connection, key):
        """
        Whether a reply for the serial C{key} from C{connection} may be
        relayed: in strict mode, only for a serial routed to its site;
        what is refused is counted and warned of, throttled.
        """
        if not self.strict or key == BROADCAST:
            return True
        site = self.sites.get(connection)
        if site is None:
            return True
        owner = self.static.get(key)
        if owner == site.identity:
            return True
        self.refused += 1
        self._last_refused = (key, owner, site)
        self._refused.count()
        return False

    def replied(self, connection, key):
        """
        A reply for the serial C{key} from C{connection} was relayed:
        learn the route, unless a static route names another site.
        """
        site = self.sites.get(connection)
        if site is None:
            return
        site.replies += 1
        current = self.learned.get(key)
        if current is site or key == BROADCAST:
            return
        owner = self.static.get(key)
        if owner is not None and owner != site.identity:
            self._last_conflict = (key, owner, site)
            self._conflict.count()
            return
        if current is not None:
            current.serials.discard(key)
            self._last_conflict = (key, current.identity + " at " + current.address, site)
            self._conflict.count()
        self.learned[key] = site
        site.serials.add(key)

    def _warnConflict(self, count):
        key, owner, site = self._last_conflict
        self.log.warn("controller {serial} is claimed by {owner} and by {identity} at {address}: requests go to "
                      "the newer claim unless [routes] names its site ({n} conflicting claim(s)); is one "
                      "controller set up at two sites?", serial=key_serial(key), owner=owner,
                      identity=site.identity, address=site.address, n=count)

    def _warnRefused(self, count):
        key, owner, site = self._last_refused
        self.log.warn("refused a reply for controller {serial} from {identity} at {address}: [routes] routes "
                      "it to {owner} ({n} refused); check that site's controllers, or add the serial to its "
                      "[routes] entry", serial=key_serial(key), identity=site.identity, address=site.address,
                      owner=owner or "no site", n=count)

    def tick(self):
        """
        Note, as last seen now, each site that replied since the last tick
        (the relay calls this every few seconds: noting the time of every
        reply would cost each one a call to the clock).
        """
        now = self._seconds()
        for site in self.sites.values():
            if site.replies != site._replies_seen:
                site._replies_seen = site.replies
                site.last_seen = now

    def flush(self):
        """
        Report pending warnings and cancel their timers (the end stops).
        """
        self._conflict.flush()
        self._refused.flush()

    def snapshot(self):
        """
        :return: each site as a dict (identity, address, since, last seen
            (to within a L{tick}),
            the serials it serves, requests and replies), oldest first.
        """
        static = {}
        for key, identity in self.static.items():
            static.setdefault(identity, set()).add(key)
        sites = []
        for site in self.sites.values():
            serials = set(site.serials)
            if self.identities.get(site.identity, [None])[-1] is site:
                serials |= static.get(site.identity, set())
            sites.append({
                "identity": site.identity,
                "address": site.address,
                "since": site.since,
                "last_seen": site.last_seen,
                "serials": sorted(key_serial(key) for key in serials),
                "requests": site.requests,
                "replies": site.replies,
            })
        return sites
