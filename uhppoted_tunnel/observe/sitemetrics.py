# -*- test-case-name: tests.unit.test_sitemetrics -*-
"""
The metrics of a host's sites (L{uhppoted_tunnel.core.routes}), read from
the tallies of its ends when scraped, with a bounded label set: the
L{MAX_SITE_SERIES} sites sent the most requests get a series each, labelled
by identity, and the rest are summed under C{site="other"} (so a series
of C{other} may fall when a site joins the top ones).

=========================================================== ======= ================================================
metric                                                      type    labels and meaning
=========================================================== ======= ================================================
uhppoted_tunnel_sites                                       gauge   sites connected to the out end
uhppoted_tunnel_site_requests_total                         counter C{site}: unicast requests routed to it alone
uhppoted_tunnel_site_replies_total                          counter C{site}: replies it sent
uhppoted_tunnel_site_serials                                gauge   C{site}: controller serials routed to it
uhppoted_tunnel_unrouted_requests_total                     counter unicast requests for a serial no site serves
=========================================================== ======= ================================================
"""

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

PREFIX = "uhppoted_tunnel_"

#: At most this many sites get their own series; the rest are C{other}.
MAX_SITE_SERIES = 20

#: The label of the sites summed together.
OTHER = "other"


def site_metrics(tallies, limit=MAX_SITE_SERIES):
    """
    :param tallies: C{[(role, Tally)]} of the tunnel's ends.
    :param limit: sites with a series of their own.
    :return: the metric families.
    """
    sites = [site for _, t in tallies for site in t.sites]
    count = GaugeMetricFamily(PREFIX + "sites", "Sites connected to the out end.")
    count.add_metric([], len(sites))
    yield count
    unrouted = CounterMetricFamily(PREFIX + "unrouted_requests", "Unicast requests for a controller serial no "
                                                                 "site serves.")
    unrouted.add_metric([], sum(t.unrouted for _, t in tallies))
    yield unrouted
    sites.sort(key=lambda site: (-site["requests"], site["identity"], site["address"]))
    rows = {}
    for n, site in enumerate(sites):
        label = site["identity"] if n < limit else OTHER
        row = rows.setdefault(label, [0, 0, 0])
        row[0] += site["requests"]
        row[1] += site["replies"]
        row[2] += len(site["serials"])
    requests = CounterMetricFamily(PREFIX + "site_requests", "Unicast requests routed to the site alone.",
                                   labels=["site"])
    replies = CounterMetricFamily(PREFIX + "site_replies", "Replies the site sent.", labels=["site"])
    serials = GaugeMetricFamily(PREFIX + "site_serials", "Controller serials routed to the site.", labels=["site"])
    for label, (n_requests, n_replies, n_serials) in rows.items():
        requests.add_metric([label], n_requests)
        replies.add_metric([label], n_replies)
        serials.add_metric([label], n_serials)
    yield from (requests, replies, serials)
