"""
Correctness under load: many concurrent applications asking two
controllers through a real tunnel pair on 127.0.0.1; no reply may reach a
requester it was not meant for.
"""

import datetime

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase
from uhppoted import decode, encode

from uhppoted_tunnel import emulator
from uhppoted_tunnel.app import config
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.app.tunnel import TunnelService

SERIALS = emulator.DEFAULT_SERIALS
CLIENTS = 64
ROUNDS = 40


class Client(DatagramProtocol):
    """
    A closed-loop application: asks for its own card, alternately from each
    controller, and checks each reply is the answer to its own question.
    """

    def __init__(self, number, address):
        self.card = 100000 + number
        self.address = address
        self.rounds = 0
        self.wrong = []
        self.done = Deferred()
        self.timer = None

    def startProtocol(self):
        self.ask()

    def ask(self):
        self.serial = SERIALS[self.rounds % 2]
        self.transport.write(bytes(encode.get_card_request(self.serial, self.card)), self.address)
        self.timer = reactor.callLater(10, self.give_up)

    def give_up(self):
        self.timer = None
        self.done.errback(AssertionError("card {}: no reply to round {} within 10s".format(self.card, self.rounds)))

    def datagramReceived(self, data, address):
        reply = decode.get_card_response(data)
        if (reply.controller, reply.card_number) != (self.serial, self.card):
            self.wrong.append((reply.controller, reply.card_number))
            return
        self.timer.cancel()
        self.rounds += 1
        if self.rounds == ROUNDS:
            self.done.callback(self)
        else:
            self.ask()


class Probe(DatagramProtocol):
    """
    Asks get-controller until a reply comes back through the tunnel (once a
    second: the host holds only a few requests until the site connects).
    """

    def __init__(self, address):
        self.address = address
        self.answered = Deferred()
        self.timer = None

    def startProtocol(self):
        self.ask()

    def ask(self):
        self.transport.write(bytes(encode.get_controller_request(SERIALS[0])), self.address)
        self.timer = reactor.callLater(1, self.ask)

    def datagramReceived(self, data, address):
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
            self.answered.callback(None)


class LoadTests(TestCase):
    timeout = 120

    def setUp(self):
        self.patch(config, "DEFAULT_CONFIG", self.mktemp())

    def start(self, *args):
        options = Options()
        options.parseOptions(list(args) + ["--rate-limit", "1000000", "--rate-limit-burst", "1000000"])
        service = TunnelService(options, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        return service

    @inlineCallbacks
    def test_noCrossedReplies(self):
        """
        64 applications each ask both controllers for their own card, 40
        times, all at once through a host and site pair: every reply goes to
        the application that asked, for the card and controller it asked
        about, and none is missing.
        """
        controllers = [emulator.Controller(serial) for serial in SERIALS]
        today = datetime.date.today()
        for controller in controllers:
            for number in range(CLIENTS):
                request = encode.put_card_request(controller.serial, 100000 + number, today, today, 1, 0, 0, 0, 0)
                controller.handle(bytes(request), datetime.datetime.now())
        port = emulator.listen(reactor, controllers)
        self.addCleanup(port.stopListening)
        host = self.start("--in", "udp/listen:127.0.0.1:0", "--out", "tcp/server:127.0.0.1:0")
        listening = yield host.out.whenListening()
        self.start("--in", "tcp/client:127.0.0.1:{}".format(listening.getHost().port),
                   "--out", "udp/broadcast:127.0.0.1:{}".format(port.getHost().port), "--udp-timeout", "5s")
        address = ("127.0.0.1", host.in_.port.getHost().port)
        probe = Probe(address)
        probe_port = reactor.listenUDP(0, probe, interface="127.0.0.1")
        self.addCleanup(probe_port.stopListening)
        yield probe.answered
        clients = [Client(number, address) for number in range(CLIENTS)]
        for client in clients:
            client_port = reactor.listenUDP(0, client, interface="127.0.0.1")
            self.addCleanup(client_port.stopListening)
        yield gatherResults([client.done for client in clients], consumeErrors=True)
        self.assertEqual([client.wrong for client in clients if client.wrong], [])
        self.assertEqual(sum(client.rounds for client in clients), CLIENTS * ROUNDS)
