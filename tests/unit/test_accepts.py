"""
Tests for L{uhppoted_tunnel.link.accepts}: accepts that fail for want of
descriptors are a throttled warning.
"""

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import ILogObserver, LogPublisher, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from uhppoted_tunnel.link.accepts import CLOSED, FAILED, PORT_NAMESPACE, AcceptFailures, AcceptFailuresService


def port_event(form, **fields):
    return dict(log_namespace=PORT_NAMESPACE, log_format=form, **fields)


class AcceptFailuresTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.logged = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.observer = AcceptFailures(self.clock, limit=lambda: 300)

    def warnings(self):
        return [e for e in self.logged if e.get("log_namespace", "").startswith("uhppoted_tunnel.link.accepts")]

    def test_interface(self):
        verifyObject(ILogObserver, self.observer)

    def test_throttledWarning(self):
        """
        The first failed accept is a warning at once naming the limit; a
        thousand more are one count 10 s later, naming the last peer
        closed unserved.
        """
        self.observer(port_event(FAILED, acceptError="EMFILE"))
        for n in range(1000):
            self.observer(port_event(CLOSED, address=("127.0.0.1", 40000 + n)))
        self.assertEqual(len(self.warnings()), 1)
        self.assertIn("(300)", self.warnings()[0]["what"])
        self.clock.advance(10)
        [first, second] = self.warnings()
        self.assertEqual((second["count"], second["last"]), (1000, ", the last from 127.0.0.1:40999"))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_otherEventsIgnored(self):
        """
        Other accept errors and other events are not counted.
        """
        self.observer(port_event(FAILED, acceptError="ECONNABORTED"))
        self.observer({"log_namespace": "elsewhere", "log_format": CLOSED, "address": ("127.0.0.1", 1)})
        self.assertEqual(self.observer.total, 0)

    def test_service(self):
        """
        The service hears the publisher while running, and tells what is
        left when it stops.
        """
        publisher = LogPublisher()
        service = AcceptFailuresService(self.clock, publisher, limit=lambda: 300)
        service.startService()
        publisher(port_event(FAILED, acceptError="ENFILE"))
        publisher(port_event(FAILED, acceptError="ENFILE"))
        service.stopService()
        publisher(port_event(FAILED, acceptError="ENFILE"))
        self.assertEqual([e["count"] for e in self.warnings()], [1, 1])
        self.assertEqual(self.clock.getDelayedCalls(), [])
