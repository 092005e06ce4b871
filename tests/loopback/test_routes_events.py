"""
Many sites, one host, events: an event host half (tcp/server -> udp/event)
with several site halves, each with its own controller; every site's
events reach the listener, each once and in order (acknowledged and
de-duplicated per site, as with one).
"""

from twisted.internet.defer import gatherResults, inlineCallbacks
from twisted.trial.unittest import TestCase

from tests.loopback.eventpairs import EventTunnels, stream_connected, stream_listening
from tests.loopback.processes import emulator_sent_line, start_event_emulator

SERIALS = (100000001, 100000002, 100000003)
COUNT = 50


class ManySitesEventTests(EventTunnels, TestCase):
    @inlineCallbacks
    def test_everySite(self):
        """
        Three sites dialling one host: all 50 events of each site's
        controller reach the listener, in order, none twice.
        """
        host = self.host("tcp/server:127.0.0.1:0")
        stream_port = int((yield host.waitFor(stream_listening("tcp"))).group(1))
        sites = [self.site(0, "tcp/client:127.0.0.1:{}".format(stream_port), name="site{}".format(n))
                 for n in range(len(SERIALS))]
        yield gatherResults([site.waitFor(stream_connected("tcp", stream_port)) for site in sites])
        ports = yield gatherResults([self.site_port(site) for site in sites])
        emulators = []
        for n, (serial, port) in enumerate(zip(SERIALS, ports)):
            emulator, _ = yield start_event_emulator(self, port, COUNT, "10ms", serials=[serial],
                                                     name="emulator{}".format(n))
            emulators.append(emulator)
        yield gatherResults([emulator.waitFor(emulator_sent_line(COUNT)) for emulator in emulators])
        yield gatherResults([self.events.waitForKey((serial, COUNT)) for serial in SERIALS])
        for port in ports:
            yield self.finish(port)
        for serial in SERIALS:
            self.assertEqual(self.events.of(serial), list(range(1, COUNT + 1)))
        for half in sites + [host]:
            self.assertNotIn("Traceback", half.output())
