"""
Routing on real loopback sockets: one host half (udp/listen -> a stream
server end), many fake Go-format sites (L{tests.loopback.gosites}) in this
process, the C{uhppoted} client as the application. A unicast request
reaches only the site that serves its controller.
"""

import os

from twisted.internet import reactor
from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.trial.unittest import TestCase

from tests import certs
from tests.loopback.gosites import dial
from tests.loopback.processes import (
    Client,
    listening_line,
    retry,
    start_emulator,
    start_host,
    start_site,
    wait_for_lines,
    workdir,
)

A = 405419896
B = 303986753


class RoutingTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def host(self, *flags, out="tcp/server:127.0.0.1:0", tag="TCP"):
        host, udp_port = yield start_host(self, out, *flags)
        if tag == "TCP":
            match = yield host.waitFor(listening_line("TCP"))
        else:
            match = yield host.waitFor(tag + r"\s+listening on 127\.0\.0\.1:(\d+)\s*$")
        self.client = Client(udp_port)
        return host, int(match.group(1))

    def sites(self, port, serials, **kwargs):
        return gatherResults([dial(reactor, port, serial, **kwargs) for serial in serials])

    @inlineCallbacks
    def test_manySites(self):
        """
        With 50 Go-format sites, one broadcast finds every controller, and
        no unicast request frame reaches a site that does not serve its
        serial.
        """
        host, port = yield self.host()
        serials = list(range(1000001, 1000051))
        sites = yield self.sites(port, serials)
        self.addCleanup(lambda: gatherResults([site.close() for site in sites]))
        replies = yield retry(lambda: self.client.get_all_controllers(timeout=2.0),
                              accept=lambda replies: len(replies) == len(serials))
        self.assertEqual(sorted(reply.controller for reply in replies), serials)
        for serial in serials[::3] + serials[::7]:
            reply = yield self.client.get_controller(serial)
            self.assertEqual(reply.controller, serial)
        self.assertEqual([site.misrouted for site in sites], [0] * len(sites))
        self.assertEqual(sum(site.received - site.broadcasts for site in sites), len(serials[::3] + serials[::7]))

    @inlineCallbacks
    def test_moves(self):
        """
        A serial whose site closes and which another site then answers is
        routed to that site.
        """
        host, port = yield self.host()
        [a, other] = yield self.sites(port, [A, B])
        reply = yield retry(lambda: self.client.get_controller(A))
        self.assertEqual(reply.controller, A)
        yield a.close()
        [b] = yield self.sites(port, [A])
        self.addCleanup(lambda: gatherResults([site.close() for site in (b, other)]))
        yield retry(lambda: self.client.get_controller(A))
        before = (b.received, other.received)
        for _ in range(3):
            reply = yield self.client.get_controller(A)
            self.assertEqual(reply.controller, A)
        self.assertEqual((b.received, other.received), (before[0] + 3, before[1]))

    @inlineCallbacks
    def test_goSiteStatic(self):
        """
        A Go-format site (no session frame, no certificate) is routed
        statically by its host, like any other: a request for its
        controller reaches it before any reply, and no other site.
        """
        path = os.path.join(workdir(self), "routes.toml")
        with open(path, "w") as f:
            f.write('[host.routes]\n"127.0.0.1" = [%d]\n' % A)
        host, port = yield self.host("--config", path + "#host")
        [go] = yield self.sites(port, [A])
        self.addCleanup(go.close)
        reply = yield retry(lambda: self.client.get_controller(A))
        self.assertEqual(reply.controller, A)
        self.assertEqual(go.misrouted, 0)

    @inlineCallbacks
    def test_rogueSite(self):
        """
        With --client-auth and static routes, a second site with a valid
        certificate answering a broadcast with a forged serial has that
        reply refused and warned of, and never receives that serial's later
        requests.
        """
        directory = os.path.join(workdir(self), "certs")
        files = certs.make(directory, clients=("site-a", "site-b"))
        path = os.path.join(workdir(self), "routes.toml")
        with open(path, "w") as f:
            f.write('[host.routes]\n"CN=site-a" = [%d]\n"CN=site-b" = [%d]\n' % (A, B))
        host, port = yield self.host(
            "--config", path + "#host", "--client-auth", "--ca-cert", files["ca"][0], "--cert", files["server"][0],
            "--key", files["server"][1], out="tls/server:127.0.0.1:0", tag="TLS")

        def tls(name):
            with open(files["ca"][0]) as f:
                ca = Certificate.loadPEM(f.read())
            with open(files[name][0]) as f, open(files[name][1]) as g:
                mine = PrivateCertificate.loadPEM(f.read() + g.read())
            return optionsForClientTLS("localhost", trustRoot=ca, clientCertificate=mine)

        site = yield dial(reactor, port, A, tls=tls("site-a"))
        rogue = yield dial(reactor, port, B, forged=A, tls=tls("site-b"))
        self.addCleanup(lambda: gatherResults([s.close() for s in (site, rogue)]))
        replies = yield retry(lambda: self.client.get_all_controllers(timeout=2.0),
                              accept=lambda replies: replies and rogue.broadcasts)
        self.assertEqual([reply.controller for reply in replies], [A])
        yield host.waitFor(r"refused a reply for controller {} from CN=site-b at 127\.0\.0\.1:\d+".format(A))
        received = rogue.received
        for _ in range(3):
            reply = yield self.client.get_controller(A)
            self.assertEqual(reply.controller, A)
        self.assertEqual(rogue.received, received)

    @inlineCallbacks
    def test_grpcsIdentity(self):
        """
        A grpcs/ site with a client certificate is known by its subject:
        with --client-auth and static routes, its controller's replies are
        let through, and another site's forged claim is refused and warned
        of, naming its subject.
        """
        directory = os.path.join(workdir(self), "certs")
        files = certs.make(directory, clients=("site-a", "site-b"))
        path = os.path.join(workdir(self), "routes.toml")
        with open(path, "w") as f:
            f.write('[host.routes]\n"CN=site-a" = [%d]\n"CN=site-b" = [%d]\n' % (A, B))
        host, port = yield self.host(
            "--config", path + "#host", "--client-auth", "--ca-cert", files["ca"][0], "--cert", files["server"][0],
            "--key", files["server"][1], out="grpcs/server:127.0.0.1:0", tag="GRPCS")
        for name, serial in (("site-a", A), ("site-b", A)):
            emulator, emulator_port = yield start_emulator(self, serial)
            start_site(self, "grpcs/client:127.0.0.1:{}".format(port), emulator_port, "--ca-cert", files["ca"][0],
                       "--cert", files[name][0], "--key", files[name][1], name=name)
        yield wait_for_lines(host, r"GRPCS\s+connected to 127\.0\.0\.1:\d+", 2)
        reply = yield retry(lambda: self.client.get_controller(A))
        self.assertEqual(reply.controller, A)
        replies = yield self.client.get_all_controllers(timeout=1.0)
        self.assertEqual([reply.controller for reply in replies], [A])
        yield host.waitFor(r"refused a reply for controller {} from CN=site-b at 127\.0\.0\.1:\d+".format(A))
