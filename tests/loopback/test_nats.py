# -*- test-case-name: tests.loopback.test_nats -*-
"""
The nats/ ends end to end: a real three-node NATS cluster with JetStream
(L{tests.loopback.natscluster}), real C{uhppoted-tunnel} halves, the
controller emulator and the C{uhppoted} client. Nothing sleeps: each step
waits, with a deadline, for a log line, a healthy node, an exit, a reply
or an event.
"""

import socket

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.eventpairs import COUNT, EventTunnels
from tests.loopback.eventpairs import A as EVENT_CONTROLLER
from tests.loopback.natscluster import Cluster
from tests.loopback.pairs import A, B
from tests.loopback.processes import (
    LOOPBACK,
    Client,
    WaitTimeout,
    run_tunnel,
    start_emulator,
    start_event_emulator,
    start_host,
    start_site,
    stop,
)

#: the subject prefix of every test
PREFIX = "uhppoted.tunnel"


def connected(node=None):
    return r"\bNATS\s+connected to 127\.0\.0\.1:" + (r"\d+" if node is None else str(node.port)) + r"\s*$"


def serving(serial):
    return r"\bNATS\s+serving controller {}\s*$".format(serial)


RETRYING = r"WARN\s+NATS\s+could not connect to 127\.0\.0\.1:\d+ \(the server refused this end's credentials"


class NATSRequestTests(TestCase):
    """
    Two sites on two nodes and a host on the third.
    """

    timeout = 180

    @inlineCallbacks
    def setUp(self):
        self.cluster = Cluster(self)
        yield self.cluster.start()
        self.creds = ["--nats-credentials", self.cluster.seeds["good"]]

    @inlineCallbacks
    def start_site(self, node, serial, name):
        emulator, port = yield start_emulator(self, serial)
        site = start_site(self, "nats/client:" + node.address, port, *self.creds, name=name)
        yield site.waitFor(connected(node))
        return site

    @inlineCallbacks
    def answered(self, client, serial, within):
        """
        Ask controller C{serial} for its time until it answers, for at most
        C{within} seconds.
        """
        deadline = reactor.seconds() + within
        while True:
            try:
                reply = yield client.get_time(serial, timeout=1.0)
                self.assertEqual(reply.controller, serial)
                return reactor.seconds()
            except OSError:
                if reactor.seconds() > deadline:
                    raise AssertionError("controller {} not answered within {}s".format(serial, within))

    @inlineCallbacks
    def test_routing(self):
        """
        Discovery finds both sites' controllers; every unicast is answered;
        each site subscribes to its own controller's requests and never to
        the other's; a second host is answered at the same time; after the node a site is connected to is killed, the
        site fails over and its controller is answered again within 20 s.
        """
        first, second, third = self.cluster.nodes
        site_a = yield self.start_site(first, A, "site-a")
        site_b = yield self.start_site(second, B, "site-b")
        host, port = yield start_host(self, "nats/client:" + third.address, *self.creds)
        yield host.waitFor(connected(third))
        client = Client(port)
        replies = yield client.get_all_controllers()
        self.assertEqual(sorted(reply.controller for reply in replies), sorted([A, B]))
        yield site_a.waitFor(serving(A))
        yield site_b.waitFor(serving(B))
        for _ in range(5):
            for serial in (A, B):
                reply = yield client.get_controller(serial)
                self.assertEqual(reply.controller, serial)
        # what each node's sites subscribe to: a site hears broadcasts and
        # its own controller's requests, and nothing of the other's
        for node, mine, theirs in ((first, A, B), (second, B, A)):
            subscriptions = [subjects for subjects in (yield self.cluster.subscriptions(node))
                             if PREFIX + ".broadcast" in subjects]
            self.assertEqual(subscriptions, [{PREFIX + ".broadcast", "{}.request.{}".format(PREFIX, mine)}])
        self.assertNotRegex(site_a.output(), serving(B))
        self.assertNotRegex(site_b.output(), serving(A))
        # a second host, on another node, serves its own application at
        # the same time: each gets its own replies
        other, other_port = yield start_host(self, "nats/client:" + second.address, *self.creds, name="host-2")
        yield other.waitFor(connected(second))
        other_client = Client(other_port)
        replies = yield gatherResults([client.get_controller(A), other_client.get_controller(B),
                                       client.get_controller(B), other_client.get_controller(A)])
        self.assertEqual([reply.controller for reply in replies], [A, B, B, A])
        yield stop(other, "TERM")
        # fail over: site A's node dies
        yield self.cluster.kill(first)
        killed = reactor.seconds()
        answered = yield self.answered(client, A, 20)
        self.assertLess(answered - killed, 20)
        reply = yield client.get_controller(B)
        self.assertEqual(reply.controller, B)

    @inlineCallbacks
    def test_wrongCredentials(self):
        """
        A half whose credentials the cluster refuses warns once per attempt,
        backs off 5 s, and with --max-retries 1 ends with exit 1.
        """
        site = run_tunnel(self, "rogue", "--in", "nats/client:" + self.cluster.nodes[0].address, "--out",
                          "udp/broadcast:127.0.0.1:9", "--nats-credentials", self.cluster.seeds["rogue"],
                          "--max-retries", "1")
        code = yield site.exited(timeout=30)
        self.assertEqual(code, 1, site.recent())
        lines = site.output().splitlines()
        warnings = [line for line in lines if "WARN" in line and "NATS" in line]
        self.assertEqual(len(warnings), 1, site.recent())
        self.assertRegex(warnings[0], RETRYING + r".*retrying in 5s")
        self.assertTrue([line for line in lines if "ERROR" in line and "after 2 attempt(s)" in line], site.recent())


class ClusterStartTests(TestCase):
    """
    The test cluster itself (L{tests.loopback.natscluster}).
    """

    timeout = 180

    @inlineCallbacks
    def test_portTaken(self):
        """
        A node that finds one of its ports taken (by another test's process,
        between the cluster's choice and the node's bind) does not fail the
        test: the cluster starts again on new ports, and every node is
        healthy.
        """
        cluster = Cluster(self)
        taken = cluster.nodes[1].monitor
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(holder.close)
        holder.bind((LOOPBACK, taken))
        holder.listen(1)
        yield cluster.start()
        self.assertNotEqual(cluster.nodes[1].monitor, taken)
        self.assertTrue(all(node.running for node in cluster.nodes))
        ports = [port for node in cluster.nodes for port in (node.port, node.monitor, node.cluster)]
        self.assertEqual(len(set(ports)), len(ports))


class NATSEventTests(EventTunnels, TestCase):
    """
    Events from a site on one node to a host on another, through the
    cluster's replicated JetStream stream.
    """

    timeout = 240

    @inlineCallbacks
    def setUp(self):
        EventTunnels.setUp(self)
        self.cluster = Cluster(self)
        yield self.cluster.start()
        self.creds = ["--nats-credentials", self.cluster.seeds["good"]]

    @inlineCallbacks
    def told(self, waiting, *children):
        """
        Wait; if the wait fails, say what the children said last.
        """
        try:
            result = yield waiting
        except WaitTimeout as e:
            raise AssertionError("\n".join([str(e)] + [child.recent() for child in children])) from None
        return result

    def start_host(self, node):
        return self.host("nats/event/client:" + node.address, "--event-spool", self.spool("host"), *self.creds)

    @inlineCallbacks
    def test_events(self):
        """
        200 events cross once each and in order across the kill of the
        site's node and a restart of the host half.
        """
        first, second, third = self.cluster.nodes
        site = self.site(0, "nats/event/client:" + first.address, "--event-spool", self.spool("site"), *self.creds)
        site_port = yield self.site_port(site)
        yield site.waitFor(connected(first))
        host = self.start_host(second)
        yield host.waitFor(connected(second))
        yield start_event_emulator(self, site_port, COUNT, interval="40ms", serials=[EVENT_CONTROLLER])
        yield self.events.waitForCount(50)
        yield self.cluster.kill(first)
        yield self.told(self.events.waitForCount(100), site, host)
        code = yield stop(host, "TERM")
        self.assertEqual(code, 0, host.recent())
        host = self.start_host(third)
        yield host.waitFor(connected(third))
        yield self.told(self.events.waitFor(lambda keys: len([k for k in keys if k[0] == EVENT_CONTROLLER]) >= COUNT,
                                            "{} events".format(COUNT), timeout=90), site, host)
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, COUNT + 1))

    @inlineCallbacks
    def test_hostKilled(self):
        """
        A host killed (SIGKILL) while it holds an event it has not
        acknowledged: the next host gets that event again before any later
        one: 200 events, in order, none lost. The host's spool of events
        forwarded keeps one from being forwarded twice unless the kill
        falls between the datagram sent and the spool written (the shared
        event relay forwards, then records): at most that one event twice,
        in a row.
        """
        first, second, third = self.cluster.nodes
        site = self.site(0, "nats/event/client:" + first.address, "--event-spool", self.spool("site"), *self.creds)
        site_port = yield self.site_port(site)
        yield site.waitFor(connected(first))
        host = self.start_host(second)
        yield host.waitFor(connected(second))
        yield start_event_emulator(self, site_port, COUNT, interval="20ms", serials=[EVENT_CONTROLLER])
        yield self.events.waitForCount(60)
        host.send_signal("KILL")
        yield host.ended
        host = self.start_host(third)
        yield host.waitFor(connected(third))
        yield self.told(self.events.waitFor(lambda keys: len([k for k in keys if k[0] == EVENT_CONTROLLER]) >= COUNT,
                                            "{} events".format(COUNT), timeout=90), site, host)
        yield self.finish(site_port)
        seen = self.events.of(EVENT_CONTROLLER)
        once = [index for i, index in enumerate(seen) if i == 0 or seen[i - 1] != index]
        self.assertEqual(once, list(range(1, COUNT + 1)))
        self.assertLessEqual(len(seen) - len(once), 1, seen)
