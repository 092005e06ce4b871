"""
systemd notifications from the real C{uhppoted-tunnel} command, received on
a C{NOTIFY_SOCKET} the test binds (a unix datagram socket in a temporary
folder), as systemd would for a C{Type=notify} unit.
"""

import errno
import os
import re
import shutil
import socket
import tempfile

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.trial.unittest import TestCase

from tests.loopback.processes import (
    DEADLINE,
    LOOPBACK,
    connected_line,
    empty_config,
    free_port,
    listening_line,
    lockfile,
    spawn,
    stop,
    tunnel_command,
    twistd_command,
)
from uhppoted_tunnel.testing import NOT_YET, Conditions


class NotifySocket(DatagramProtocol):
    """
    The service manager's end: collects each notification datagram as text
    and lets a test wait, with a deadline, for one that matches.
    """

    def __init__(self):
        self.messages = []
        self._conditions = Conditions(reactor)

    def datagramReceived(self, data, address):
        self.messages.append(data.decode("utf-8", "replace"))
        self._conditions.check()

    def waitFor(self, pattern, since=0, timeout=DEADLINE, check=None):
        """
        :param pattern: a regex searched in each message (multiline).
        :param since: only messages after this many count.
        :param check: called with the match as soon as it arrives, before
            anything else runs.
        :return: a Deferred firing with the first C{re.Match}.
        """
        regex = re.compile(pattern, re.MULTILINE)

        def test():
            for text in self.messages[since:]:
                match = regex.search(text)
                if match is not None:
                    if check is not None:
                        check(match)
                    return match
            return NOT_YET

        return self._conditions.wait(test, timeout, lambda: "no notification matching {!r} within {}s; "
                                     "received {!r}".format(pattern, timeout, self.messages[-20:]))


class NotifyTests(TestCase):
    timeout = 120

    def setUp(self):
        # a short folder: a unix socket path has at most 107 bytes
        folder = tempfile.mkdtemp(prefix="uhtunnel-notify-")
        self.addCleanup(shutil.rmtree, folder, True)
        self.path = os.path.join(folder, "notify")
        self.notify = NotifySocket()
        port = reactor.listenUNIXDatagram(self.path, self.notify)
        self.addCleanup(port.stopListening)

    def tunnel(self, name, *args, command=None, **env):
        flags = ["--lockfile", lockfile(self, name), "--rate-limit", "1000", "--config", empty_config(self)]
        return spawn(self, (command or tunnel_command()) + list(args) + flags, name,
                     env={"NOTIFY_SOCKET": self.path, **env})

    @inlineCallbacks
    def test_readyAfterListening(self):
        """
        READY=1 comes once both ends listen (their ports are taken when it
        arrives, and the listening lines are logged), and SIGTERM sends
        STOPPING=1 before the clean exit.
        """
        tcp_port = free_port()
        udp_port = free_udp_port()
        host = self.tunnel("host", "--in", "udp/listen:127.0.0.1:{}".format(udp_port),
                           "--out", "tcp/server:127.0.0.1:{}".format(tcp_port))
        checked = []

        def listening(match):
            # run the moment READY=1 arrives: both ports must be in use
            connection = socket.create_connection((LOOPBACK, tcp_port), timeout=5)
            connection.close()
            probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                probe.bind((LOOPBACK, udp_port))
            except OSError as e:
                checked.append(e.errno)
            finally:
                probe.close()

        yield self.notify.waitFor(r"^READY=1$", check=listening)
        self.assertEqual(checked, [errno.EADDRINUSE])
        yield host.waitFor(listening_line("UDP", udp_port))
        yield host.waitFor(listening_line("TCP", tcp_port))
        ready = next(i for i, text in enumerate(self.notify.messages) if text == "READY=1")
        self.assertEqual([text for text in self.notify.messages if text == "READY=1"], ["READY=1"])
        self.assertTrue(any(text.startswith("STATUS=") for text in self.notify.messages[:ready + 2]),
                        self.notify.messages)

        mark = len(self.notify.messages)
        code = yield stop(host)
        self.assertEqual(code, 0)
        yield self.notify.waitFor(r"^STOPPING=1$", since=mark)
        self.assertNotIn("WATCHDOG=1", self.notify.messages)

    @inlineCallbacks
    def test_twistd(self):
        """
        Under C{twistd -n uhtunnel} too: READY=1 once the ends listen and
        the reactor turns (the watchdog beats after it), and STOPPING=1 at
        SIGTERM.
        """
        tcp_port = free_port()
        host = self.tunnel("host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:{}".format(tcp_port),
                           command=twistd_command() + ["--nodaemon", "--pidfile=", "uhtunnel"], WATCHDOG_USEC="200000")
        connected = []
        yield self.notify.waitFor(r"^READY=1$", check=lambda match: connected.append(
            socket.create_connection((LOOPBACK, tcp_port), timeout=5).close()))
        self.assertEqual(connected, [None])
        yield host.waitFor(listening_line("TCP", tcp_port))
        yield self.notify.waitFor(r"^WATCHDOG=1$", since=self.notify.messages.index("READY=1") + 1)
        mark = len(self.notify.messages)
        host.send_signal("TERM")
        yield host.exited()
        yield self.notify.waitFor(r"^STOPPING=1$", since=mark)

    @inlineCallbacks
    def test_statusOnReconnect(self):
        """
        A client end's connection, loss and redial are STATUS= lines, and
        with WATCHDOG_USEC set WATCHDOG=1 comes every half of it.
        """
        connections = []

        class Peer(Protocol):
            def connectionMade(self):
                connections.append(self)

        server = reactor.listenTCP(0, Factory.forProtocol(Peer), interface=LOOPBACK)
        self.addCleanup(server.stopListening)
        port = server.getHost().port
        site = self.tunnel("site", "--in", "tcp/client:127.0.0.1:{}".format(port),
                           "--out", "udp/broadcast:127.0.0.1:{}".format(free_udp_port()),
                           WATCHDOG_USEC="200000")
        yield self.notify.waitFor(r"^READY=1$")
        yield site.waitFor(connected_line(port))
        address = re.escape("127.0.0.1:{}".format(port))
        yield self.notify.waitFor(r"^STATUS=connected to " + address + "$")

        mark = len(self.notify.messages)
        connections[0].transport.loseConnection()
        yield self.notify.waitFor(r"^STATUS=(?:reconnecting to " + address + r" in \d+s"
                                  r"|could not connect to " + address + r"\b.*retrying in \d+s)$", since=mark)
        mark = len(self.notify.messages)
        yield self.notify.waitFor(r"^STATUS=connected to " + address + "$", since=mark)
        for connection in connections:
            connection.transport.loseConnection()

        watchdogs = [text for text in self.notify.messages if text == "WATCHDOG=1"]
        # 0.1 s apart over the 5 s before the redial
        self.assertGreater(len(watchdogs), 10)
        mark = len(self.notify.messages)
        code = yield stop(site)
        self.assertEqual(code, 0)
        yield self.notify.waitFor(r"^STOPPING=1$", since=mark)


def free_udp_port():
    """
    A loopback UDP port that nothing is bound to (bound, read and closed).
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]
    finally:
        s.close()
