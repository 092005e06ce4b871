# -*- test-case-name: tests.unit.test_metrics -*-
"""
The tunnel's Prometheus metrics, read from its L{uhppoted_tunnel.observe.telemetry.Telemetry}
when scraped.

Nothing on the relay's path touches C{prometheus_client}: the router and
the ends keep plain integers, and L{TunnelCollector} turns them into
metric families (C{CounterMetricFamily}, C{GaugeMetricFamily},
C{HistogramMetricFamily}) at scrape time. Each tunnel has its own
C{CollectorRegistry} (L{registry_for}), never the process-wide default.

Every name starts C{uhppoted_tunnel_}; C{end} is C{in} or C{out}; every
label takes a bounded set of values:

=========================================================== ======= ================================================
metric                                                      type    labels and meaning
=========================================================== ======= ================================================
uhppoted_tunnel_build_info                                  gauge   C{version}, C{python}, C{twisted}; always 1
uhppoted_tunnel_start_time_seconds                          gauge   when the tunnel started (epoch seconds)
uhppoted_tunnel_ready                                       gauge   1 when every end is up (as C{/readyz})
uhppoted_tunnel_requests_total                              counter C{end}: received by the in end (in), passed
                                                                    to the out end (out)
uhppoted_tunnel_replies_total                               counter replies sent back through the in end
uhppoted_tunnel_timeouts_total                              counter C{end}: requests no controller answered in time
uhppoted_tunnel_reply_latency_seconds                       histo.  request in to reply out, 0.1 ms to 100 ms
uhppoted_tunnel_dropped_total                               counter C{end}, C{reason}: rate_limit,
                                                                    per_source_limit, too_long, empty,
                                                                    queue_full, no_peer, kernel_overflow,
                                                                    unmatched
uhppoted_tunnel_events_received_total                       counter events that reached the in end
uhppoted_tunnel_events_forwarded_total                      counter events passed to the out end
uhppoted_tunnel_events_acknowledged_total                   counter events the peer acknowledged
uhppoted_tunnel_events_deduplicated_total                   counter events resent after a reconnect, not
                                                                    forwarded again
uhppoted_tunnel_events_spooled_total                        counter undelivered events loaded from the spool
uhppoted_tunnel_events_buffered                             gauge   events held for the peer now
uhppoted_tunnel_link_up                                     gauge   C{end}: 1 when the end is up
uhppoted_tunnel_link_state                                  gauge   C{end}, C{state} (up, down, connecting,
                                                                    failed): 1 for the current state
uhppoted_tunnel_link_state_since_timestamp_seconds          gauge   C{end}: when the state began
uhppoted_tunnel_link_ups_total, ..._link_downs_total        counter C{end}: times the end went up, and down
uhppoted_tunnel_reconnects_total                            counter C{end}: dials after the first
uhppoted_tunnel_peers                                       gauge   C{end}: connected peers
uhppoted_tunnel_peer_connected_timestamp_seconds            gauge   C{end}, C{peer}: when each peer connected
                                                                    (the L{MAX_PEER_SERIES} oldest)
uhppoted_tunnel_tls_handshake_failures_total                counter C{end}, C{reason}: timeout, closed,
                                                                    certificate, protocol, other
uhppoted_tunnel_connections_refused_total                   counter C{end}, C{cap}: max-connections,
                                                                    max-connections-per-source
uhppoted_tunnel_certificate_expiry_timestamp_seconds        gauge   C{end}, C{certificate} (cert, ca-cert),
                                                                    C{path}: the certificate's notAfter
=========================================================== ======= ================================================

A request tunnel adds the metrics of its sites
(L{uhppoted_tunnel.observe.sitemetrics}).

The registry also has C{prometheus_client}'s process collector
(C{process_cpu_seconds_total}, C{process_open_fds}, ...).
"""

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
)
from prometheus_client.process_collector import ProcessCollector

from uhppoted_tunnel.core.counts import PER_SOURCE_LIMIT, RATE_LIMIT
from uhppoted_tunnel.link.lifecycle import CONNECTING, DOWN, FAILED, UP
from uhppoted_tunnel.observe.sitemetrics import site_metrics

PREFIX = "uhppoted_tunnel_"

#: At most this many peers per end get their own series.
MAX_PEER_SERIES = 32

STATES = (UP, DOWN, CONNECTING, FAILED)


def _counter(name, documentation, labels=()):
    return CounterMetricFamily(PREFIX + name, documentation, labels=list(labels))


def _gauge(name, documentation, labels=()):
    return GaugeMetricFamily(PREFIX + name, documentation, labels=list(labels))


class TunnelCollector:
    """
    A custom collector: every family is built from the telemetry's plain
    counts when scraped.
    """

    def __init__(self, telemetry):
        self.telemetry = telemetry

    def describe(self):
        # no fixed description: the registry must not collect at register
        return []

    def collect(self):
        telemetry = self.telemetry
        tallies = telemetry.tallies()
        yield from self._tunnel(telemetry)
        yield from self._traffic(telemetry, tallies)
        yield from self._links(telemetry, tallies)
        if not telemetry.events_tunnel:
            yield from site_metrics(tallies)

    def _tunnel(self, telemetry):
        info = InfoMetricFamily(PREFIX + "build", "The tunnel's version and platform.")
        info.add_metric([], telemetry.build_info())
        yield info
        started = _gauge("start_time_seconds", "When the tunnel started, in seconds since the epoch.")
        started.add_metric([], telemetry.started)
        yield started
        ready = _gauge("ready", "1 when every end of the tunnel is up.")
        ready.add_metric([], 1 if telemetry.ready else 0)
        yield ready

    def _traffic(self, telemetry, tallies):
        router = telemetry.router
        received = telemetry.received()
        forwarded = router.forwarded if router is not None else 0
        dropped = _counter("dropped", "Packets dropped, by end and reason.", ["end", "reason"])
        if router is not None:
            dropped.add_metric(["in", RATE_LIMIT], router.dropped)
            dropped.add_metric(["in", PER_SOURCE_LIMIT], router.source_dropped)
        for role, t in tallies:
            for reason, n in sorted(t.dropped.items()):
                dropped.add_metric([role, reason], n)
        yield dropped
        if telemetry.events_tunnel:
            events = {name: sum(t.events.get(name, 0) for _, t in tallies)
                      for name in ("acknowledged", "deduplicated", "spooled", "buffered")}
            for name, value, documentation in (
                    ("received", received + events["deduplicated"], "Events that reached the in end."),
                    ("forwarded", forwarded, "Events passed to the out end."),
                    ("acknowledged", events["acknowledged"], "Events the peer acknowledged."),
                    ("deduplicated", events["deduplicated"], "Events resent after a reconnect, not forwarded "
                                                              "again."),
                    ("spooled", events["spooled"], "Undelivered events loaded from the spool at start.")):
                family = _counter("events_" + name, documentation)
                family.add_metric([], value)
                yield family
            buffered = _gauge("events_buffered", "Events held for the peer now.")
            buffered.add_metric([], events["buffered"])
            yield buffered
            return
        requests = _counter("requests", "Requests received by the in end, and passed to the out end.", ["end"])
        requests.add_metric(["in"], received)
        requests.add_metric(["out"], forwarded)
        yield requests
        replies = _counter("replies", "Replies sent back through the in end.")
        replies.add_metric([], telemetry.replies)
        yield replies
        timeouts = _counter("timeouts", "Requests no controller answered within --udp-timeout.", ["end"])
        for role, t in tallies:
            timeouts.add_metric([role], t.timeouts)
        yield timeouts
        latency = telemetry.latency
        histogram = HistogramMetricFamily(PREFIX + "reply_latency_seconds",
                                          "From a request received to its reply sent back, in seconds.")
        histogram.add_metric([], latency.buckets(), latency.sum)
        yield histogram

    def _links(self, telemetry, tallies):
        up = _gauge("link_up", "1 when the end is up.", ["end"])
        state = _gauge("link_state", "1 for the end's current state.", ["end", "state"])
        since = _gauge("link_state_since_timestamp_seconds", "When the end's state began.", ["end"])
        ups = _counter("link_ups", "Times the end went up.", ["end"])
        downs = _counter("link_downs", "Times the end went from up to down.", ["end"])
        peers = _gauge("peers", "Connected peers.", ["end"])
        connected = _gauge("peer_connected_timestamp_seconds", "When each peer connected (the {} oldest)."
                           .format(MAX_PEER_SERIES), ["end", "peer"])
        for role, end, link in telemetry.links():
            up.add_metric([role], 1 if link.state == UP else 0)
            for name in STATES:
                state.add_metric([role, name], 1 if link.state == name else 0)
            if link.since is not None:
                since.add_metric([role], link.since)
            ups.add_metric([role], link.ups)
            downs.add_metric([role], link.downs)
            peers.add_metric([role], len(link.peers))
            for address, stamp in list(link.peers.values())[:MAX_PEER_SERIES]:
                if stamp is not None:
                    connected.add_metric([role, address], stamp)
        yield from (up, state, since, ups, downs, peers, connected)
        reconnects = _counter("reconnects", "Dials after the first.", ["end"])
        failures = _counter("tls_handshake_failures", "TLS handshakes that failed, by reason.", ["end", "reason"])
        refused = _counter("connections_refused", "Connections refused by a connection cap.", ["end", "cap"])
        expiry = _gauge("certificate_expiry_timestamp_seconds", "When each certificate in use expires.",
                        ["end", "certificate", "path"])
        for role, t in tallies:
            reconnects.add_metric([role], t.reconnects)
            for reason, n in sorted(t.handshake_failures.items()):
                failures.add_metric([role, reason], n)
            for cap, n in sorted(t.refused.items()):
                refused.add_metric([role, cap], n)
            for flag, path, not_after in t.certificates:
                expiry.add_metric([role, flag.lstrip("-"), path], not_after)
        yield from (reconnects, failures, refused, expiry)


def registry_for(telemetry, process=True):
    """
    A registry of the tunnel's own.

    :param process: add C{prometheus_client}'s process metrics.
    :return: a C{CollectorRegistry}.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(TunnelCollector(telemetry))
    if process:
        ProcessCollector(registry=registry)
    return registry
