"""
The emulator on a real socket on 127.0.0.1, answering the C{uhppoted}
client library.
"""

import datetime

from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase
from uhppoted import decode
from uhppoted.uhppote import Uhppote

from uhppoted_tunnel.emulator import Controller, listen, push_events

A = 405419896
B = 303986753
PEER = ("127.0.0.1", 54321)
NOW = datetime.datetime(2024, 6, 1, 12, 30, 15)

class LoopbackTests(TestCase):
    """
    The C{uhppoted} client reaches the emulator over real UDP on 127.0.0.1.
    """

    def setUp(self):
        self.port = listen(reactor, [Controller(A), Controller(B)], "127.0.0.1", 0)
        self.addCleanup(self.port.stopListening)
        self.address = f"127.0.0.1:{self.port.getHost().port}"

    @inlineCallbacks
    def test_uhppotedClient(self):
        """
        get_all_controllers finds both controllers and get_controller reaches one by address.
        """
        client = Uhppote(bind="127.0.0.1", broadcast=self.address, listen="127.0.0.1:0")
        found = yield deferToThread(client.get_all_controllers, timeout=0.5)
        self.assertEqual(sorted(reply.controller for reply in found), sorted([A, B]))
        reply = yield deferToThread(client.get_controller, (B, self.address), timeout=0.5)
        self.assertEqual(reply.controller, B)

    @inlineCallbacks
    def test_pushEvents(self):
        """
        Events pushed from the emulator's port reach a listener on
        127.0.0.1, from that port, in order.
        """
        received = []
        arrived = Deferred()

        class Listener(DatagramProtocol):
            def datagramReceived(self, data, addr):
                received.append((decode.event(data).event_index, addr[1]))
                if len(received) == 20:
                    arrived.callback(None)

        listener = reactor.listenUDP(0, Listener(), interface="127.0.0.1")
        self.addCleanup(listener.stopListening)
        sent = yield push_events(reactor, self.port, [Controller(A)], ("127.0.0.1", listener.getHost().port), 20, 0)
        self.assertEqual(sent, 20)
        yield arrived
        self.assertEqual(received, [(index, self.port.getHost().port) for index in range(1, 21)])
