# -*- test-case-name: tests.loopback.test_bursts -*-
"""
Bursts and floods against real C{uhppoted-tunnel} processes on 127.0.0.1.

A burst of events sent back to back by the emulator reaches the listener
complete, once, in order, or the site says exactly how many the kernel
dropped; a flood of bad datagrams at any UDP end makes a few log lines,
which count every one of them.

Nothing sleeps: a test waits for a line, an event, an exit, or for a
socket's queue in C{/proc/net/udp} to empty, each with a deadline.
"""

import datetime
import os
import re
import socket

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.task import LoopingCall
from twisted.trial.unittest import TestCase

from tests.gowire import go_packetize
from tests.loopback.processes import (
    DEADLINE,
    LOOPBACK,
    WaitTimeout,
    emulator_sent_line,
    listening_line,
    run_tunnel,
    start_event_emulator,
    stop,
)
from tests.loopback.eventpairs import (
    A,
    EventTunnels,
    stream_connected,
    stream_listening,
)
from uhppoted_tunnel.ends.udpsocket import kernel_drops, set_receive_buffer
from uhppoted_tunnel.emulator import Controller
from uhppoted_tunnel.testing import packet

#: The site's line for datagrams the kernel dropped (group 1: how many).
KERNEL_DROPPED = r"the kernel dropped (\d+) datagram\(s\) sent to 127\.0\.0\.1:\d+ before they could be read"

FLOOD = 10000


def udp_socket_state(port):
    """
    The receive queue (bytes) and the kernel's drop count of the IPv4 UDP
    socket bound to C{port}, from C{/proc/net/udp}.

    :return: C{(rx_queue, drops)}, or C{None} if no socket has that port.
    """
    with open("/proc/net/udp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port:
                return int(fields[4].split(":")[1], 16), int(fields[12])
    return None


def wait_until_read(port, timeout=DEADLINE, clock=reactor):
    """
    Wait until the process owning the UDP socket on C{port} has read
    everything queued on it.

    :return: a Deferred firing with the socket's drop count.
    """
    d = Deferred()
    end = clock.seconds() + timeout

    def check():
        state = udp_socket_state(port)
        if state is not None and state[0] == 0:
            loop.stop()
            d.callback(state[1])
        elif clock.seconds() > end:
            loop.stop()
            d.errback(WaitTimeout("UDP port {} still holds {} within {}s".format(port, state, timeout)))

    loop = LoopingCall(check)
    loop.clock = clock
    loop.start(0.05)
    return d


def flood(address, count=FLOOD):
    """
    Send C{count} datagrams to C{address}, empty and 1,500 bytes in turn,
    from a socket of its own.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for n in range(count):
            sock.sendto(b"" if n % 2 else bytes(1500), address)
    finally:
        sock.close()


class BurstTests(EventTunnels, TestCase):
    """
    The emulator fires events back to back at a site whose host is
    connected.
    """

    timeout = 240

    def setUp(self):
        EventTunnels.setUp(self)
        # the test's own listener must not drop what the host relays
        self.listener_socket = self.listener.transport.socket
        set_receive_buffer(self.listener_socket, 64 << 20)
        self.listener_drops = kernel_drops(self.listener_socket)

    @inlineCallbacks
    def burst(self, count):
        """
        Send C{count} events back to back through a site and host joined
        by TCP, then the test's last event; stop the site.

        :return: a Deferred firing with C{(indexes received, datagrams the
            site reported the kernel dropped)}.
        """
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port))
        yield site.waitFor(stream_connected("tcp", stream_port))
        site_port = yield self.site_port(site)
        emulator, _ = yield start_event_emulator(self, site_port, count, "0", serials=[A])
        yield emulator.waitFor(emulator_sent_line(count), timeout=120)
        # the site has read all it will read (so the last event has room)
        yield wait_until_read(site_port, timeout=120)
        # the last event wakes the site once more, after the burst: its
        # drop count is then complete, and every event the site read has
        # been relayed once this one arrives
        yield self.finish(site_port)
        code = yield stop(site)
        self.assertEqual(code, 0, site.recent())
        self.assertEqual(kernel_drops(self.listener_socket), self.listener_drops, "the test's listener dropped")
        self.assertNotIn("Traceback", site.output() + host.output())
        dropped = sum(int(n) for n in re.findall(KERNEL_DROPPED, site.output()))
        # what the site says its full buffer lost (the last count is the
        # total): an event dropped from the buffer after it was sent, and
        # acknowledged later, was delivered
        full = [line for line in site.output().splitlines() if "event buffer full" in line]
        lost = [int(n) for line in full for n in re.findall(r"(\d+) are lost", line)]
        self.assertEqual(len(lost), len(full), "\n".join(full))
        self.buffer_lost = lost[-1] if lost else 0
        return self.events.of(A), dropped

    @inlineCallbacks
    def test_burst3000(self):
        """
        A burst of 3,000 events sent back to back arrives complete, once,
        in order, and the site reports no drop.
        """
        received, dropped = yield self.burst(3000)
        self.assertEqual((len(received), dropped), (3000, 0))
        self.assertEqual(received, list(range(1, 3001)))

    @inlineCallbacks
    def test_burst20000(self):
        """
        A burst of 20,000 events arrives in order and once each, and what
        is missing is exactly what the site says the kernel dropped.
        """
        received, dropped = yield self.burst(20000)
        self.assertEqual(received, sorted(set(received)), "events out of order or duplicated")
        missing = 20000 - len(received)
        self.assertEqual(missing, dropped + self.buffer_lost, "{} events missing, {} reported dropped, {} reported "
                         "lost from the buffer".format(missing, dropped, self.buffer_lost))


class FloodTests(EventTunnels, TestCase):
    """
    10,000 datagrams of 0 or 1,500 bytes at a tunnel's UDP ends make fewer
    than 20 log lines, and the warnings count every one of them.
    """

    timeout = 120

    def counted(self, output):
        """
        The datagrams the warnings in C{output} account for.
        """
        bad = re.findall(r"dropped (\d+|a) (?:request|event|repl)\S* (?:of \d+ bytes|empty or over)", output)
        return sum(1 if n == "a" else int(n) for n in bad) + sum(int(n) for n in re.findall(KERNEL_DROPPED, output))

    @inlineCallbacks
    def flooded(self, half, port):
        """
        Flood C{port}, owned by C{half}, wait until it has read everything,
        stop it, and check its log.
        """
        mark = half.mark()
        flood((LOOPBACK, port))
        drops = yield wait_until_read(port)
        code = yield stop(half)
        self.assertEqual(code, 0, half.recent())
        lines = [text for _, text in half.lines[mark:]]
        self.assertLess(len(lines), 20, half.recent(40))
        return self.counted("\n".join(lines)), drops

    @inlineCallbacks
    def test_listen(self):
        """
        At a host's udp/listen end: every datagram is counted in a warning
        (or in the kernel's drop report), in fewer than 20 lines.
        """
        host = run_tunnel(self, "host", "--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0")
        port = int((yield host.waitFor(listening_line("UDP"))).group(1))
        counted, _ = yield self.flooded(host, port)
        self.assertEqual(counted, FLOOD, host.output())

    @inlineCallbacks
    def test_eventIn(self):
        """
        At a site's udp/event in end: the same.
        """
        site = self.site(0, "tcp/client:127.0.0.1:1")
        port = yield self.site_port(site)
        counted, _ = yield self.flooded(site, port)
        self.assertEqual(counted, FLOOD, site.output())

    @inlineCallbacks
    def test_broadcast(self):
        """
        Bad replies at a site's udp/broadcast end: fewer than 20 lines,
        which count every reply the kernel did not drop.
        """
        controllers = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.addCleanup(controllers.close)
        controllers.bind((LOOPBACK, 0))
        controllers.settimeout(DEADLINE)
        site = run_tunnel(self, "site", "--in", "tcp/server:127.0.0.1:0", "--out",
                          "udp/broadcast:127.0.0.1:{}".format(controllers.getsockname()[1]))
        stream_port = int((yield site.waitFor(stream_listening("tcp"))).group(1))
        peer = yield self.go_site(stream_port)
        peer.transport.write(go_packetize(1, packet(0x94, A)))
        _, reply_address = yield self.receive(controllers)
        counted, drops = yield self.flooded(site, reply_address[1])
        self.assertEqual(counted + drops, FLOOD, site.output())

    @inlineCallbacks
    def test_eventOut(self):
        """
        Datagrams sent back to a host's udp/event out end: fewer than 20
        lines, which count every one the kernel did not drop.
        """
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        peer = yield self.go_site(stream_port)
        senders = []
        received = self.listener.datagramReceived
        self.listener.datagramReceived = lambda data, address: (senders.append(address), received(data, address))
        peer.transport.write(go_packetize(1, Controller(A).event(datetime.datetime.now())))
        yield self.events.waitForKey((A, 1))
        sender = senders[0]
        counted, drops = yield self.flooded(host, sender[1])
        self.assertEqual(counted + drops, FLOOD, host.output())

    def receive(self, sock):
        """
        :return: a Deferred firing with C{(data, address)} of the next
            datagram on a blocking socket, read in a thread.
        """
        from twisted.internet.threads import deferToThread

        return deferToThread(sock.recvfrom, 2048)


class BurstCapacity(EventTunnels, TestCase):
    """
    How big a burst the defaults absorb: not a test but the measurement
    the README quotes, run only when asked::

        BURST=20000 BURST_STOPPED=1 python -m twisted.trial tests.loopback.test_bursts.BurstCapacity

    C{BURST} events are sent by a plain loop as fast as it can (with
    C{BURST_STOPPED}, to a site stopped with SIGSTOP, so that only its
    receive buffer holds them); the result line is printed on stderr.
    C{BURST_SITE_FLAGS} adds flags to the site (e.g. C{--udp-receive-buffer
    16777216}).
    """

    timeout = 600
    setUp = BurstTests.setUp

    if "BURST" not in os.environ:
        skip = "a measurement: set BURST=N to run it"

    @inlineCallbacks
    def test_measure(self):
        import signal
        import sys

        count = int(os.environ["BURST"])
        stopped = bool(os.environ.get("BURST_STOPPED"))
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        site = self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port),
                         *os.environ.get("BURST_SITE_FLAGS", "").split())
        yield site.waitFor(stream_connected("tcp", stream_port))
        site_port = yield self.site_port(site)
        controller = Controller(A)
        now = datetime.datetime.now()
        packets = [controller.event(now) for _ in range(count)]
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if stopped:
            site.send_signal(signal.SIGSTOP)
        for data in packets:
            sock.sendto(data, (LOOPBACK, site_port))
        sock.close()
        if stopped:
            site.send_signal(signal.SIGCONT)
        yield wait_until_read(site_port, timeout=120)
        yield self.finish(site_port)
        yield stop(site)
        received = self.events.of(A)
        dropped = sum(int(n) for n in re.findall(KERNEL_DROPPED, site.output()))
        sys.stderr.write("burst {} ({}): {} received, {} reported dropped by the kernel, in order: {}\n".format(
            count, "site stopped" if stopped else "site running", len(received), dropped,
            received == sorted(set(received))))
        self.assertEqual(count - len(received), dropped)
