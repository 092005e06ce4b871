# -*- test-case-name: tests.loopback.test_metrics -*-
"""
Metrics, health and status end to end: real C{uhppoted-tunnel} halves on
127.0.0.1 with C{--metrics 127.0.0.1:0} (the port read back from the log
line that reports it), the controller emulator, and the test scraping
C{/metrics}, C{/readyz} and C{/status.json} as Prometheus and a load
balancer would. Nothing sleeps: each check is polled until it holds, with
a generous deadline.
"""

import datetime
import json
import socket
import struct
from io import BytesIO

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from tests.loopback.processes import (
    DEADLINE,
    LOOPBACK,
    Client,
    connected_line,
    emulator_sent_line,
    listening_line,
    run_tunnel,
    start_emulator,
    start_event_emulator,
    stop,
)
from tests.loopback.eventpairs import COUNT, A, EventTunnels, stream_connected, stream_listening
from uhppoted_tunnel.testing import NOT_YET

B = 303986753
#: A serial no emulated controller answers.
NOBODY = 123456789

#: The line the --metrics service logs once it listens (group 1: the port).
METRICS_LINE = r"METRIC\s+metrics, health and status on http://127\.0\.0\.1:(\d+)/"


def get_controller(serial):
    packet = bytearray(64)
    packet[0], packet[1] = 0x17, 0x94
    struct.pack_into("<I", packet, 4, serial)
    return bytes(packet)


@inlineCallbacks
def fetch(port, path):
    """
    GET a path of a tunnel's metrics port (a new connection each time).

    :return: a Deferred firing with C{(code, body)}.
    """
    response = yield Agent(reactor).request(b"GET", "http://127.0.0.1:{}{}".format(port, path).encode("ascii"))
    body = yield readBody(response)
    return response.code, body


@inlineCallbacks
def scrape(port):
    """
    :return: a Deferred firing with C{{(name, ((label, value), ...)): value}}.
    """
    code, body = yield fetch(port, "/metrics")
    assert code == 200, code
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body.decode("utf-8")) for sample in family.samples}


@inlineCallbacks
def until(check, describe, timeout=DEADLINE, interval=0.1):
    """
    Poll: call C{check()} (returning a Deferred of a value or L{NOT_YET})
    every C{interval} seconds until it gives a value.

    :return: a Deferred firing with the value, or failing after C{timeout}.
    """
    deadline = reactor.seconds() + timeout
    while True:
        result = yield check()
        if result is not NOT_YET:
            return result
        if reactor.seconds() > deadline:
            raise AssertionError("{} within {}s".format(describe(), timeout))
        yield deferLater(reactor, interval, lambda: None)


def metric(name, **labels):
    return (name, tuple(sorted(labels.items())))


class RequestTunnelTests(TestCase):
    """
    A forward pair, host udp/listen -> tcp/server and site tcp/client ->
    udp/broadcast, both with --metrics.
    """

    timeout = 120

    @inlineCallbacks
    def pair(self, *host_flags):
        self.emulator, self.emulator_port = yield start_emulator(self, A, B)
        self.host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0",
                               "--metrics", "127.0.0.1:0", *host_flags)
        self.udp_port = int((yield self.host.waitFor(listening_line("UDP"))).group(1))
        self.tcp_port = int((yield self.host.waitFor(listening_line("TCP"))).group(1))
        self.host_metrics = int((yield self.host.waitFor(METRICS_LINE)).group(1))
        self.site = self.start_site()
        self.site_metrics = int((yield self.site.waitFor(METRICS_LINE)).group(1))
        yield self.site.waitFor(connected_line(self.tcp_port))
        yield self.host.waitFor(connected_line())

    def start_site(self, name="site"):
        return run_tunnel(self, name, "--in", "tcp/client:127.0.0.1:{}".format(self.tcp_port), "--out",
                          "udp/broadcast:127.0.0.1:{}".format(self.emulator_port), "--udp-timeout", "1s",
                          "--metrics", "127.0.0.1:0")

    def send(self, packets):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((LOOPBACK, 0))
            for packet in packets:
                s.sendto(packet, (LOOPBACK, self.udp_port))

    @inlineCallbacks
    def test_countersMatchTraffic(self):
        """
        After 3 answered requests, 2 to a serial nobody answers, an empty
        datagram and a burst of 30 over the limit per sender, the host's
        and the site's counters say exactly that: requests in and out,
        replies, drops by reason, and (at the site, once --udp-timeout has
        passed) a timeout for every request nobody answered.
        """
        yield self.pair("--rate-limit-per-source", "1", "--rate-limit-per-source-burst", "10")
        client = Client(self.udp_port)
        for serial in (A, B, A):
            reply = yield client.get_controller(serial)
            self.assertEqual(reply.controller, serial)
        self.send([get_controller(NOBODY)] * 2 + [b""] + [get_controller(NOBODY)] * 30)

        def settled():
            def check(found):
                host, site = found
                received = host.get(metric("uhppoted_tunnel_requests_total", end="in"))
                forwarded = host.get(metric("uhppoted_tunnel_requests_total", end="out"))
                if received != 35 or site.get(metric("uhppoted_tunnel_requests_total", end="in")) != forwarded:
                    return NOT_YET
                if site.get(metric("uhppoted_tunnel_timeouts_total", end="out")) != forwarded - 3:
                    return NOT_YET
                return host, site

            return scrape(self.host_metrics).addCallback(
                lambda host: scrape(self.site_metrics).addCallback(lambda site: check((host, site))))

        host, site = yield until(settled, lambda: "no settled counters")
        forwarded = host[metric("uhppoted_tunnel_requests_total", end="out")]
        limited = host[metric("uhppoted_tunnel_dropped_total", end="in", reason="per_source_limit")]
        self.assertEqual(forwarded + limited, 35)
        self.assertGreaterEqual(limited, 20)
        self.assertEqual(host[metric("uhppoted_tunnel_dropped_total", end="in", reason="empty")], 1)
        self.assertEqual(host[metric("uhppoted_tunnel_replies_total")], 3)
        self.assertEqual(site[metric("uhppoted_tunnel_replies_total")], 3)
        self.assertEqual(host[metric("uhppoted_tunnel_reply_latency_seconds_count")], 3)
        self.assertEqual(host[metric("uhppoted_tunnel_link_up", end="out")], 1)
        self.assertEqual(host[metric("uhppoted_tunnel_peers", end="out")], 1)
        code, body = yield fetch(self.site_metrics, "/status.json")
        status = json.loads(body)
        self.assertEqual(status["totals"]["replies"], 3)
        self.assertEqual(status["totals"]["timeouts"], forwarded - 3)
        self.assertEqual({c["serial"] for c in status["controllers"]}, {A, B})
        self.assertEqual({c["address"] for c in status["controllers"]},
                         {"127.0.0.1:{}".format(self.emulator_port)})
        code, body = yield fetch(self.host_metrics, "/healthz")
        self.assertEqual((code, body), (200, b"ok\n"))

    @inlineCallbacks
    def test_readyzFollowsTheLink(self):
        """
        The host's /readyz is 200 while the site is connected, 503 naming
        the out end once the site stops, and 200 again when it is back;
        the site's is 503 while its host is away.
        """
        yield self.pair()
        code, body = yield fetch(self.host_metrics, "/readyz")
        self.assertEqual((code, json.loads(body)["ready"]), (200, True))
        code = yield stop(self.site)
        self.assertEqual(code, 0)

        def down():
            return fetch(self.host_metrics, "/readyz").addCallback(
                lambda result: result if result[0] == 503 else NOT_YET)

        code, body = yield until(down, lambda: "/readyz never 503")
        self.assertEqual(json.loads(body)["reason"], "out end tcp/server:127.0.0.1:0 is down")

        site = self.start_site("site2")
        yield site.waitFor(connected_line(self.tcp_port))

        def up():
            return fetch(self.host_metrics, "/readyz").addCallback(lambda result: result if result[0] == 200 else NOT_YET)

        yield until(up, lambda: "/readyz never 200 again")
        found = yield scrape(self.host_metrics)
        self.assertEqual(found[metric("uhppoted_tunnel_link_downs_total", end="out")], 1)


class EventTunnelTests(EventTunnels, TestCase):
    """
    An event tunnel, site udp/event -> tcp/client, host tcp/server ->
    udp/event, both with --metrics.
    """

    @inlineCallbacks
    def test_eventCounters(self):
        """
        Every event the emulator pushes is counted received and forwarded
        at the site and at the host, and acknowledged at the site; the
        host's status lists the last 20, newest first, and the controller.
        """
        host = self.host("tcp/server:127.0.0.1:0", "--metrics", "127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        host_metrics = int((yield host.waitFor(METRICS_LINE)).group(1))
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port), "--metrics", "127.0.0.1:0")
        site_metrics = int((yield site.waitFor(METRICS_LINE)).group(1))
        yield site.waitFor(stream_connected("tcp", stream_port))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, serials=[A])
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield self.events.waitForCount(COUNT)

        def settled():
            def check(found):
                host_found, site_found = found
                acknowledged = site_found.get(metric("uhppoted_tunnel_events_acknowledged_total"))
                return found if acknowledged == COUNT else NOT_YET

            return scrape(host_metrics).addCallback(
                lambda h: scrape(site_metrics).addCallback(lambda s: check((h, s))))

        host_found, site_found = yield until(settled, lambda: "not every event acknowledged")
        for found in (host_found, site_found):
            self.assertEqual(found[metric("uhppoted_tunnel_events_received_total")], COUNT)
            self.assertEqual(found[metric("uhppoted_tunnel_events_forwarded_total")], COUNT)
        self.assertEqual(site_found[metric("uhppoted_tunnel_events_buffered")], 0)
        self.assertEqual(host_found[metric("uhppoted_tunnel_events_deduplicated_total")], 0)
        code, body = yield fetch(host_metrics, "/status.json")
        status = json.loads(body)
        self.assertEqual([event["index"] for event in status["events"]], list(range(COUNT, COUNT - 20, -1)))
        self.assertEqual(status["events"][0]["serial"], A)
        self.assertEqual(status["controllers"][0]["serial"], A)
        self.assertEqual(status["totals"]["events"], COUNT)
        code, body = yield fetch(site_metrics, "/status.json")
        self.assertEqual(json.loads(body)["controllers"][0]["address"][:10], "127.0.0.1:")


class JSONLogTests(TestCase):
    """
    C{--log-format json} on a real process.
    """

    timeout = 60

    @inlineCallbacks
    def test_everyLineIsJSON(self):
        """
        Every line a tunnel writes to stdout, from start to a clean stop,
        is one JSON object with the time, level, tag and message.
        """
        half = run_tunnel(self, "half", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0",
                          "--log-format", "json")
        yield half.waitFor(r'"message": "listening on 127\.0\.0\.1:\d+"')
        code = yield stop(half)
        self.assertEqual(code, 0)
        lines = [text for fd, text in half.lines if fd == 1]
        self.assertGreaterEqual(len(lines), 4)
        records = [json.loads(line) for line in lines]
        for record in records:
            self.assertEqual(sorted(set(record) & {"time", "level", "namespace", "tag", "message"}),
                             ["level", "message", "namespace", "tag", "time"])
            datetime.datetime.fromisoformat(record["time"])
        self.assertIn("stopping", [record["message"] for record in records])


class HTTPEndTests(TestCase):
    """
    An http/ end serves the same four paths beside its API.
    """

    timeout = 60

    @inlineCallbacks
    def test_fourPaths(self):
        """
        On an http/ in end: /healthz, /readyz (200: both ends listen),
        /status.json and /metrics, which counts a request posted to
        /udp/send and its reply.
        """
        emulator, emulator_port = yield start_emulator(self, A)
        half = run_tunnel(self, "half", "--in", "http/127.0.0.1:0", "--out",
                          "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s")
        port = int((yield half.waitFor(r"HTTP\s+listening on 127\.0\.0\.1:(\d+)")).group(1))
        self.assertEqual((yield fetch(port, "/healthz")), (200, b"ok\n"))
        code, body = yield fetch(port, "/readyz")
        self.assertEqual((code, json.loads(body)["ready"]), (200, True))
        body = json.dumps({"ID": 1, "request": list(get_controller(A))}).encode()
        response = yield Agent(reactor).request(b"POST", "http://127.0.0.1:{}/udp/send".format(port).encode(),
                                                Headers({b"content-type": [b"application/json"]}),
                                                FileBodyProducer(BytesIO(body)))
        answer = json.loads((yield readBody(response)))
        self.assertEqual(answer["reply"][4:8], list(get_controller(A)[4:8]))
        found = yield scrape(port)
        self.assertEqual(found[metric("uhppoted_tunnel_requests_total", end="in")], 1)
        self.assertEqual(found[metric("uhppoted_tunnel_replies_total")], 1)
        code, body = yield fetch(port, "/status.json")
        self.assertEqual(json.loads(body)["ends"][0]["connector"], "http/127.0.0.1:0")
