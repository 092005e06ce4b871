# -*- test-case-name: tests.loopback.test_integration,tests.loopback.test_proxy,tests.loopback.test_zmq,tests.loopback.test_xmpp,tests.loopback.test_grpc -*-
"""
Request tunnels on real loopback sockets, shared by the test modules that
run one: L{Pairs}, a mixin that starts the emulator and a pair of halves
and checks what comes back, and L{Pair}, the parts of a running pair.

The emulated controllers are L{A} and L{B}.
"""

import os
import signal

from twisted.internet.defer import inlineCallbacks

from tests.loopback.processes import (
    Client,
    connected_line,
    listening_line,
    start_emulator,
    start_host,
    start_site,
    stop,
)

A = 405419896
B = 303986753


class Pairs:
    """
    Starting emulators and tunnel pairs, and checking what comes back.
    """

    timeout = 120

    @inlineCallbacks
    def forward_pair(self, host_command=None):
        """
        Start the emulator (controllers A and B), a host half (udp/listen ->
        tcp/server) and a site half (tcp/client -> udp/broadcast), and wait
        until both ends of the TCP connection have logged it.

        :return: a Deferred firing with a namespace of the parts.
        """
        pair = Pair()
        pair.emulator, pair.emulator_port = yield start_emulator(self, A, B)
        pair.host, pair.udp_port = yield start_host(self, "tcp/server:127.0.0.1:0", command=host_command)
        pair.tcp_port = int((yield pair.host.waitFor(listening_line("TCP"))).group(1))
        pair.site = start_site(self, "tcp/client:127.0.0.1:{}".format(pair.tcp_port), pair.emulator_port)
        yield pair.site.waitFor(connected_line(pair.tcp_port))
        yield pair.host.waitFor(connected_line())
        pair.client = Client(pair.udp_port)
        return pair

    @inlineCallbacks
    def assertDiscovers(self, client, serials=(A, B)):
        """
        A broadcast get-controller through the tunnel is answered by
        exactly the emulated controllers, once each.
        """
        replies = yield client.get_all_controllers()
        self.assertEqual(sorted(reply.controller for reply in replies), sorted(serials))

    @inlineCallbacks
    def assertUnicast(self, client, serials=(A, B)):
        """
        A get-controller addressed to each serial is answered by that
        controller.
        """
        for serial in serials:
            reply = yield client.get_controller(serial)
            self.assertEqual(reply.controller, serial)

    @inlineCallbacks
    def assertCleanStop(self, child, name, lock, twistd=False):
        """
        The child holds C{lock} with its pid, exits 0 on signal C{name} with
        no traceback, and removes C{lock}.

        :param twistd: the child is twistd, which after a clean shutdown
            kills itself with the signal that stopped it (Twisted's
            C{app._exitWithSignal}); that counts as clean too.
        """
        with open(lock) as f:
            self.assertEqual(f.read().strip(), str(child.pid))
        code = yield stop(child, name)
        if twistd and code is None:
            self.assertEqual(child.signal, getattr(signal, "SIG" + name), child.recent())
            self.assertRegex(child.output(), r"Server Shut Down\.")
        else:
            self.assertEqual(code, 0, child.recent())
        self.assertNotIn("Traceback", child.output())
        self.assertFalse(os.path.exists(lock), "{} left {}".format(child.name, lock))

    @inlineCallbacks
    def assertUsageError(self, child, *fragments):
        """
        The child exits 2 with its error in one stderr line containing every
        fragment, no traceback, and
        without having listened.
        """
        code = yield child.exited()
        self.assertEqual(code, 2, child.recent())
        errors = child.output(2).splitlines()
        self.assertTrue(errors, "nothing on stderr\n" + child.recent())
        for fragment in fragments:
            self.assertIn(fragment, errors[0])
        self.assertEqual(errors[1:], [], child.recent())
        self.assertNotIn("Traceback", child.output())
        self.assertNotIn("listening on", child.output())
        self.assertEqual(child.output(1), "", "wrote to stdout before failing")
        return errors[0]


class Pair:
    """
    The parts of a running tunnel: processes, ports and a client.
    """
