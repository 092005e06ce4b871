# -*- test-case-name: tests.unit.test_telemetry -*-
"""
What the ends count and the small tables the telemetry keeps, apart from
the telemetry itself (L{uhppoted_tunnel.observe.telemetry}) so that the ends
import nothing more than this.

An end (and each of its parts) adds its plain counts to a L{Tally} when
the metrics are read (its C{tally(t)}): drops by reason (the constants
below), timeouts, redials, failed TLS handshakes, refused connections,
certificates, events. L{Latency} and L{Controllers} are what the out end
(L{uhppoted_tunnel.core.replytimes}) or the router fills, per reply, while
something reads the telemetry.
"""

import struct
from bisect import bisect_left

from uhppoted_tunnel.interfaces import ICountingEndpoint, ITally

#: Drop reasons (the C{reason} label of C{uhppoted_tunnel_dropped_total}).
RATE_LIMIT = "rate_limit"
PER_SOURCE_LIMIT = "per_source_limit"
TOO_LONG = "too_long"
EMPTY = "empty"
QUEUE_FULL = "queue_full"
NO_PEER = "no_peer"
KERNEL_OVERFLOW = "kernel_overflow"
UNMATCHED = "unmatched"

#: The upper bounds of the reply latency buckets, in seconds: 0.1 ms to
#: 100 ms, the span of a reply on a LAN and across a WAN.
LATENCY_BUCKETS = (0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1)

#: Controllers remembered at most.
MAX_CONTROLLERS = 256

#: Event types (byte 12 of an event).
EVENT_TYPES = {1: "swipe", 2: "door", 3: "alarm", 0xFF: "overwritten"}


def _add(table, key, n):
    if n:
        table[key] = table.get(key, 0) + n


class Tally:
    """
    What the parts of one end have counted, gathered when it is read: an
    end (and each of its parts) adds its numbers in its C{tally(t)}.

    :ivar dropped: reason -> packets dropped.
    :ivar timeouts: requests no controller answered in time.
    :ivar reconnects: dials after the first.
    :ivar handshake_failures: reason -> TLS handshakes that failed.
    :ivar refused: cap -> connections refused by the connection caps.
    :ivar certificates: C{(flag, path, not_after)} of the certificates used.
    :ivar events: C{acknowledged}, C{deduplicated}, C{spooled} -> count,
        and C{buffered} -> events held now.
    :ivar sites: the sites of a request out end
        (L{uhppoted_tunnel.core.routes.RouteTable.snapshot}).
    :ivar unrouted: unicast requests for a serial no site serves.
    """

    __slots__ = ("dropped", "timeouts", "reconnects", "handshake_failures", "refused", "certificates", "events",
                 "sites", "unrouted")

    def __init__(self):
        self.dropped = {}
        self.timeouts = 0
        self.reconnects = 0
        self.handshake_failures = {}
        self.refused = {}
        self.certificates = []
        self.events = {}
        self.sites = []
        self.unrouted = 0

    def drop(self, reason, n):
        """
        Count C{n} packets dropped for C{reason}.
        """
        _add(self.dropped, reason, n)

    def event(self, what, n):
        """
        Count C{n} events C{what} (acknowledged, deduplicated, ...).
        """
        _add(self.events, what, n)

    def handshakes(self, failures):
        """
        Add a reason -> count table of failed TLS handshakes.
        """
        for reason, n in failures.items():
            _add(self.handshake_failures, reason, n)

    def caps(self, refused):
        """
        Add a cap -> count table of refused connections.
        """
        for cap, n in refused.items():
            _add(self.refused, cap, n)

    def endpoint(self, endpoint):
        """
        Add what an end's endpoint, and each endpoint it wraps (as
        C{endpoint}), counted: failed TLS handshakes
        (C{handshake_failures}), connections refused by the caps
        (C{refused}) and frames a message transport's endpoint dropped
        (C{dropped}, by reason), of each that provides
        L{uhppoted_tunnel.interfaces.ICountingEndpoint}.
        """
        while ICountingEndpoint.providedBy(endpoint):
            self.handshakes(endpoint.handshake_failures)
            self.caps(endpoint.refused)
            for reason, n in endpoint.dropped.items():
                self.drop(reason, n)
            endpoint = endpoint.endpoint

    def watch(self, watch):
        """
        Add the certificates of an end's expiry watch (or C{None}).
        """
        if watch is not None:
            self.certificates.extend(watch.certificates)


def tally(end):
    """
    :return: the L{Tally} of an end (empty for an end that counts nothing).
    """
    t = Tally()
    if ITally.providedBy(end):
        end.tally(t)
    return t


class Latency:
    """
    A histogram of reply times with fixed buckets: one C{bisect} and two
    additions per reply.

    :ivar counts: per bucket (not cumulative), the last for anything above
        the highest bound.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds=LATENCY_BUCKETS):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, seconds):
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.sum += seconds

    def buckets(self):
        """
        :return: C{[(upper bound as text, cumulative count), ...]} ending
            with C{("+Inf", total)}, as Prometheus has them.
        """
        total = 0
        result = []
        for bound, count in zip(self.bounds + (float("inf"),), self.counts):
            total += count
            result.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return result


class Controllers:
    """
    The controllers seen through the tunnel, by serial: at most C{limit};
    a new one past that replaces the least recently seen.

    Each entry is C{[address, last reply, last event, last seen]}.
    """

    def __init__(self, clock, limit=MAX_CONTROLLERS):
        """
        :param clock: an C{IReactorTime}, for controllers first seen by
            their address.
        :param limit: the most controllers remembered.
        """
        self.clock = clock
        self.limit = limit
        self.seen = {}

    def _entry(self, serial, now):
        entry = self.seen.get(serial)
        if entry is None:
            if len(self.seen) >= self.limit:
                oldest = min(self.seen, key=lambda key: self.seen[key][3])
                del self.seen[oldest]
            entry = self.seen[serial] = [None, None, None, now]
        else:
            entry[3] = now
        return entry

    def reply(self, serial, now):
        self._entry(serial, now)[1] = now

    def event(self, serial, now):
        self._entry(serial, now)[2] = now

    def address(self, serial, address):
        """
        Where a controller's packets came from (C{(host, port)}). (The UDP
        ends call it only for a controller not yet known at that address:
        for every other reply they look it up in C{seen} themselves.)
        """
        entry = self.seen.get(serial)
        if entry is None:
            if not serial:
                return
            entry = self._entry(serial, self.clock.seconds())
        if entry[0] != address:
            entry[0] = address

    def snapshot(self):
        rows = sorted(self.seen.items(), key=lambda item: item[1][3], reverse=True)
        return [{"serial": serial, "address": None if address is None else "{}:{}".format(*address[:2]),
                 "last_reply": last_reply, "last_event": last_event}
                for serial, (address, last_reply, last_event, _) in rows]


#: a packet's serial number (bytes 4 to 7, little-endian):
#: C{unpack_serial(packet, 4)[0]}; on every reply's path, a thousand
#: instructions fewer than slicing for C{int.from_bytes}
unpack_serial = struct.Struct("<I").unpack_from


def serial_of(packet):
    """
    :return: the controller serial of a UHPPOTE packet (bytes 4..7), or
        C{None} (too short, or 0).
    """
    if len(packet) < 8:
        return None
    return int.from_bytes(packet[4:8], "little") or None


def decode_event(stamp, packet):
    """
    The status page's view of an event packet (a get-status reply pushed
    by a controller): index at bytes 8..11, then type, granted, door,
    direction, card (16..19).

    :param stamp: when it was relayed.
    :return: a dict (see the module docstring).
    """
    long_enough = len(packet) >= 20
    return {
        "time": stamp,
        "serial": serial_of(packet),
        "index": int.from_bytes(packet[8:12], "little") if long_enough else None,
        "type": EVENT_TYPES.get(packet[12], "unknown") if long_enough else None,
        "door": packet[14] if long_enough else None,
        "granted": bool(packet[13]) if long_enough else None,
        "card": int.from_bytes(packet[16:20], "little") if long_enough else None,
    }
