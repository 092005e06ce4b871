# -*- test-case-name: tests.loopback.test_xmpp -*-
"""
The C{xmpp/} transport end to end: a real prosody server on 127.0.0.1
(L{tests.prosody}: its own configuration, certificate, accounts and data
in the test's folder, started here and stopped at cleanup), real
C{uhppoted-tunnel} halves logging in to it as two accounts, the controller
emulator, and the C{uhppoted} client as the application.

Neither half listens for the other: both dial the server, which relays.
So "forward" and "reverse" here are which half logs in first (the other
then finds it by its hello, or answers the hello of the one that comes
later).
"""

import datetime
import os
import re

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.trial.unittest import TestCase
from twisted.words.protocols.jabber import client, xmlstream
from twisted.words.protocols.jabber.jid import JID

from tests.loopback.processes import (
    DEADLINE,
    Client,
    emulator_sent_line,
    listening_line,
    lockfile,
    run_tunnel,
    spawn,
    start_emulator,
    start_event_emulator,
    start_site,
    stop,
    wait_for_lines,
    workdir,
)
from tests.loopback.eventpairs import A as EVENT_CONTROLLER
from tests.loopback.eventpairs import COUNT, LAST, RECEIVED, EventTunnels
from tests.loopback.pairs import A, B, Pairs
from tests.loopback.tinyproxy import connect_line, start_tinyproxy
from tests.prosody import READY, Prosody
from tests.tools import require
from uhppoted_tunnel.transports.tls import certs as tls
from uhppoted_tunnel.transports.xmpp.frames import NS_TUNNEL, frame_element, message_head, stanza

PASSWORDS = {"host": "host-secret", "site": "site-secret"}


def logged_in(user):
    """
    :return: a regex for the line a half logs once logged in as C{user}.
    """
    return r"XMPP\s+logged in as {}@localhost/\S+, waiting for ".format(user)


def connected(user):
    """
    :return: a regex for the line a half logs once C{user}'s half is its
        connection (group 1: that half's full JID).
    """
    return r"XMPP\s+connected to ({}@localhost/\S+)\s*$".format(user)


def closed(user):
    """
    :return: a regex for the line a half logs once C{user}'s half has gone.
    """
    return r"XMPP\s+connection to {}@localhost/\S+ closed".format(user)


class _XMPP:
    """
    A prosody server with the two halves' accounts, and halves that log in
    to it.
    """

    timeout = 120

    @inlineCallbacks
    def start_server(self, starttls=True):
        require("prosody", "prosody")
        require("prosodyctl", "prosody")
        self.server = Prosody(os.path.join(workdir(self), "prosody"), starttls=starttls)
        for user, password in PASSWORDS.items():
            self.server.register(user, password)
        self.prosody = spawn(self, self.server.command(), "prosody")
        # registered after spawn's own kill, so run before it: a clean stop
        self.addCleanup(stop, self.prosody)
        yield self.prosody.waitFor(READY)

    def xmpp(self, user, password=None):
        """
        :return: the flags of the half that logs in as C{user}.
        """
        peer = "site" if user == "host" else "host"
        return ["--xmpp-peer", peer + "@localhost", "--xmpp-server", self.server.address, "--ca-cert", self.server.ca,
                "--xmpp-password-file", self.server.password_file(user, password or PASSWORDS[user])]

    def assertNothingStored(self):
        """
        The server kept none of the frames it relayed: no offline
        messages, nothing in an archive.
        """
        self.assertEqual(self.server.stored("offline") + self.server.stored("archive"), [])


class RequestTests(_XMPP, Pairs, TestCase):
    """
    The uhppoted client's requests through a pair of halves joined by
    prosody.
    """

    @inlineCallbacks
    def pair(self, site_first):
        """
        Start a server, the emulator (controllers A and B), a host
        (udp/listen -> xmpp) and a site (xmpp -> udp/broadcast), one after
        the other has logged in, and wait until each has the other as its
        connection.
        """
        yield self.start_server()
        self.emulator, self.emulator_port = yield start_emulator(self, A, B)

        def site():
            return start_site(self, "xmpp/client:site@localhost", self.emulator_port, *self.xmpp("site"))

        def host():
            return run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "xmpp/client:host@localhost",
                              *self.xmpp("host"))

        if site_first:
            self.site = site()
            yield self.site.waitFor(logged_in("site"))
            self.host = host()
        else:
            self.host = host()
            yield self.host.waitFor(logged_in("host"))
            self.site = site()
        udp_port = int((yield self.host.waitFor(listening_line("UDP"))).group(1))
        yield self.host.waitFor(connected("site"))
        yield self.site.waitFor(connected("host"))
        return Client(udp_port)

    @inlineCallbacks
    def assertRequests(self, client):
        """
        Discovery gets both controllers once each; get-time and
        get-controller reach the controller named; a card written to A
        reads back from A alone.
        """
        yield self.assertDiscovers(client)
        yield self.assertUnicast(client)
        for serial in (A, B):
            reply = yield client.get_time(serial)
            self.assertEqual(reply.controller, serial)
        start, end = datetime.date(2024, 1, 1), datetime.date(2025, 12, 31)
        stored = yield client.put_card(A, 8165538, start, end, (1, 0, 29, 1), 7531)
        self.assertEqual((stored.controller, stored.stored), (A, True))
        card = yield client.get_card(A, 8165538)
        self.assertEqual((card.controller, card.card_number, card.start_date, card.end_date, card.pin),
                         (A, 8165538, start, end, 7531))
        other = yield client.get_card(B, 8165538)
        self.assertEqual((other.controller, other.card_number), (B, 0))

    @inlineCallbacks
    def test_forward(self):
        """
        The site logs in first, then the host, which finds it by its
        hello: every request relays. SIGTERM then stops the host, which
        the site sees go, and the site; each exits 0 with no traceback and
        removes its lockfile.
        """
        client = yield self.pair(site_first=True)
        yield self.assertRequests(client)
        mark = self.site.mark()
        yield self.assertCleanStop(self.host, "TERM", lockfile(self, "host"))
        yield self.site.waitFor(closed("host"), since=mark)
        yield self.assertCleanStop(self.site, "TERM", lockfile(self, "site"))
        self.assertNothingStored()

    @inlineCallbacks
    def test_reverse(self):
        """
        The host logs in first, then the site, which finds it by its
        hello: every request relays; SIGTERM stops the site, then the host.
        """
        client = yield self.pair(site_first=False)
        yield self.assertRequests(client)
        yield self.assertCleanStop(self.site, "TERM", lockfile(self, "site"))
        yield self.assertCleanStop(self.host, "TERM", lockfile(self, "host"))

    @inlineCallbacks
    def test_site_restart(self):
        """
        A site killed outright is seen to go (the server tells of it); a
        new one logs in, the host connects to it, and requests relay again.
        """
        client = yield self.pair(site_first=True)
        yield self.assertUnicast(client, [A])
        mark = self.host.mark()
        self.site.send_signal("KILL")
        yield self.site.exited()
        yield self.host.waitFor(closed("site"), since=mark)
        site = run_tunnel(self, "site2", "--in", "xmpp/client:site@localhost", "--out",
                          "udp/broadcast:127.0.0.1:{}".format(self.emulator_port), "--udp-timeout", "1s",
                          *self.xmpp("site"))
        yield site.waitFor(connected("host"))
        yield self.host.waitFor(connected("site"), since=mark)
        yield self.assertDiscovers(client)

    @inlineCallbacks
    def test_server_restart(self):
        """
        When the server goes away each half loses the other, says it will
        log in again in 5 s, and does so once the server is back: the
        halves find each other again and requests relay.
        """
        client = yield self.pair(site_first=True)
        yield self.assertUnicast(client, [A])
        marks = {half: half.mark() for half in (self.host, self.site)}
        code = yield stop(self.prosody)
        self.assertEqual(code, 0, self.prosody.recent())
        for half, mark in marks.items():
            yield half.waitFor(r"XMPP\s+reconnecting to \w+@localhost in 5s", since=mark)
        self.prosody = spawn(self, self.server.command(), "prosody2")
        self.addCleanup(stop, self.prosody)
        yield self.prosody.waitFor(READY)
        for half, other in ((self.host, "site"), (self.site, "host")):
            yield half.waitFor(connected(other), since=marks[half], timeout=DEADLINE + 10)
        reply = yield client.get_controller(B)
        self.assertEqual(reply.controller, B)

    @inlineCallbacks
    def test_through_proxy(self):
        """
        A site that may reach the server only through an HTTP proxy
        (--proxy, here tinyproxy) logs in through it, STARTTLS and all, and
        requests relay.
        """
        yield self.start_server()
        proxy, proxy_port = yield start_tinyproxy(self)
        self.emulator, emulator_port = yield start_emulator(self, A, B)
        site = run_tunnel(self, "site", "--in", "xmpp/client:site@localhost", "--out",
                          "udp/broadcast:127.0.0.1:{}".format(emulator_port), "--udp-timeout", "1s",
                          "--proxy", "http://127.0.0.1:{}".format(proxy_port), *self.xmpp("site"))
        yield site.waitFor(r"XMPP\s+dialling {} through HTTP proxy".format(re.escape(self.server.address)))
        yield proxy.waitFor(connect_line(self.server.port))
        yield site.waitFor(logged_in("site"))
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "xmpp/client:host@localhost",
                          *self.xmpp("host"))
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        yield host.waitFor(connected("site"))
        client = Client(udp_port)
        yield self.assertDiscovers(client)
        yield self.assertUnicast(client)

    @inlineCallbacks
    def test_stop_while_waiting(self):
        """
        SIGTERM stops a half that is logged in and waiting for its peer:
        exit 0, no traceback.
        """
        yield self.start_server()
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "xmpp/client:host@localhost",
                          *self.xmpp("host"))
        yield host.waitFor(logged_in("host"))
        yield self.assertCleanStop(host, "TERM", lockfile(self, "host"))


class RefusedTests(_XMPP, Pairs, TestCase):
    """
    A half the server refuses says why, and tries again later.
    """

    @inlineCallbacks
    def test_wrong_password(self):
        """
        A half with the wrong password gets one warning per attempt saying
        the server refused the password and which file holds it, tries
        again after 5 s, and after --max-retries exits 1 saying why; the
        server never had it online.
        """
        yield self.start_server()
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "xmpp/client:host@localhost",
                          "--max-retries", "1", *self.xmpp("host", "not-the-password"))
        refused = (r"the server refused the password for host@localhost \(SASL not-authorized\): check "
                   r"--xmpp-password-file and that the account exists")
        first = yield host.waitFor(r"WARN\s+XMPP\s+could not connect to host@localhost \(" + refused
                                   + r"\): retrying in 5s$")
        code = yield host.exited()
        self.assertEqual(code, 1, host.recent())
        output = host.output()
        self.assertRegex(output, r"ERROR\s+XMPP\s+could not connect to host@localhost after 2 attempt\(s\): "
                         + refused)
        times = [when for when, (_, text) in zip(host.times, host.lines) if "could not connect" in text]
        self.assertGreaterEqual(times[1] - times[0], 4.5)
        warnings = [text for _, text in host.lines if " WARN " in text]
        self.assertEqual(warnings, [first.string], host.recent())
        self.assertNotIn("logged in", output)
        self.assertNotIn("Traceback", output)

    @inlineCallbacks
    def test_untrusted_server(self):
        """
        A half whose --ca-cert did not sign the server's certificate
        refuses to log in, saying the TLS handshake failed.
        """
        yield self.start_server()
        other = Prosody(os.path.join(workdir(self), "other"))
        flags = self.xmpp("host")
        flags[flags.index("--ca-cert") + 1] = other.ca
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "xmpp/client:host@localhost",
                          "--max-retries", "0", *flags)
        code = yield host.exited()
        self.assertEqual(code, 1, host.recent())
        self.assertRegex(host.output(), r"ERROR\s+XMPP\s+could not connect to host@localhost after 1 attempt\(s\): "
                                        r"TLS handshake with the server failed: .*certificate verify failed")

    @inlineCallbacks
    def test_no_starttls(self):
        """
        A half whose server does not offer STARTTLS refuses to log in
        (and so never sends it the password), saying why.
        """
        yield self.start_server(starttls=False)
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "xmpp/client:host@localhost",
                          "--max-retries", "0", *self.xmpp("host"))
        code = yield host.exited()
        self.assertEqual(code, 1, host.recent())
        self.assertRegex(host.output(), r"ERROR\s+XMPP\s+could not connect to host@localhost after 1 attempt\(s\): "
                                        r"the server does not offer STARTTLS: this end logs in over TLS only")
        with open(self.server.log) as f:
            self.assertNotIn("Authenticated as", f.read())

    @inlineCallbacks
    def test_bad_flags(self):
        """
        An xmpp/ end without --xmpp-peer, or with a password file that is
        not there, exits 2 with one line naming the flag.
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "xmpp/client:host@localhost",
                          "--xmpp-password-file", "/nonexistent/host.password")
        yield self.assertUsageError(host, "--xmpp-peer")
        missing = os.path.join(workdir(self), "missing.password")
        site = run_tunnel(self, "site", "--in", "xmpp/client:site@localhost", "--out", "udp/broadcast:127.0.0.1:9",
                          "--xmpp-peer", "host@localhost", "--xmpp-password-file", missing)
        yield self.assertUsageError(site, "--xmpp-password-file", missing)


class StorageTests(_XMPP, TestCase):
    """
    What the server keeps of a frame sent to a peer that is offline.
    """

    @inlineCallbacks
    def test_frames_never_stored(self):
        """
        A stanza of frames, as a half writes it, sent while the peer's
        account is offline (to a resource that has gone, or even to the
        bare JID) is neither kept for it (offline storage) nor archived
        (MAM, which this server runs); a chat message sent the same way,
        the control, is both.
        """
        yield self.start_server()
        account = JID("host@localhost")
        factory = client.XMPPClientFactory(account, PASSWORDS["host"], configurationForTLS=tls.client_options(
            {"ca-cert": self.server.ca, "cert": None, "key": None}, "localhost"))
        logged_in, ended = Deferred(), Deferred()
        factory.addBootstrap(xmlstream.STREAM_AUTHD_EVENT, logged_in.callback)
        factory.addBootstrap(xmlstream.INIT_FAILED_EVENT, logged_in.errback)
        factory.addBootstrap(xmlstream.STREAM_END_EVENT, lambda reason: ended.callback(None))
        connector = reactor.connectTCP("127.0.0.1", self.server.port, factory)

        def disconnect():
            # (the factory starts trying again each time it connects)
            factory.stopTrying()
            connector.disconnect()
            return ended

        self.addCleanup(disconnect)
        stream = yield logged_in
        frames = [frame_element(1, bytes(64)), frame_element(2, b"")]
        stream.send("<presence/>")
        for to in ("site@localhost/gone", "site@localhost"):
            stream.send(stanza(message_head(to), frames))
        stream.send("<message to='site@localhost' type='chat'><body>control</body></message>")
        # the server answers a ping once it has handled all that came before
        pong = Deferred()
        stream.addOnetimeObserver("/iq[@id='ping']", pong.callback)
        stream.send("<iq type='get' id='ping' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
        yield pong
        stored = self.server.stored("offline") + self.server.stored("archive")
        self.assertTrue(stored, "the control message was not stored: the check would see nothing")
        for path in stored:
            with open(path) as f:
                content = f.read()
            self.assertIn("control", content)
            self.assertNotIn(NS_TUNNEL, content)


class EventTests(_XMPP, EventTunnels, TestCase):
    """
    Event tunnels over XMPP deliver every event once, in order, across a
    restart of one half.
    """


    def site_xmpp(self, *flags, name="site"):
        return self.site(0, "xmpp/client:site@localhost", *(self.xmpp("site") + list(flags)), name=name)

    def host_xmpp(self, *flags, name="host"):
        return self.host("xmpp/client:host@localhost", *(self.xmpp("host") + list(flags)), name=name)

    @inlineCallbacks
    def test_relay(self):
        """
        200 events pushed at 100 a second all reach the listener, once
        each, in order, paced under the server's limit.
        """
        yield self.start_server()
        host = self.host_xmpp()
        yield host.waitFor(logged_in("host"))
        site = self.site_xmpp()
        yield site.waitFor(connected("host"))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "10ms", serials=[EVENT_CONTROLLER])
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield self.events.waitForKey((EVENT_CONTROLLER, COUNT), timeout=DEADLINE)
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, COUNT + 1))
        for half in (site, host):
            self.assertNotIn("Traceback", half.output())
            self.assertNotIn("dropped", half.output())
        self.assertNothingStored()

    @inlineCallbacks
    def test_host_killed(self):
        """
        A host killed with SIGKILL mid-stream, with events sent to it and
        not acknowledged, and started again with the same lockfile (and so
        the same C{.seen} spool) logs in again; the site, told by the
        server that the old one went, sends the new one what was not
        acknowledged: every one of the 200 events arrives exactly once,
        those after the restart in order, and the server stored none.
        """
        yield self.start_server()
        host = self.host_xmpp()
        yield host.waitFor(logged_in("host"))
        site = self.site_xmpp("--debug")
        yield site.waitFor(connected("host"))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "20ms", serials=[EVENT_CONTROLLER])

        yield self.events.waitForCount(50)
        yield self.freeze(host, site)
        mark = site.mark()
        host.send_signal("KILL")
        yield host.exited()
        before = len(self.events.keys)
        self.assertLess(before, COUNT, "the stream ended before the host was killed")
        yield site.waitFor(closed("host"), since=mark)

        host = self.host_xmpp()
        yield site.waitFor(connected("host"), since=mark)
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield self.events.waitForKey((EVENT_CONTROLLER, COUNT))
        yield self.finish(site_port)

        received = self.events.of(EVENT_CONTROLLER)
        self.assertEqual(sorted(received), list(range(1, COUNT + 1)), "lost or duplicated events")
        after = [index for serial, index in self.events.keys[before:] if serial == EVENT_CONTROLLER]
        self.assertEqual(after, sorted(after), "events after the restart out of order")
        self.assertEqual(self.events.keys[-1], (LAST, self.last.event_index))
        self.assertNothingStored()

    @inlineCallbacks
    def test_site_restarted(self):
        """
        A site stopped with SIGTERM while its host is offline keeps its
        events; started again it logs in, finds the host once it is back,
        and every event arrives once, in order.
        """
        yield self.start_server()
        site = self.site_xmpp("--debug")
        site_port = yield self.site_port(site)
        yield site.waitFor(logged_in("site"))
        emulator, _ = yield start_event_emulator(self, site_port, COUNT, "5ms", serials=[EVENT_CONTROLLER])
        yield emulator.waitFor(emulator_sent_line(COUNT))
        yield wait_for_lines(site, RECEIVED, COUNT)
        code = yield stop(site, "TERM")
        self.assertEqual(code, 0, site.recent())
        self.assertRegex(site.output(), r"kept {} undelivered event\(s\) for the next run".format(COUNT))

        site = self.site_xmpp()
        yield site.waitFor(r"{} undelivered event\(s\) from the last run".format(COUNT))
        site_port = yield self.site_port(site)
        self.host_xmpp()
        yield site.waitFor(connected("host"))
        yield self.events.waitForKey((EVENT_CONTROLLER, COUNT))
        yield self.finish(site_port)
        self.assertEventsInOrder(range(1, COUNT + 1))
        self.assertNotIn("Traceback", site.output())

