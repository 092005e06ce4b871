# -*- test-case-name: tests.loopback.test_sshproxy -*-
"""
Client ends through a real SSH server: Debian's C{sshd}, started by each
test on 127.0.0.1 with its own configuration, host key and
C{authorized_keys} (L{tests.loopback.sshd}), between real tunnel
processes (a site reaching its host, which listens on loopback only, by
the server's port forwarding), the controller emulator and the
C{uhppoted} client.
"""

import datetime
import os
import re

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests import certs
from tests.loopback.eventpairs import A as EVENTS_FROM, COUNT, EventTunnels, stream_connected, stream_listening
from tests.loopback.processes import Client, emulator_sent_line, run_tunnel, start_emulator, start_event_emulator, workdir
from tests.loopback.pairs import A, B, Pair, Pairs
from tests.loopback.sshd import start_agent, start_sshd


class ThroughSSHTests(Pairs, TestCase):
    """
    A site dials its host through sshd: tcp/client and tls/client; and
    the refusals (an unknown host key, forwarding forbidden) as failed
    attempts.
    """

    def setUp(self):
        self.files = certs.make(os.path.join(workdir(self), "certs"))

    def tls(self, role, client_auth=False):
        cert, key = self.files[role]
        return ["--ca-cert", self.files["ca"][0], "--cert", cert, "--key", key] + (
            ["--client-auth"] if client_auth else [])

    @inlineCallbacks
    def _host(self, server, host_args=()):
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", server, *host_args)
        match = yield host.waitFor(r"UDP\s+listening on 127\.0\.0\.1:(\d+)")
        stream = yield host.waitFor(r"\b(?!UDP\b)[A-Z]+\s+listening on 127\.0\.0\.1:(\d+)\s*$")
        return host, int(match.group(1)), int(stream.group(1))

    @inlineCallbacks
    def through_ssh(self, server, client, host_args=(), site_args=(), keys=None, env=None):
        """
        Start the emulator, sshd, a host half (udp/listen -> C{server}) and
        a site half (C{client} -> udp/broadcast) that reaches the host
        through sshd, and wait until both halves are connected.
        """
        pair = Pair()
        pair.emulator, pair.emulator_port = yield start_emulator(self, A, B)
        pair.sshd = yield start_sshd(self)
        flags = pair.sshd.flags()
        if keys is not None:
            flags, environ = (yield keys(pair.sshd))
            env = {**(env or {}), **environ}
        pair.host, pair.udp_port, pair.stream_port = yield self._host(server, host_args)
        pair.site = run_tunnel(self, "site", "--in", client.format(port=pair.stream_port),
                               "--out", "udp/broadcast:127.0.0.1:{}".format(pair.emulator_port), "--udp-timeout", "1s",
                               *(flags + list(site_args)), env=env)
        yield pair.site.waitFor(r"logged in to SSH server \S+@127\.0\.0\.1:{}".format(pair.sshd.port))
        yield pair.site.waitFor(r"connected to 127\.0\.0\.1:{}\s*$".format(pair.stream_port))
        yield pair.host.waitFor(r"connected to 127\.0\.0\.1:\d+\s*$")
        yield pair.sshd.process.waitFor(r"direct-tcpip|Accepted publickey")
        pair.client = Client(pair.udp_port)
        return pair

    @inlineCallbacks
    def assertCarries(self, pair):
        """
        Discovery, a unicast request and a card written and read back.
        """
        yield self.assertDiscovers(pair.client)
        yield self.assertUnicast(pair.client)
        start, end = datetime.date(2024, 1, 1), datetime.date(2025, 12, 31)
        stored = yield pair.client.put_card(A, 8165538, start, end, (1, 0, 29, 1), 7531)
        self.assertEqual((stored.controller, stored.stored), (A, True))
        card = yield pair.client.get_card(A, 8165538)
        self.assertEqual((card.controller, card.card_number, card.pin), (A, 8165538, 7531))

    @inlineCallbacks
    def test_tcp(self):
        """
        A tcp/client site reaches a host's tcp/server through sshd and
        carries the client's requests; it says at start which server it
        dials through.
        """
        pair = yield self.through_ssh("tcp/server:127.0.0.1:0", "tcp/client:127.0.0.1:{port}")
        self.assertRegex(pair.site.output(), r"dialling 127\.0\.0\.1:{} through SSH server \S+@127\.0\.0\.1:{} "
                                             r"\(--proxy\)".format(pair.stream_port, pair.sshd.port))
        yield self.assertCarries(pair)

    @inlineCallbacks
    def test_tls(self):
        """
        A tls/client site with a client certificate reaches a host's
        tls/server (which requires one) through sshd: the handshake runs
        inside the forwarded channel, end to end.
        """
        pair = yield self.through_ssh("tls/server:127.0.0.1:0", "tls/client:127.0.0.1:{port}",
                                      host_args=self.tls("server", client_auth=True), site_args=self.tls("client"))
        yield self.assertCarries(pair)

    @inlineCallbacks
    def test_wss(self):
        """
        A wss/client site reaches a host's wss/server through sshd: TLS
        and the WebSocket upgrade inside the forwarded channel.
        """
        pair = yield self.through_ssh("wss/server:127.0.0.1:0/tunnel", "wss/client:127.0.0.1:{port}/tunnel",
                                      host_args=self.tls("server", client_auth=True), site_args=self.tls("client"))
        yield self.assertDiscovers(pair.client)

    @inlineCallbacks
    def test_agentRSA(self):
        """
        Without --ssh-identity the site logs in with ssh-agent's key (an
        RSA one, which OpenSSH takes only as rsa-sha2-256).
        """
        @inlineCallbacks
        def agent(sshd):
            path = os.path.join(sshd.directory, "id_rsa")
            sshd.authorize(path, "rsa")
            socket = yield start_agent(self, path)
            return ["--proxy", sshd.url, "--ssh-known-hosts", sshd.known_hosts], {"SSH_AUTH_SOCK": socket}

        pair = yield self.through_ssh("tcp/server:127.0.0.1:0", "tcp/client:127.0.0.1:{port}", keys=agent)
        yield self.assertDiscovers(pair.client)
        self.assertRegex(pair.sshd.process.output(), r"Accepted publickey for \S+ from 127\.0\.0\.1 .*: RSA SHA256:")

    @inlineCallbacks
    def test_encryptedECDSA(self):
        """
        An ecdsa identity encrypted with a passphrase from
        --ssh-passphrase-file logs in.
        """
        @inlineCallbacks
        def encrypted(sshd):
            path = os.path.join(sshd.directory, "id_ecdsa")
            sshd.authorize(path, "ecdsa", b"open sesame")
            phrase = os.path.join(sshd.directory, "passphrase")
            with open(phrase, "w") as f:
                f.write("open sesame\n")
            yield None
            return ["--proxy", sshd.url, "--ssh-known-hosts", sshd.known_hosts, "--ssh-identity", path,
                    "--ssh-passphrase-file", phrase], {}

        pair = yield self.through_ssh("tcp/server:127.0.0.1:0", "tcp/client:127.0.0.1:{port}", keys=encrypted)
        yield self.assertDiscovers(pair.client)
        self.assertRegex(pair.sshd.process.output(), r"Accepted publickey for \S+ from 127\.0\.0\.1 .*: ECDSA SHA256:")

    @inlineCallbacks
    def test_loginRefused(self):
        """
        A key sshd does not authorise: each attempt is refused with a line
        naming the key offered, and past --max-retries 1 the site exits 1.
        """
        emulator, emulator_port = yield start_emulator(self, A)
        sshd = yield start_sshd(self)
        with open(os.path.join(sshd.directory, "authorized_keys"), "wb") as f:
            f.write(b"")
        host, _, port = yield self._host("tcp/server:127.0.0.1:0")
        site = run_tunnel(self, "site", "--in", "tcp/client:127.0.0.1:{}".format(port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--max-retries", "1",
                          *sshd.flags())
        yield site.waitFor(r"WARN\s+TCP\s+could not connect to 127\.0\.0\.1:{} \(SSH server \S+ refused to log in "
                           r"\S+ with key ssh-ed25519 SHA256:\S+: is its public key in that user's authorized_keys\?\): "
                           r"retrying in 5s$".format(port))
        code = yield site.exited(timeout=30)
        self.assertEqual(code, 1, site.recent())
        self.assertNotRegex(host.output(), r"connected to")

    @inlineCallbacks
    def test_unknownHostKey(self):
        """
        A known_hosts file without the server's key: the attempt is
        refused with a line naming the offered key, nothing reaches the
        host, and past --max-retries 1 the site exits 1.
        """
        emulator, emulator_port = yield start_emulator(self, A)
        sshd = yield start_sshd(self)
        with open(sshd.known_hosts, "wb") as f:
            f.write(b"[127.0.0.1]:1 " + sshd.host_key.public().toString("openssh") + b"\n")
        host, _, port = yield self._host("tcp/server:127.0.0.1:0")
        site = run_tunnel(self, "site", "--in", "tcp/client:127.0.0.1:{}".format(port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--max-retries", "1",
                          *sshd.flags())
        offered = r"ssh-ed25519 SHA256:[A-Za-z0-9+/]{43}"
        yield site.waitFor(r"WARN\s+TCP\s+could not connect to 127\.0\.0\.1:{} \(SSH server \S+: \[127\.0\.0\.1\]:{} "
                           r"offered host key {}, which --ssh-known-hosts '[^']+' does not list: .*\): retrying in "
                           r"5s$".format(port, sshd.port, offered))
        code = yield site.exited(timeout=30)
        self.assertEqual(code, 1, site.recent())
        self.assertEqual(len(re.findall("does not list", site.output())), 2, site.recent())
        self.assertNotRegex(host.output(), r"connected to")

    @inlineCallbacks
    def assertForbidden(self, *config):
        """
        sshd that forbids the forwarding: one warning per attempt naming
        the refusal, backoff, and past --max-retries 1 the site exits 1.
        """
        emulator, emulator_port = yield start_emulator(self, A)
        sshd = yield start_sshd(self, *config)
        host, _, port = yield self._host("tcp/server:127.0.0.1:0")
        site = run_tunnel(self, "site", "--in", "tcp/client:127.0.0.1:{}".format(port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--max-retries", "1",
                          *sshd.flags())
        refusal = (r"SSH server \S+ did not forward to 127\.0\.0\.1:{}: forwarding is forbidden \(administratively "
                   r"prohibited\)".format(port))
        yield site.waitFor(r"WARN\s+TCP\s+could not connect to 127\.0\.0\.1:{} \({}.*\): retrying in 5s$".format(
            port, refusal))
        code = yield site.exited(timeout=30)
        self.assertEqual(code, 1, site.recent())
        self.assertEqual(len(re.findall(r"WARN .*did not forward", site.output())), 1, site.recent())
        self.assertRegex(site.output(), r"(?m)ERROR\s+TCP\s+could not connect to 127\.0\.0\.1:{} after 2 attempt\(s\): "
                                        r"{}".format(port, refusal))
        self.assertNotRegex(host.output(), r"connected to")

    def test_forwardingForbidden(self):
        """
        AllowTcpForwarding no: each attempt is refused in words.
        """
        return self.assertForbidden("AllowTcpForwarding no")

    def test_permitOpen(self):
        """
        PermitOpen naming another target: refused the same way.
        """
        return self.assertForbidden("PermitOpen 127.0.0.1:1")


class EventsThroughSSHTests(EventTunnels, TestCase):
    """
    An event tunnel whose site dials its host through sshd.
    """

    @inlineCallbacks
    def test_sshdRestarted(self):
        """
        sshd killed (with its sessions) mid-stream and started again: the
        site logs in again and redials through it, and every one of the
        200 events arrives exactly once, in order.
        """
        sshd = yield start_sshd(self)
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port), *sshd.flags())
        yield site.waitFor(stream_connected("tcp", stream_port))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "20ms", serials=[EVENTS_FROM])

        yield self.events.waitForCount(50)
        mark = site.mark()
        yield sshd.kill()
        self.assertLess(len(self.events.keys), COUNT, "the stream ended before sshd was killed")
        yield sshd.start()
        yield site.waitFor(r"logged in to SSH server", since=mark)
        yield site.waitFor(stream_connected("tcp", stream_port), since=mark)
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield self.events.waitForKey((EVENTS_FROM, COUNT))
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, COUNT + 1))
