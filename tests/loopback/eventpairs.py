# -*- test-case-name: tests.loopback.test_events_integration,tests.loopback.test_spool,tests.loopback.test_zmq,tests.loopback.test_xmpp -*-
"""
Event tunnels on real loopback sockets, shared by the test modules that
run one: the test as the application's event listener (L{Events},
L{EventListener}), a Go host or site played by hand (L{GoHost},
L{GoSite}), and L{EventTunnels}, a mixin that starts the halves, checks
what arrived, and can freeze a host at the moment a kill hurts most.

Every event is decoded with C{uhppoted.decode.event} and known by its
controller and event index. A test knows it has seen everything the tunnel
will ever deliver by sending a last event of its own, from controller
L{LAST}, into the site after the rest have arrived: the tunnel keeps
order, so when that one arrives any duplicate still on its way has
arrived before it.
"""

import datetime
import os
import signal
import struct

from twisted.internet import reactor
from twisted.internet.defer import inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Protocol
from uhppoted import decode

from tests import certs
from tests.gowire import go_depacketize
from tests.loopback.processes import DEADLINE, LOOPBACK, listening_line, run_tunnel, wait_for_lines, workdir
from uhppoted_tunnel.emulator import Controller
from uhppoted_tunnel.testing import NOT_YET, Conditions

#: The controller whose events are counted.
A = 405419896
#: The controller of the test's own last event (see the module docstring).
LAST = 303986753

COUNT = 200

#: The session of the sites the tests play by hand.
SESSION = bytes(range(16))

#: The line a site run with --debug logs as its udp/event end reads an
#: event, just before the event goes into its buffer (and out, if connected).
RECEIVED = r"\bUDP\s+received 64 bytes from 127\.0\.0\.1:"


def stream_listening(kind):
    """
    :param kind: C{"tcp"} or C{"tls"}.
    :return: a regex for the line a stream server end logs once it listens
        (group 1: the port).
    """
    return r"\b" + kind.upper() + r"\s+listening on 127\.0\.0\.1:(\d+)\s*$"


def stream_connected(kind, port=None):
    """
    :return: a regex for the line a stream end logs once connected (over
        TLS: once the handshake is done).
    """
    return r"\b" + kind.upper() + r"\s+connected to 127\.0\.0\.1:" + (r"\d+" if port is None else str(port)) + r"\s*$"


def udp_event(port):
    return "udp/event:{}:{}".format(LOOPBACK, port)


def seen_ids(path):
    """
    The frame ids recorded in a C{.seen} spool, read by hand: an 8-byte
    header, then 20-byte records, a 16-byte session and a little-endian
    32-bit frame id. (A site numbers the events of one controller from 1
    in the order they came, so with one emulated controller a frame id is
    the event index.)
    """
    with open(path, "rb") as f:
        data = f.read()[8:]
    return {struct.unpack_from("<16sI", data, offset)[1] for offset in range(0, len(data) - len(data) % 20, 20)}


class Events:
    """
    Events in the order they arrived, as C{(controller, event_index)}, and
    waiting for one of them.
    """

    def __init__(self, clock=reactor):
        self.clock = clock
        self.keys = []
        self._conditions = Conditions(clock)

    def add(self, packet):
        event = decode.event(packet)
        self.keys.append((event.controller, event.event_index))
        self._conditions.check()

    def waitFor(self, wanted, description, timeout=DEADLINE):
        """
        :param wanted: C{keys -> bool}, checked after each event.
        :return: a Deferred firing once C{wanted} holds, or failing with
            L{WaitTimeout} after C{timeout} seconds.
        """
        return self._conditions.wait(lambda: None if wanted(self.keys) else NOT_YET, timeout,
                                     lambda: "no {} within {}s; {} event(s) arrived, the last {}".format(
                                         description, timeout, len(self.keys), self.keys[-5:]))

    def waitForKey(self, key, timeout=DEADLINE):
        return self.waitFor(lambda keys: key in keys, "event {} from {}".format(key[1], key[0]), timeout)

    def waitForCount(self, count, timeout=DEADLINE):
        return self.waitFor(lambda keys: len(keys) >= count, "{} events".format(count), timeout)

    def of(self, controller):
        return [index for serial, index in self.keys if serial == controller]


class EventListener(DatagramProtocol):
    """
    The application's event listener on 127.0.0.1: decodes every packet.
    """

    noisy = False

    def __init__(self):
        self.events = Events()

    def datagramReceived(self, data, addr):
        self.events.add(data)


class GoHost(Protocol):
    """
    A Go host's stream end: reads event frames and never acknowledges one.
    """

    def __init__(self, events):
        self.events = events
        self.buffer = b""
        self.ids = []

    def dataReceived(self, data):
        frames, self.buffer = go_depacketize(self.buffer + data)
        for frame_id, payload in frames:
            self.ids.append(frame_id)
            self.events.add(payload)


class GoSite(Protocol):
    """
    A Go site's stream end: writes event frames, and reads and discards
    whatever comes back, as the Go tunnel's event sender does (keeping the
    frames only for the test to look at).
    """

    def __init__(self, clock=reactor):
        self.clock = clock
        self.buffer = b""
        self.returned = []
        self._conditions = Conditions(clock)

    def dataReceived(self, data):
        frames, self.buffer = go_depacketize(self.buffer + data)
        self.returned.extend(frames)
        self._conditions.check()

    def waitForFrames(self, count, timeout=DEADLINE):
        """
        :return: a Deferred firing with the frames sent back once there are
            C{count}, or failing with L{WaitTimeout} after C{timeout} seconds.
        """
        return self._conditions.wait(lambda: self.returned if len(self.returned) >= count else NOT_YET, timeout,
                                     lambda: "{} of {} frames sent back within {}s".format(len(self.returned),
                                                                                          count, timeout))


class EventTunnels:
    """
    Starting the parts of an event tunnel, and checking what arrived.
    """

    timeout = 120

    def setUp(self):
        self.listener = EventListener()
        port = reactor.listenUDP(0, self.listener, interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        self.listener_port = port.getHost().port
        self.events = self.listener.events
        self.last = Controller(LAST)

    def site(self, inbound_port, out, *flags, name="site"):
        """
        Start a site half: C{udp/event} on loopback to C{out}.
        """
        return run_tunnel(self, name, "--in", udp_event(inbound_port), "--out", out, *flags)

    def host(self, inbound, *flags, name="host"):
        """
        Start a host half: C{inbound} to C{udp/event} at the test's listener.
        """
        return run_tunnel(self, name, "--in", inbound, "--out", udp_event(self.listener_port), *flags)

    @inlineCallbacks
    def site_port(self, site):
        """
        :return: the port of the site's C{udp/event} in end, once it listens.
        """
        return int((yield site.waitFor(listening_line("UDP"))).group(1))

    def spool(self, name):
        """
        :return: the path prefix of the event spool of the half called
            C{name} (its lockfile's path less the extension).
        """
        return os.path.join(workdir(self), name)

    @inlineCallbacks
    def finish(self, site_port, events=None):
        """
        Send one last event, from controller L{LAST}, to the site's
        C{udp/event} port and wait for it to come out of the tunnel: then
        everything the tunnel was still to deliver has arrived.
        """
        events = self.events if events is None else events
        packet = self.last.event(datetime.datetime.now())
        self.listener.transport.write(packet, (LOOPBACK, site_port))
        yield events.waitForKey((LAST, self.last.event_index))

    def assertEventsInOrder(self, expected, events=None):
        """
        Controller A's events arrived exactly as C{expected}: each once, in
        order, none missing; the test's last event came last.
        """
        events = self.events if events is None else events
        self.assertEqual(events.of(A), list(expected))
        self.assertEqual(events.keys[-1], (LAST, self.last.event_index))

    @inlineCallbacks
    def go_site(self, port):
        """
        Connect a L{GoSite} to a host's stream port; the test's cleanup
        drops the connection.

        :return: a Deferred firing with the connected L{GoSite}.
        """
        endpoint = TCP4ClientEndpoint(reactor, LOOPBACK, port, timeout=DEADLINE)
        site = yield connectProtocol(endpoint, GoSite())
        self.addCleanup(lambda: site.transport.abortConnection() if site.transport.connected else None)
        return site

    def tls_flags(self, role, client_auth=False):
        """
        :param role: C{"server"} or C{"client"}: which certificate to use.
        :return: the TLS flags of a half.
        """
        files = getattr(self, "_certs", None)
        if files is None:
            files = self._certs = certs.make(os.path.join(workdir(self), "certs"))
        cert, key = files[role]
        flags = ["--ca-cert", files["ca"][0], "--cert", cert, "--key", key]
        return flags + (["--client-auth"] if client_auth else [])

    @inlineCallbacks
    def freeze(self, host, site, attempts=10):
        """
        Stop the host (SIGSTOP) mid-stream at a moment when a kill will
        leave the site with events sent and never acknowledged, and the
        host with a record of every event it forwarded.

        The host forwards an event and then records it in its C{.seen}
        spool: a host killed between the two forwards that event again
        when it comes back, a duplicate no tunnel can avoid without risking
        a loss. Stopped there, it is let go and stopped again a few events
        later.
        """
        seen = self.spool("host") + ".seen"
        for _ in range(attempts):
            mark = site.mark()
            host.send_signal(signal.SIGSTOP)
            # with --debug the site logs each event as it reads it, and
            # sends it on at once; meanwhile this reactor has read every
            # event the host forwarded
            yield wait_for_lines(site, RECEIVED, 5, since=mark)
            if {index for serial, index in self.events.keys} <= seen_ids(seen):
                return
            host.send_signal(signal.SIGCONT)
            yield self.events.waitForCount(len(self.events.keys) + 5)
        self.fail("the host was stopped between forwarding an event and recording it {} times".format(attempts))
