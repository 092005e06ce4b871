# -*- test-case-name: tests.unit.test_metrics -*-
"""
Tests for L{uhppoted_tunnel.observe.metrics} and L{uhppoted_tunnel.observe.monitor}: a
tunnel pair in memory (Twisted's fakes, no sockets), its counts read as
Prometheus reads them, and the four paths answered as an HTTP client sees
them.
"""

import json

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest
from uhppoted import encode

from tests.unit.pairs import SERIALS, TunnelPairMixin, tunnel
from uhppoted_tunnel.app import config
from uhppoted_tunnel.observe.metrics import registry_for
from uhppoted_tunnel.observe.monitor import MonitorSite, site_root
from uhppoted_tunnel.testing import FakeReactor
from uhppoted_tunnel.observe.web import CONTENT_SECURITY_POLICY

UNKNOWN = 123456789


def samples(registry):
    """
    :return: C{{(name, sorted label items): value}} as a scraper parses them.
    """
    text = generate_latest(registry).decode("utf-8")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def render(resource, path, headers=None):
    """
    Render a path of a site root as a GET.

    :return: C{(code, headers, body)}.
    """
    request = DummyRequest(path.lstrip(b"/").split(b"/"))
    for name, value in (headers or {}).items():
        request.requestHeaders.setRawHeaders(name, [value])
    child = resource
    while request.postpath and not child.isLeaf:
        segment = request.postpath.pop(0)
        request.prepath.append(segment)
        child = child.getChildWithDefault(segment, request)
    result = child.render(request)
    if result is not NOT_DONE_YET:
        request.write(result)
        request.finish()
    return request.responseCode or 200, request.responseHeaders, b"".join(request.written)


class PairTests(TunnelPairMixin, SynchronousTestCase):
    """
    host: udp/listen -> tcp/server; site: tcp/client -> udp/broadcast, both
    with C{--metrics}.
    """

    host_args = ["--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:12345",
                 "--metrics", "127.0.0.1:9100"]
    site_args = ["--in", "tcp/client:127.0.0.1:12345", "--out", "udp/broadcast:127.0.0.1:60005",
                 "--udp-timeout", "1s", "--metrics", "127.0.0.1:9101"]

    def tearDown(self):
        stopped = [self.host.stopService(), self.site.stopService()]
        self.relay()
        for d in stopped:
            self.successResultOf(d)
        self.reactor.advance(30)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_countsMatchTraffic(self):
        """
        After 3 answered requests, 2 to a serial nobody answers (which time
        out at the site after --udp-timeout) and an empty datagram, each
        half's counters say so, and the host's latency histogram has the
        3 replies.
        """
        for serial in (SERIALS[0], SERIALS[1], SERIALS[0]):
            self.send(encode.get_controller_request(serial))
        for _ in range(2):
            self.send(encode.get_controller_request(UNKNOWN))
        self.send(b"")
        self.reactor.advance(1.5)
        self.relay()
        self.assertEqual(len(self.app.received), 3)
        host = samples(registry_for(self.host.telemetry, process=False))
        site = samples(registry_for(self.site.telemetry, process=False))
        self.assertEqual(host[("uhppoted_tunnel_requests_total", (("end", "in"),))], 5)
        self.assertEqual(host[("uhppoted_tunnel_requests_total", (("end", "out"),))], 5)
        self.assertEqual(host[("uhppoted_tunnel_replies_total", ())], 3)
        self.assertEqual(host[("uhppoted_tunnel_dropped_total", (("end", "in"), ("reason", "empty")))], 1)
        self.assertEqual(host[("uhppoted_tunnel_reply_latency_seconds_count", ())], 3)
        self.assertEqual(site[("uhppoted_tunnel_requests_total", (("end", "in"),))], 5)
        self.assertEqual(site[("uhppoted_tunnel_replies_total", ())], 3)
        self.assertEqual(site[("uhppoted_tunnel_timeouts_total", (("end", "out"),))], 2)
        self.assertEqual(host[("uhppoted_tunnel_link_up", (("end", "out"),))], 1)
        self.assertEqual(host[("uhppoted_tunnel_peers", (("end", "out"),))], 1)
        self.assertEqual(site[("uhppoted_tunnel_ready", ())], 1)
        self.assertEqual(host[("uhppoted_tunnel_build_info", (("python", host_python(host)),
                                                              ("twisted", host_twisted(host)),
                                                              ("version", "0.1.0")))], 1)
        status = self.site.telemetry.snapshot()
        self.assertEqual(status["totals"], {"requests": 5, "replies": 3, "timeouts": 2, "dropped": 0, "events": 0,
                                            "unrouted": 0})
        self.assertEqual(sorted(c["serial"] for c in status["controllers"]), sorted(SERIALS))
        self.assertEqual({c["address"] for c in status["controllers"]}, {"127.0.0.1:60005"})

    def test_readyFlips(self):
        """
        /readyz on the host is 200 while the site is connected, 503 naming
        the out end once the site stops, and 200 again when a new site
        connects.
        """
        root = site_root(self.host.telemetry)
        code, headers, body = render(root, b"/readyz")
        self.assertEqual((code, json.loads(body)["ready"]), (200, True))
        stopped = self.site.stopService()
        self.relay()
        self.successResultOf(stopped)
        code, headers, body = render(root, b"/readyz")
        self.assertEqual(code, 503)
        self.assertEqual(json.loads(body)["reason"], "out end tcp/server:127.0.0.1:12345 is down")
        self.site = tunnel(self.reactor, "--in", "tcp/client:127.0.0.1:12345", "--out",
                           "udp/broadcast:127.0.0.1:60005")
        self.site.startService()
        self.connect()
        code, headers, body = render(root, b"/readyz")
        self.assertEqual(code, 200)
        host = samples(registry_for(self.host.telemetry, process=False))
        self.assertEqual(host[("uhppoted_tunnel_link_downs_total", (("end", "out"),))], 1)
        self.assertEqual(host[("uhppoted_tunnel_link_ups_total", (("end", "out"),))], 2)

    def test_siteLinkConnecting(self):
        """
        The site's client end is "connecting" while the host is away, and
        counts its redials.
        """
        stopped = self.host.stopService()
        self.relay()
        self.successResultOf(stopped)
        self.reactor.advance(5)
        self.relay()
        status = self.site.telemetry.snapshot()
        self.assertEqual(status["ends"][0]["state"], "connecting")
        self.assertFalse(status["tunnel"]["ready"])
        site = samples(registry_for(self.site.telemetry, process=False))
        self.assertGreaterEqual(site[("uhppoted_tunnel_reconnects_total", (("end", "in"),))], 1)
        self.host = tunnel(self.reactor, "--in", "udp/listen:127.0.0.1:60000", "--out", "tcp/server:127.0.0.1:12345")
        self.host.startService()
        self.reactor.advance(10)
        self.connect()
        self.reactor.advance(1)
        self.assertEqual(self.site.telemetry.snapshot()["ends"][0]["state"], "up")


def host_python(found):
    return next(dict(labels)["python"] for name, labels in found if name == "uhppoted_tunnel_build_info")


def host_twisted(found):
    return next(dict(labels)["twisted"] for name, labels in found if name == "uhppoted_tunnel_build_info")


class SiteTests(SynchronousTestCase):
    """
    The monitoring site's answers, on a tunnel that is not started.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        self.tunnel = tunnel(FakeReactor(), "--in", "udp/listen:127.0.0.1:60000", "--out",
                             "udp/broadcast:127.0.0.1:60005", "--metrics", "127.0.0.1:0")
        self.root = site_root(self.tunnel.telemetry)

    def test_metrics(self):
        """
        /metrics is Prometheus text, or OpenMetrics when asked for.
        """
        code, headers, body = render(self.root, b"/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"text/plain; version=0.0.4"))
        self.assertIn(b"uhppoted_tunnel_requests_total{end=\"in\"} 0.0", body)
        self.assertIn(b"process_", body)
        code, headers, body = render(self.root, b"/metrics",
                                     {b"accept": b"application/openmetrics-text; version=1.0.0"})
        self.assertTrue(headers.getRawHeaders(b"content-type")[0].startswith(b"application/openmetrics-text"))
        self.assertTrue(body.endswith(b"# EOF\n"))

    def test_healthz(self):
        """
        /healthz is 200 "ok" whatever the ends' state.
        """
        self.assertEqual(render(self.root, b"/healthz")[::2], (200, b"ok\n"))

    def test_readyzNotStarted(self):
        """
        /readyz is 503 before the ends listen, naming both.
        """
        code, headers, body = render(self.root, b"/readyz")
        self.assertEqual(code, 503)
        self.assertEqual(json.loads(body)["reason"], "in end udp/listen:127.0.0.1:60000 is down; "
                                                     "out end udp/broadcast:127.0.0.1:60005 is down")

    def test_status(self):
        """
        /status.json is the snapshot, never cached.
        """
        code, headers, body = render(self.root, b"/status.json")
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders(b"cache-control"), [b"no-store"])
        self.assertEqual(json.loads(body)["ends"][1]["connector"], "udp/broadcast:127.0.0.1:60005")

    def test_unknown(self):
        """
        Other paths are 404; / lists the four.
        """
        self.assertEqual(render(self.root, b"/nothing")[0], 404)
        self.assertIn(b"/readyz", render(self.root, b"/")[2])

    def test_page(self):
        """
        A status page mounted on the root gets every other path, as its
        own root would.
        """
        from twisted.web.resource import Resource
        from twisted.web.static import Data

        page = Resource()
        page.putChild(b"", Data(b"page", "text/html"))
        page.putChild(b"app.js", Data(b"script", "text/javascript"))
        root = site_root(self.tunnel.telemetry, page=page)
        self.assertEqual(render(root, b"/")[2], b"page")
        self.assertEqual(render(root, b"/app.js")[2], b"script")
        self.assertEqual(render(root, b"/healthz")[2], b"ok\n")

    def test_securityHeaders(self):
        """
        The --metrics site sets the CSP and the other security headers on
        every answer.
        """
        site = MonitorSite(self.root)
        request = DummyRequest([b"healthz"])
        site.getResourceFor(request)
        self.assertEqual(request.responseHeaders.getRawHeaders(b"content-security-policy"),
                         [CONTENT_SECURITY_POLICY])
        self.assertEqual(request.responseHeaders.getRawHeaders(b"x-frame-options"), [b"DENY"])

    def test_endpointDescription(self):
        """
        --metrics takes a Twisted endpoint description too: a UNIX socket.
        """
        reactor = FakeReactor()
        path = self.mktemp()
        service = tunnel(reactor, "--in", "udp/listen:127.0.0.1:60000", "--out", "udp/broadcast:127.0.0.1:60005",
                         "--metrics", "unix:" + path)
        service.startService()
        self.assertEqual([port[0] for port in reactor.unixServers], [path])
        self.successResultOf(service.monitor.whenListening())
        service.stopService()

    def test_badAddress(self):
        """
        An unusable --metrics address is a one-line error naming the flag.
        """
        error = self.assertRaises(ValueError, tunnel, FakeReactor(), "--in", "udp/listen:127.0.0.1:60000",
                                  "--out", "udp/broadcast:127.0.0.1:60005", "--metrics", "127.0.0.1:x")
        self.assertTrue(str(error).startswith("--metrics: "), str(error))


class SecureEndTests(SynchronousTestCase):
    """
    What a tls/ end adds to its tally.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def test_certificatesAndHandshakes(self):
        """
        A tls/server end reports when its certificate and CA expire, and
        the failed handshakes its endpoint counted by reason.
        """
        from tests import certs

        files = certs.make(self.mktemp())
        service = tunnel(FakeReactor(), "--in", "tls/server:127.0.0.1:0", "--out", "udp/broadcast:127.0.0.1:60005",
                         "--ca-cert", files["ca"][0], "--cert", files["server"][0], "--key", files["server"][1])
        end = service.in_
        end.endpoint.handshake_failures.update({"timeout": 2, "certificate": 1})
        found = samples(registry_for(service.telemetry, process=False))
        self.assertEqual(found[("uhppoted_tunnel_tls_handshake_failures_total",
                                (("end", "in"), ("reason", "timeout")))], 2)
        expiry = {dict(labels)["certificate"]: value for (name, labels), value in found.items()
                  if name == "uhppoted_tunnel_certificate_expiry_timestamp_seconds"}
        self.assertEqual(sorted(expiry), ["ca-cert", "cert"])
        self.assertGreater(expiry["cert"], service.telemetry.started)

    def test_handshakesCounted(self):
        """
        The handshake gates of every connection count into one table:
        timeouts, TLS refusals by kind, and peers that left first.
        """
        from twisted.internet.task import Clock

        from uhppoted_tunnel.transports.tls.handshake import HandshakeFailed, HandshakeGateFactory

        failures = {}
        for _ in range(2):
            gates = HandshakeGateFactory(None, Clock(), 1.0, "TLS", "hint", failures=failures)
            gates.timedOut("127.0.0.1:1")
        gates.refused("127.0.0.1:1", HandshakeFailed("certificate verify failed"), True)
        gates.refused("127.0.0.1:1", HandshakeFailed("connection lost"), False)
        self.assertEqual(failures, {"timeout": 2, "certificate": 1, "closed": 1})

    def test_handshakeKinds(self):
        """
        OpenSSL's reasons fall in a few kinds, so the label stays bounded.
        """
        from uhppoted_tunnel.transports.tls.handshake import failure_kind

        self.assertEqual(failure_kind("certificate verify failed"), "certificate")
        self.assertEqual(failure_kind("tlsv1 alert unknown ca"), "certificate")
        self.assertEqual(failure_kind("wrong version number"), "protocol")
        self.assertEqual(failure_kind("http request"), "protocol")
        self.assertEqual(failure_kind("something new"), "other")


class CapsTests(SynchronousTestCase):
    def test_refusedThroughTLS(self):
        """
        Connections refused by the caps are found under the TLS wrapper of
        a server end, by cap.
        """
        from tests import certs

        self.patch(config, "DEFAULT_CONFIG", self.mktemp())
        files = certs.make(self.mktemp())
        service = tunnel(FakeReactor(), "--in", "tls/server:127.0.0.1:0", "--out", "udp/broadcast:127.0.0.1:60005",
                         "--ca-cert", files["ca"][0], "--cert", files["server"][0], "--key", files["server"][1],
                         "--max-connections-per-source", "1")
        service.startService()
        limited = service.in_.endpoint.endpoint
        self.assertIsNotNone(limited.factory)
        limited.factory.limits.refused["max-connections-per-source"] += 3
        found = samples(registry_for(service.telemetry, process=False))
        self.assertEqual(found[("uhppoted_tunnel_connections_refused_total",
                                (("cap", "max-connections-per-source"), ("end", "in")))], 3)
        service.stopService()


class EveryKindTests(SynchronousTestCase):
    """
    Every connector kind, in each role it plays, can be scraped and has a
    link state.
    """

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def test_scrape(self):
        """
        Each pair of ends gives a registry that collects without error,
        with a link state for both ends, before and after they start.
        """
        pairs = [
            ("udp/listen:127.0.0.1:0", "ip/out:127.0.0.1:60005"),
            ("http/127.0.0.1:0", "tcp/client:127.0.0.1:1"),
            ("udp/event:127.0.0.1:0", "tcp/server:127.0.0.1:0"),
            ("tcp/client:127.0.0.1:1", "udp/event:127.0.0.1:60005"),
            ("udp/listen:127.0.0.1:0", "ws/server:127.0.0.1:0/tunnel"),
            ("ws/client:127.0.0.1:1/tunnel", "udp/broadcast:127.0.0.1:60005"),
        ]
        for in_, out in pairs:
            reactor = FakeReactor()
            service = tunnel(reactor, "--in", in_, "--out", out, "--event-spool", self.mktemp(),
                             "--metrics", "127.0.0.1:0")
            for started in (False, True):
                if started:
                    service.startService()
                found = samples(registry_for(service.telemetry, process=False))
                states = {dict(labels)["end"] for (name, labels), value in found.items()
                          if name == "uhppoted_tunnel_link_up"}
                self.assertEqual(states, {"in", "out"}, (in_, out))
            stopped = service.stopService()
            reactor.advance(30)
            self.successResultOf(stopped)


class LinkKindTests(SynchronousTestCase):
    """
    Every end that has peers says so in its link state: a server end is up
    only while a peer is connected, a client end is connecting until its
    link is ready (what /readyz and the status page report).
    """

    def test_kinds(self):
        from uhppoted_tunnel.link import ends as stream
        from uhppoted_tunnel.link.lifecycle import CLIENT, SERVER, LinkState

        # every transport's ends are these (zmq's: tests.unit.test_zmq)
        for end, kind in [(stream.ServerEnd, SERVER), (stream.ClientEnd, CLIENT)]:
            self.assertEqual(end.link_kind, kind, end)
            link = LinkState(end.link_kind, None)
            link.start()
            self.assertEqual(link.state, "down" if kind == SERVER else "connecting", end)
