"""
A Python half against a peer that frames messages the way the Go tunnel
does, over real loopback sockets.

The peers here build and parse frames by hand, after the Go source
(protocol/message.go: Packetize and Depacketize), not with our codec, so
that a shared mistake cannot hide.
"""

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import DatagramProtocol, Factory, Protocol
from twisted.trial.unittest import TestCase

from tests.gowire import go_depacketize, go_packetize
from uhppoted_tunnel import emulator
from uhppoted_tunnel.app import config
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.testing import NOT_YET, Conditions
from uhppoted_tunnel.app.tunnel import TunnelService

SERIALS = emulator.DEFAULT_SERIALS


def get_controller(serial):
    return bytes([0x17, 0x94, 0, 0]) + serial.to_bytes(4, "little") + bytes(56)


class GoPeer(Protocol):
    """
    A raw stream peer: records frames, and can be told to answer requests.
    """

    def __init__(self, answer=None):
        self.answer = answer
        self.frames = []
        self.buffer = b""
        self.connected_ = Deferred()
        self._conditions = Conditions(reactor)

    def connectionMade(self):
        self.connected_.callback(self)

    def dataReceived(self, data):
        messages, self.buffer = go_depacketize(self.buffer + data)
        for frame_id, message in messages:
            self.frames.append((frame_id, message))
            if self.answer is not None:
                self.transport.write(go_packetize(frame_id, self.answer(message)))
        self._conditions.check()

    def waitFrames(self, count, timeout=30.0):
        return self._conditions.wait(lambda: self.frames[:count] if len(self.frames) >= count else NOT_YET, timeout,
                                     lambda: "{} of {} frames within {}s".format(len(self.frames), count, timeout))


class Application(DatagramProtocol):
    def __init__(self):
        self.replies = []
        self.waiting = None

    def datagramReceived(self, data, address):
        self.replies.append(data)
        if self.waiting is not None:
            d, self.waiting = self.waiting, None
            d.callback(data)


def tunnel(*args):
    options = Options()
    options.parseOptions(list(args) + ["--rate-limit", "1000"])
    return TunnelService(options, reactor)


class GoInteropTests(TestCase):
    timeout = 60

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def listen(self, factory):
        port = reactor.listenTCP(0, factory, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def start(self, service):
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @inlineCallbacks
    def test_pythonSiteServesGoHost(self):
        """
        A Go host's frames (two joined in one write, one split across two
        writes) reach a Python site, which answers each with its id.
        """
        controllers = emulator.listen(reactor, [emulator.Controller(serial) for serial in SERIALS])
        self.addCleanup(controllers.stopListening)
        host = GoPeer()
        port = self.listen(Factory.forProtocol(lambda: host))
        self.start(tunnel("--in", "tcp/client:127.0.0.1:{}".format(port),
                          "--out", "udp/broadcast:127.0.0.1:{}".format(controllers.getHost().port),
                          "--udp-timeout", "1s"))
        yield host.connected_
        first = go_packetize(0x01020304, get_controller(SERIALS[0]))
        second = go_packetize(7, get_controller(SERIALS[1]))
        third = go_packetize(0xFFFFFFFF, get_controller(SERIALS[0]))
        host.transport.write(first + second + third[:5])
        reactor.callLater(0.05, host.transport.write, third[5:])
        frames = yield host.waitFrames(3)
        answered = sorted((frame_id, int.from_bytes(message[4:8], "little")) for frame_id, message in frames)
        self.assertEqual(answered, sorted([(0x01020304, SERIALS[0]), (7, SERIALS[1]), (0xFFFFFFFF, SERIALS[0])]))
        self.assertTrue(all(len(message) == 64 and message[1] == 0x94 for _, message in frames))

    @inlineCallbacks
    def test_pythonHostServesGoSite(self):
        """
        A Go site connected to a Python host receives each application
        request as a Go frame, and its answer with the same id reaches the
        application.
        """
        reply = get_controller(SERIALS[0])[:8] + bytes(range(56))
        host = self.start(tunnel("--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0"))
        listening = yield host.out.whenListening()
        site = GoPeer(answer=lambda message: reply)
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", listening.getHost().port)
        connected = yield connectProtocol(endpoint, site)
        self.addCleanup(connected.transport.loseConnection)
        # sent whether or not the host has seen the connection yet: it holds
        # requests until a peer is there
        app = Application()
        app_port = reactor.listenUDP(0, app, interface="127.0.0.1")
        self.addCleanup(app_port.stopListening)
        app.waiting = Deferred()
        app_port.write(get_controller(SERIALS[0]), ("127.0.0.1", host.in_.port.getHost().port))
        received = yield app.waiting
        self.assertEqual(received, reply)
        [(frame_id, message)] = site.frames
        self.assertEqual(message, get_controller(SERIALS[0]))
