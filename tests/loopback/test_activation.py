"""
Socket activation: a stream end given as a Twisted endpoint description
takes a listening socket passed in the way systemd passes it.
"""

import os
import socket

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import SkipTest, TestCase

from tests.loopback.processes import (
    Client,
    LineProtocol,
    child_environment,
    empty_config,
    listening_line,
    lockfile,
    retry,
    start_emulator,
    start_site,
    tunnel_command,
    workdir,
)

SERIALS = (405419896, 303986753)


class SocketActivationTests(TestCase):
    timeout = 120

    @inlineCallbacks
    def test_systemdSocket(self):
        """
        With C{--out tcp/server:systemd:domain=INET:index=0}, the host half
        serves its site on the socket systemd would pass it (fd 3, with
        LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID), and requests relay as
        usual.
        """
        if not os.path.exists("/bin/sh"):
            raise SkipTest("no /bin/sh to set LISTEN_PID")
        listening = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(listening.close)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(("127.0.0.1", 0))
        listening.listen(16)
        port = listening.getsockname()[1]

        # systemd sets LISTEN_PID to the service's own pid: the shell execs
        # the tunnel, which keeps the shell's pid
        args = ["/bin/sh", "-c", 'LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=host.socket exec "$@"', "sh"] + \
            tunnel_command() + [
            "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:systemd:domain=INET:index=0",
            "--lockfile", lockfile(self, "host"), "--rate-limit", "1000", "--config", empty_config(self)]
        host = LineProtocol("host")
        reactor.spawnProcess(host, args[0], args, env=child_environment(), path=workdir(self),
                             childFDs={0: "w", 1: "r", 2: "r", 3: listening.fileno()})

        def kill():
            if host.running:
                host.send_signal("KILL")
                return host.ended

        self.addCleanup(kill)
        match = yield host.waitFor(listening_line("UDP"))
        udp_port = int(match.group(1))
        yield host.waitFor(listening_line("TCP", port))

        _, emulator_port = yield start_emulator(self, *SERIALS)
        start_site(self, "tcp/client:127.0.0.1:{}".format(port), emulator_port)
        client = Client(udp_port)
        replies = yield retry(client.get_all_controllers, accept=lambda replies: len(replies) == len(SERIALS))
        self.assertEqual(sorted(reply.controller for reply in replies), sorted(SERIALS))
