# -*- test-case-name: tests.loopback.test_integration -*-
"""
End-to-end tests on real loopback sockets: real C{uhppoted-tunnel} (and
C{twistd}) processes, the controller emulator in its own process, and the
C{uhppoted} client library as the application.

Every address is 127.0.0.1 and every port is chosen by the system (port 0)
and read back from the log line that reports it. Nothing sleeps: each step
waits, with a generous deadline, for a log line, an exit or a reply.
"""

import datetime
import ipaddress
import json
import os
import socket

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from tests.loopback.pairs import A, B, Pairs
from tests.loopback.processes import (
    ROOT,
    Client,
    connected_line,
    dial_failed_line,
    free_port,
    listening_line,
    lockfile,
    redial_line,
    retry,
    run_tunnel,
    spawn,
    start_emulator,
    start_host,
    start_site,
    twistd_command,
    workdir,
)

TAC = os.path.join(ROOT, "uhppoted_tunnel", "data", "uhtunnel.tac")

#: twistd options before the plugin name: stay in the foreground, log to
#: stdout, write no pid file.
TWISTD = ["-n", "--pidfile", ""]


class ForwardTunnelTests(Pairs, TestCase):
    """
    The host listens for the site: udp/listen -> tcp/server on the host,
    tcp/client -> udp/broadcast on the site.
    """

    @inlineCallbacks
    def test_requests(self):
        """
        Broadcast discovery gets every controller's reply to one request;
        unicast requests reach the controller named; a card written through
        the tunnel reads back from that controller alone; set-ip, which has
        no reply, reaches the controller and returns.
        """
        pair = yield self.forward_pair()
        client = pair.client
        yield self.assertDiscovers(client)
        yield self.assertUnicast(client)

        start, end = datetime.date(2024, 1, 1), datetime.date(2025, 12, 31)
        stored = yield client.put_card(A, 8165538, start, end, (1, 0, 29, 1), 7531)
        self.assertEqual((stored.controller, stored.stored), (A, True))
        card = yield client.get_card(A, 8165538)
        self.assertEqual(
            (card.controller, card.card_number, card.start_date, card.end_date, card.door_1, card.door_2,
             card.door_3, card.door_4, card.pin),
            (A, 8165538, start, end, 1, 0, 29, 1, 7531))
        other = yield client.get_card(B, 8165538)
        self.assertEqual((other.controller, other.card_number), (B, 0))

        address = ipaddress.IPv4Address("127.0.0.23")
        done = yield client.set_ip(A, address, ipaddress.IPv4Address("255.255.255.0"),
                                   ipaddress.IPv4Address("127.0.0.1"))
        self.assertIs(done, True)
        yield pair.emulator.waitFor(r"controller {}: set-ip 127\.0\.0\.23 ".format(A))
        reply = yield client.get_controller(A)
        self.assertEqual((reply.controller, reply.ip_address), (A, address))

    @inlineCallbacks
    def test_site_before_host(self):
        """
        A site started before its host warns that it could not connect,
        dials again by itself (5 s after the failure) once the host listens,
        and then relays.
        """
        emulator, emulator_port = yield start_emulator(self, A, B)
        port = free_port()
        site = start_site(self, "tcp/client:127.0.0.1:{}".format(port), emulator_port)
        yield site.waitFor(dial_failed_line(port))
        host, udp_port = yield start_host(self, "tcp/server:127.0.0.1:{}".format(port))
        yield host.waitFor(listening_line("TCP", port))
        yield site.waitFor(connected_line(port))
        client = Client(udp_port)
        replies = yield retry(client.get_all_controllers)
        self.assertEqual(sorted(reply.controller for reply in replies), sorted([A, B]))
        yield self.assertUnicast(client)

    @inlineCallbacks
    def test_host_restart(self):
        """
        A host stopped with SIGTERM exits 0 without a traceback; a new host
        on the same TCP port is redialled by the site by itself (5 s
        backoff), and requests relay again.
        """
        pair = yield self.forward_pair()
        yield self.assertUnicast(pair.client, [A])
        mark = pair.site.mark()
        yield self.assertCleanStop(pair.host, "TERM", lockfile(self, "host"))
        yield pair.site.waitFor(redial_line(pair.tcp_port), since=mark)

        host, udp_port = yield start_host(self, "tcp/server:127.0.0.1:{}".format(pair.tcp_port), name="host2")
        yield host.waitFor(listening_line("TCP", pair.tcp_port))
        yield pair.site.waitFor(connected_line(pair.tcp_port), since=mark)
        client = Client(udp_port)
        reply = yield retry(lambda: client.get_controller(B, timeout=3))
        self.assertEqual(reply.controller, B)
        yield self.assertDiscovers(client)


class ReverseTunnelTests(Pairs, TestCase):
    """
    The host dials the site: udp/listen -> tcp/client on the host,
    tcp/server -> udp/broadcast on the site.
    """

    @inlineCallbacks
    def test_requests(self):
        """
        Through a reverse tunnel, discovery gets both controllers and
        unicast requests reach the controller named.
        """
        emulator, emulator_port = yield start_emulator(self, A, B)
        site = start_site(self, "tcp/server:127.0.0.1:0", emulator_port)
        site_port = int((yield site.waitFor(listening_line("TCP"))).group(1))
        host, udp_port = yield start_host(self, "tcp/client:127.0.0.1:{}".format(site_port))
        yield host.waitFor(connected_line(site_port))
        yield site.waitFor(connected_line())
        client = Client(udp_port)
        yield self.assertDiscovers(client)
        yield self.assertUnicast(client)


class ShutdownTests(Pairs, TestCase):
    """
    Signals stop a half cleanly: exit 0, no traceback, lockfile removed.
    """

    @inlineCallbacks
    def test_sigterm(self):
        """
        SIGTERM stops a connected host, then the site while it waits to
        redial; each exits 0 without a traceback and removes its lockfile.
        """
        pair = yield self.forward_pair()
        mark = pair.site.mark()
        yield self.assertCleanStop(pair.host, "TERM", lockfile(self, "host"))
        yield pair.site.waitFor(redial_line(pair.tcp_port), since=mark)
        yield self.assertCleanStop(pair.site, "TERM", lockfile(self, "site"))

    @inlineCallbacks
    def test_sigint(self):
        """
        SIGINT stops a connected site, then the host it was connected to;
        each exits 0 without a traceback and removes its lockfile.
        """
        pair = yield self.forward_pair()
        yield self.assertCleanStop(pair.site, "INT", lockfile(self, "site"))
        yield self.assertCleanStop(pair.host, "INT", lockfile(self, "host"))


class LockfileTests(Pairs, TestCase):
    """
    One copy per lockfile.
    """

    @inlineCallbacks
    def test_second_copy(self):
        """
        A second copy with the same --lockfile exits non-zero with a one-line
        error naming the lockfile, without listening; the first keeps
        running, keeps its lockfile and still stops cleanly.
        """
        first, _ = yield start_host(self, "tcp/server:127.0.0.1:0")
        lock = lockfile(self, "host")
        second = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0")
        code = yield second.exited()
        self.assertNotIn(code, (0, None), second.recent())
        errors = second.output(2).splitlines()
        self.assertEqual(len(errors), 1, second.recent())
        self.assertIn("lockfile " + lock, errors[0])
        self.assertNotIn("Traceback", second.output())
        self.assertNotIn("listening on", second.output())
        self.assertTrue(first.running, first.recent())
        yield self.assertCleanStop(first, "TERM", lock)


class ConfigurationErrorTests(Pairs, TestCase):
    """
    A configuration error exits 2 with one line on stderr, before
    anything listens.
    """

    def tunnel(self, *args):
        return run_tunnel(self, "bad", *args)

    def test_bad_udp_timeout(self):
        """
        A --udp-timeout that is not a duration is named in the error.
        """
        return self.assertUsageError(
            self.tunnel("--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0", "--udp-timeout", "soon"),
            "--udp-timeout", "soon")

    def test_unknown_connector(self):
        """
        An unknown connector kind is named in the error.
        """
        return self.assertUsageError(
            self.tunnel("--in", "udp/listen:127.0.0.1:0", "--out", "carrier/pigeon:127.0.0.1:0"),
            "--out", "carrier/pigeon")

    def test_missing_config_file(self):
        """
        A --config naming a file that does not exist is named in the error.
        """
        missing = os.path.join(workdir(self), "missing.toml")
        child = run_tunnel(self, "bad", "--config", missing + "#host", config=False)
        return self.assertUsageError(child, missing)

    def test_bad_toml_value(self):
        """
        A bad value in the TOML file is reported with its file, section and
        key.
        """
        path = os.path.join(workdir(self), "bad.toml")
        with open(path, "w") as f:
            f.write('[host]\nin = "udp/listen:127.0.0.1:0"\nout = "tcp/server:127.0.0.1:0"\n'
                    'udp-timeout = "whenever"\n')
        child = run_tunnel(self, "bad", "--config", path + "#host", config=False)
        return self.assertUsageError(child, path, "[host]", "udp-timeout", "whenever")


class FatalErrorTests(Pairs, TestCase):
    """
    An error the tunnel cannot get past at run time exits 1.
    """

    @inlineCallbacks
    def test_out_of_retries(self):
        """
        With --max-retries 0, a client whose server does not exist exits 1
        with a message naming the address, and no promise of a retry.
        """
        port = free_port()
        child = run_tunnel(self, "site", "--in", "tcp/client:127.0.0.1:{}".format(port),
                           "--out", "udp/broadcast:127.0.0.1:{}".format(free_port()), "--max-retries", "0")
        code = yield child.exited()
        self.assertEqual(code, 1, child.recent())
        self.assertRegex(child.output(), r"ERROR\s+TCP\s+could not connect to 127\.0\.0\.1:{}\b".format(port))
        self.assertNotIn("retrying", child.output())
        self.assertNotIn("Traceback", child.output())
        self.assertFalse(os.path.exists(lockfile(self, "site")))

    @inlineCallbacks
    def test_port_in_use(self):
        """
        A tcp/server on a port already in use exits 1 with "cannot listen"
        and the address, without opening its UDP end.
        """
        taken = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        child = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0",
                           "--out", "tcp/server:127.0.0.1:{}".format(port))
        code = yield child.exited()
        self.assertEqual(code, 1, child.recent())
        self.assertRegex(child.output(), r"cannot listen on 127\.0\.0\.1:{}\b".format(port))
        self.assertNotIn("UDP    listening", child.output())
        self.assertNotIn("Traceback", child.output())
        self.assertFalse(os.path.exists(lockfile(self, "host")))


class TwistdTests(Pairs, TestCase):
    """
    twistd runs the same tunnel: the uhtunnel plugin and uhppoted_tunnel/data/uhtunnel.tac.
    """

    @inlineCallbacks
    def test_plugin(self):
        """
        C{twistd -n uhtunnel} serves as the host half of a working tunnel,
        and SIGTERM stops it cleanly.
        """
        pair = yield self.forward_pair(host_command=twistd_command() + TWISTD + ["uhtunnel"])
        yield self.assertDiscovers(pair.client)
        yield self.assertUnicast(pair.client)
        yield self.assertCleanStop(pair.host, "TERM", lockfile(self, "host"), twistd=True)

    @inlineCallbacks
    def test_reactor(self):
        """
        C{twistd -r uhppoted -n uhtunnel} runs the host half under the
        tunnel's own reactor, and it relays.
        """
        pair = yield self.forward_pair(host_command=twistd_command() + TWISTD + ["-r", "uhppoted", "uhtunnel"])
        yield pair.host.waitFor(r"reactor class: uhppoted_tunnel\.link\.reactor\.TurnEndReactor")
        yield self.assertDiscovers(pair.client)
        yield self.assertUnicast(pair.client)
        yield self.assertCleanStop(pair.host, "TERM", lockfile(self, "host"), twistd=True)

    @inlineCallbacks
    def test_tac(self):
        """
        C{twistd -n -y uhppoted_tunnel/data/uhtunnel.tac}, configured by UHTUNNEL_CONFIG
        naming a TOML file and section, serves as the host half of a working
        tunnel, and SIGTERM stops it cleanly.
        """
        if not os.path.exists(TAC):
            raise SkipTest("uhppoted_tunnel/data/uhtunnel.tac not present")
        emulator, emulator_port = yield start_emulator(self, A, B)
        lock = lockfile(self, "tac")
        path = os.path.join(workdir(self), "tunnel.toml")
        with open(path, "w") as f:
            f.write("[defaults]\nrate-limit = 1000\n\n[host]\n"
                    'in = "udp/listen:127.0.0.1:0"\nout = "tcp/server:127.0.0.1:0"\n'
                    "lockfile = {}\n".format(json.dumps(lock)))
        host = spawn(self, twistd_command() + TWISTD + ["-y", TAC], "tac",
                     env={"UHTUNNEL_CONFIG": path + "#host", "UHTUNNEL_ARGS": ""})
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        tcp_port = int((yield host.waitFor(listening_line("TCP"))).group(1))
        site = start_site(self, "tcp/client:127.0.0.1:{}".format(tcp_port), emulator_port)
        yield site.waitFor(connected_line(tcp_port))
        yield host.waitFor(connected_line())
        client = Client(udp_port)
        yield self.assertDiscovers(client)
        yield self.assertUnicast(client)
        yield self.assertCleanStop(host, "TERM", lock, twistd=True)
