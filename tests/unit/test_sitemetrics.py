"""
Tests for L{uhppoted_tunnel.observe.sitemetrics}: per-site metrics with a
bounded label set.
"""

from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.core.counts import Tally
from uhppoted_tunnel.observe.sitemetrics import site_metrics


def site(identity, requests, serials=(1,)):
    return {"identity": identity, "address": identity + ":1", "since": 0.0, "last_seen": 0.0,
            "serials": list(serials), "requests": requests, "replies": requests}


class SiteMetricsTests(SynchronousTestCase):
    def families(self, sites, unrouted=0, limit=2):
        t = Tally()
        t.sites = sites
        t.unrouted = unrouted
        return {family.name: {tuple(sample.labels.values()): sample.value for sample in family.samples}
                for family in site_metrics([("out", t)], limit)}

    def test_bounded(self):
        """
        The sites sent the most requests get a series each; the rest are
        summed under C{other}.
        """
        families = self.families([site("a", 5), site("b", 50, (1, 2)), site("c", 1), site("d", 7)], unrouted=3)
        self.assertEqual(families["uhppoted_tunnel_site_requests"], {("b",): 50, ("d",): 7, ("other",): 6})
        self.assertEqual(families["uhppoted_tunnel_site_serials"], {("b",): 2, ("d",): 1, ("other",): 2})
        self.assertEqual(families["uhppoted_tunnel_sites"], {(): 4})
        self.assertEqual(families["uhppoted_tunnel_unrouted_requests"], {(): 3})

    def test_manySites(self):
        """
        However many sites there are, there are at most the limit + 1 series.
        """
        families = self.families([site(str(n), n) for n in range(10000)], limit=20)
        self.assertEqual(len(families["uhppoted_tunnel_site_requests"]), 21)
