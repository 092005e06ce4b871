# -*- test-case-name: tests.loopback.test_socket_activation -*-
"""
Socket activation the way units are written (C{ListenStream=},
C{ListenDatagram=}), with systemd's own C{systemd-socket-activate} on
127.0.0.1: C{KIND/server:systemd} takes the passed stream socket, and
C{udp/listen:systemd} the passed datagram socket, including the datagram
that woke the service.
"""

import socket

from twisted.internet.defer import inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.processes import (
    Client,
    connected_line,
    empty_config,
    free_port,
    listening_line,
    lockfile,
    retry,
    spawn,
    start_emulator,
    tunnel_command,
)
from tests.tools import require

SERIALS = (405419896, 303986753)


class SocketActivateTests(TestCase):
    timeout = 120

    def setUp(self):
        self.activate = require("systemd-socket-activate", "systemd")

    def flags(self, name):
        return ["--lockfile", lockfile(self, name), "--config", empty_config(self), "--rate-limit", "1000"]

    def test_streamSocket(self):
        """
        C{systemd-socket-activate -l 127.0.0.1:P uhppoted-tunnel --in
        tcp/server:systemd ...}: the site half, started by the host's
        first connection, serves it on the passed socket, and the uhppoted
        client's discovery is answered by both controllers.
        """
        return self.streamSocket(["--fdname=tunnel"], "tcp/server:systemd")

    def test_streamSocketWithoutNames(self):
        """
        As its manual shows it, without C{--fdname}: C{systemd-socket-activate}
        passes C{LISTEN_FDS} and C{LISTEN_PID} but no C{LISTEN_FDNAMES}, and
        C{tcp/server:systemd:0} takes the socket all the same.
        """
        return self.streamSocket([], "tcp/server:systemd:0")

    @inlineCallbacks
    def streamSocket(self, names, connector):
        _, emulator_port = yield start_emulator(self, *SERIALS)
        port = free_port()
        site = spawn(self, [self.activate, "-l", "127.0.0.1:{}".format(port)] + names + tunnel_command() + [
            "--in", connector, "--out", "udp/broadcast:127.0.0.1:{}".format(emulator_port),
            "--udp-timeout", "1s"] + self.flags("site"), "site")
        yield site.waitFor(r"Listening on 127\.0\.0\.1:{}".format(port))
        host = spawn(self, tunnel_command() + ["--in", "udp/listen:127.0.0.1:0", "--out",
                                               "tcp/client:127.0.0.1:{}".format(port)] + self.flags("host"), "host")
        udp_port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        yield host.waitFor(connected_line(port))
        yield site.waitFor(r"listening on 127\.0\.0\.1:{}".format(port))
        replies = yield retry(Client(udp_port).get_all_controllers, accept=lambda replies: len(replies) == 2)
        self.assertEqual(sorted(reply.controller for reply in replies), sorted(SERIALS))

    @inlineCallbacks
    def test_datagramSocket(self):
        """
        C{systemd-socket-activate --datagram -l 127.0.0.1:P uhppoted-tunnel
        --in udp/listen:systemd:NAME ...}: the host half, started by the
        first request, reads that very request from the passed socket; once
        its site is connected, the uhppoted client's discovery is answered
        by both controllers.
        """
        _, emulator_port = yield start_emulator(self, *SERIALS)
        stream = free_port()
        udp_port = free_port()
        host = spawn(self, [self.activate, "--datagram", "-l", "127.0.0.1:{}".format(udp_port),
                            "--fdname=requests"] + tunnel_command() + [
            "--in", "udp/listen:systemd:requests", "--out", "tcp/server:127.0.0.1:{}".format(stream), "--debug"]
            + self.flags("host"), "host")
        yield host.waitFor(r"Listening on 127\.0\.0\.1:{}".format(udp_port))
        waker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(waker.close)
        waker.bind(("127.0.0.1", 0))
        waker.sendto(bytes([0x17, 0x94]) + bytes(62), ("127.0.0.1", udp_port))
        yield host.waitFor(r"listening on 127\.0\.0\.1:{} \(passed by systemd\)".format(udp_port))
        # the request that woke the host is read from the passed socket
        yield host.waitFor(r"UDP\s+received 64 bytes from 127\.0\.0\.1:{}$".format(waker.getsockname()[1]))
        site = spawn(self, tunnel_command() + ["--in", "tcp/client:127.0.0.1:{}".format(stream), "--out",
                                               "udp/broadcast:127.0.0.1:{}".format(emulator_port),
                                               "--udp-timeout", "1s"] + self.flags("site"), "site")
        yield site.waitFor(connected_line(stream))
        replies = yield retry(Client(udp_port).get_all_controllers, accept=lambda replies: len(replies) == 2)
        self.assertEqual(sorted(reply.controller for reply in replies), sorted(SERIALS))
