"""
Tests for L{uhppoted_tunnel.observe.sdnotify}: systemd notifications from a fake
socket and a L{Clock}.
"""

import errno

from twisted.application.service import MultiService, Service
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import Logger, LogPublisher
from twisted.trial.unittest import SynchronousTestCase

from uhppoted_tunnel.observe import sdnotify


class FakeSocket:
    """
    Records what is sent; raises C{error} instead when it is set.
    """

    def __init__(self):
        self.sent = []
        self.error = None
        self.closed = False

    def sendto(self, data, address):
        if self.error is not None:
            raise OSError(self.error, "fake error")
        self.sent.append((data, address))

    def close(self):
        self.closed = True


class Recorder:
    """
    A notifier that records messages, each as one text.
    """

    def __init__(self):
        self.messages = []

    def send(self, *assignments):
        self.messages.append("\n".join(assignments))
        return True


class EnvironmentTests(SynchronousTestCase):
    def test_pathAddress(self):
        """
        A path in NOTIFY_SOCKET is the address as it is.
        """
        self.assertEqual(sdnotify.socket_address("/run/systemd/notify"), "/run/systemd/notify")

    def test_abstractAddress(self):
        """
        C{@NAME} is NAME in the abstract namespace (a leading NUL).
        """
        self.assertEqual(sdnotify.socket_address("@notify/1"), "\0notify/1")

    def test_otherAddress(self):
        """
        Anything but a path or C{@NAME} (a C{vsock:} address, a relative
        path, a bare C{@}) is refused.
        """
        for value in ("vsock:2:1234", "notify", "@"):
            self.assertIsNone(sdnotify.socket_address(value), value)

    def test_watchdogHalf(self):
        """
        The watchdog is kept every half C{WATCHDOG_USEC}.
        """
        self.assertEqual(sdnotify.watchdog_interval({"WATCHDOG_USEC": "30000000"}, 42), 15.0)

    def test_watchdogPid(self):
        """
        C{WATCHDOG_PID} naming this process keeps the watchdog; naming
        another (a parent that set it for itself) turns it off.
        """
        environ = {"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "42"}
        self.assertEqual(sdnotify.watchdog_interval(environ, 42), 1.0)
        self.assertIsNone(sdnotify.watchdog_interval(environ, 43))

    def test_noWatchdog(self):
        """
        No watchdog without a positive whole C{WATCHDOG_USEC}.
        """
        for environ in ({}, {"WATCHDOG_USEC": "0"}, {"WATCHDOG_USEC": "x"}, {"WATCHDOG_USEC": "-5"}):
            self.assertIsNone(sdnotify.watchdog_interval(environ, 42), environ)


class NotifierTests(SynchronousTestCase):
    def test_send(self):
        """
        One message is one datagram of newline-separated assignments, sent
        to the address.
        """
        sock = FakeSocket()
        notifier = sdnotify.Notifier("\0notify", sock)
        self.assertTrue(notifier.send("STOPPING=1", "STATUS=stopping"))
        self.assertEqual(sock.sent, [(b"STOPPING=1\nSTATUS=stopping", "\0notify")])

    def test_failureWarnsOnce(self):
        """
        A message that cannot be sent is dropped: the first failure is one
        warning, later ones are silent, and nothing raises.
        """
        publisher = LogPublisher()
        events = []
        publisher.addObserver(events.append)
        self.patch(sdnotify.Notifier, "log", Logger(observer=publisher))
        sock = FakeSocket()
        sock.error = errno.ECONNREFUSED
        notifier = sdnotify.Notifier("/nowhere", sock)
        self.assertFalse(notifier.send("READY=1"))
        self.assertFalse(notifier.send("WATCHDOG=1"))
        self.assertEqual(len(events), 1)
        self.assertIn("could not notify systemd", events[0]["log_format"])

    def test_newSocket(self):
        """
        Without a socket given, the notifier makes a non-blocking unix
        datagram socket.
        """
        notifier = sdnotify.Notifier("/nowhere")
        self.addCleanup(notifier.close)
        self.assertEqual(notifier._socket.type & 0xF, 2)  # SOCK_DGRAM
        self.assertFalse(notifier._socket.getblocking())


def event(text, namespace="uhppoted_tunnel.link.ends.ClientEnd", level=None, **fields):
    return {"log_format": text, "log_namespace": namespace, "log_level": level or sdnotify.LogLevel.info, **fields}


class StatusObserverTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.sent = []
        self.observer = sdnotify.StatusObserver(self.sent.append, self.clock, interval=1.0)

    def tearDown(self):
        self.observer.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_tunnelEvent(self):
        """
        An informational event of the tunnel's becomes a STATUS= line,
        formatted with its fields.
        """
        self.observer(event("connected to {peer}", peer="127.0.0.1:12345"))
        self.assertEqual(self.sent, ["STATUS=connected to 127.0.0.1:12345"])

    def test_warning(self):
        """
        Warnings are statuses too.
        """
        self.observer(event("could not connect to {address} ({reason}): retrying in {delay:g}s",
                            level=sdnotify.LogLevel.warn, address="127.0.0.1:1", reason="refused", delay=20.0))
        self.assertEqual(self.sent, ["STATUS=could not connect to 127.0.0.1:1 (refused): retrying in 20s"])

    def test_otherEvents(self):
        """
        Debug events, events from outside the tunnel (Twisted's own), and
        the notifier's own warning are not statuses.
        """
        self.observer(event("received {n} bytes", level=sdnotify.LogLevel.debug, n=3))
        self.observer(event("Starting factory", namespace="twisted.internet.protocol"))
        self.observer({"log_format": "no namespace", "log_level": sdnotify.LogLevel.info})
        self.observer(event("could not notify systemd", namespace="uhppoted_tunnel.observe.sdnotify.Notifier"))
        self.assertEqual(self.sent, [])

    def test_oneLine(self):
        """
        A status is one line of at most 200 characters.
        """
        self.observer(event("first\n    second " + "x" * 300))
        (status,) = self.sent
        self.assertNotIn("\n", status)
        self.assertTrue(status.startswith("STATUS=first second x"))
        self.assertEqual(len(status), len("STATUS=") + 200)
        self.assertTrue(status.endswith("..."))

    def test_rateLimit(self):
        """
        Within a second of a status, later lines are held and only the
        latest is sent, once the second has passed.
        """
        self.observer(event("one"))
        self.observer(event("two"))
        self.observer(event("three"))
        self.assertEqual(self.sent, ["STATUS=one"])
        self.clock.advance(0.5)
        self.assertEqual(self.sent, ["STATUS=one"])
        self.clock.advance(0.5)
        self.assertEqual(self.sent, ["STATUS=one", "STATUS=three"])
        self.clock.advance(5)
        self.observer(event("four"))
        self.assertEqual(self.sent, ["STATUS=one", "STATUS=three", "STATUS=four"])

    def test_repeat(self):
        """
        The same line twice is one status.
        """
        self.observer(event("listening on {a}", a="127.0.0.1:1"))
        self.clock.advance(2)
        self.observer(event("listening on {a}", a="127.0.0.1:1"))
        self.assertEqual(self.sent, ["STATUS=listening on 127.0.0.1:1"])

    def test_stopDropsHeld(self):
        """
        Stopping drops a held line and its timer.
        """
        self.observer(event("one"))
        self.observer(event("two"))
        self.observer.stop()
        self.clock.advance(2)
        self.assertEqual(self.sent, ["STATUS=one"])


class NotifyServiceTests(SynchronousTestCase):
    def setUp(self):
        self.clock = Clock()
        self.notifier = Recorder()
        self.publisher = LogPublisher()

    def tearDown(self):
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def service(self, ready=None, watchdog=None):
        return sdnotify.NotifyService(self.notifier, self.clock, ready=ready, watchdog=watchdog,
                                      publisher=self.publisher)

    def test_readyWhenListening(self):
        """
        READY=1 is sent when the Deferred it is given fires, not before.
        """
        ready = Deferred()
        service = self.service(ready)
        service.startService()
        self.assertNotIn("READY=1", self.notifier.messages)
        ready.callback(None)
        self.clock.advance(0)
        self.assertEqual(self.notifier.messages, ["READY=1"])
        service.stopService()

    def test_readyBeforeStart(self):
        """
        A Deferred that fired before the service started gives READY=1 on
        start.
        """
        ready = Deferred()
        service = self.service(ready)
        ready.callback(None)
        self.assertEqual(self.notifier.messages, [])
        service.startService()
        self.clock.advance(0)
        self.assertEqual(self.notifier.messages, ["READY=1"])
        service.stopService()

    def test_readyOnStart(self):
        """
        Given no Deferred, the service is ready when it starts (as the last
        child of a tunnel, after every end has started).
        """
        tunnel = MultiService()
        started = []

        class End(Service):
            def startService(self):
                started.append(list(notifier.messages))

        notifier = self.notifier
        End().setServiceParent(tunnel)
        self.service().setServiceParent(tunnel)
        tunnel.startService()
        self.clock.advance(0)
        self.assertEqual(started, [[]])
        self.assertEqual(self.notifier.messages, ["READY=1"])
        tunnel.stopService()

    def test_failedStart(self):
        """
        When an end cannot start, there is no READY=1, and the status says
        why.
        """
        ready = Deferred()
        service = self.service(ready)
        service.startService()
        ready.errback(RuntimeError("cannot listen on 127.0.0.1:80: permission denied"))
        self.assertEqual(self.notifier.messages, ["STATUS=could not start: cannot listen on 127.0.0.1:80: "
                                                  "permission denied"])
        service.stopService()

    def test_status(self):
        """
        While it runs, the tunnel's log lines are statuses; once stopped,
        not.
        """
        service = self.service()
        service.startService()
        self.clock.advance(0)
        log = Logger(namespace="uhppoted_tunnel.link.ends.ClientEnd", observer=self.publisher)
        log.info("connected to {peer}", peer="127.0.0.1:12345")
        service.stopService()
        log.info("after")
        self.assertEqual(self.notifier.messages, ["READY=1", "STATUS=connected to 127.0.0.1:12345",
                                                  "STOPPING=1\nSTATUS=stopping"])

    def test_readyOnceTurning(self):
        """
        READY=1 is sent from the reactor's loop, not from C{startService}
        (which twistd calls before the reactor runs), and not at all if the
        service stops first.
        """
        service = self.service()
        service.startService()
        self.assertEqual(self.notifier.messages, [])
        self.clock.advance(0)
        self.assertEqual(self.notifier.messages, ["READY=1"])
        service.stopService()
        early = self.service()
        early.startService()
        early.stopService()
        self.clock.advance(0)
        self.assertEqual(self.notifier.messages.count("READY=1"), 1)

    def test_stopping(self):
        """
        Stopping sends STOPPING=1 with a status.
        """
        service = self.service()
        service.startService()
        service.stopService()
        self.assertEqual(self.notifier.messages[-1], "STOPPING=1\nSTATUS=stopping")

    def test_watchdog(self):
        """
        With a watchdog interval, WATCHDOG=1 is sent at once and then every
        interval while the clock turns, and no more after stopping.
        """
        service = self.service(watchdog=15.0)
        service.startService()
        self.assertEqual(self.notifier.messages.count("WATCHDOG=1"), 1)
        self.clock.advance(15)
        self.clock.advance(15)
        self.assertEqual(self.notifier.messages.count("WATCHDOG=1"), 3)
        service.stopService()
        self.clock.advance(60)
        self.assertEqual(self.notifier.messages.count("WATCHDOG=1"), 3)

    def test_noWatchdog(self):
        """
        No interval, no WATCHDOG=1 and no timer.
        """
        service = self.service()
        service.startService()
        self.clock.advance(0)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        service.stopService()
        self.assertNotIn("WATCHDOG=1", self.notifier.messages)


class NotifyServiceForTests(SynchronousTestCase):
    def test_noSocket(self):
        """
        Without NOTIFY_SOCKET there is no service.
        """
        tunnel = MultiService()
        self.assertIsNone(sdnotify.notify_service(tunnel, Clock(), environ={}))
        self.assertEqual(list(tunnel), [])

    def test_unsupportedSocket(self):
        """
        A NOTIFY_SOCKET that is not a unix socket gives no service.
        """
        self.assertIsNone(sdnotify.notify_service(MultiService(), Clock(), environ={"NOTIFY_SOCKET": "vsock:2:9"}))

    def test_lastChild(self):
        """
        With NOTIFY_SOCKET, the service is the tunnel's last child, with the
        watchdog interval from the environment.
        """
        tunnel = MultiService()
        end = MultiService()
        end.setServiceParent(tunnel)
        service = sdnotify.notify_service(tunnel, Clock(), environ={
            "NOTIFY_SOCKET": "@test", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "7"}, pid=7)
        self.addCleanup(service.notifier.close)
        self.addCleanup(service.publisher.removeObserver, service.status)
        self.assertEqual(list(tunnel), [end, service])
        self.assertEqual(service.notifier.address, "\0test")
        self.assertEqual(service.watchdog, 0.5)
        self.assertIsNone(service.ready)

    def test_whenListening(self):
        """
        A tunnel with C{whenListening()} is ready when its Deferred fires.
        """
        ready = Deferred()
        tunnel = MultiService()
        tunnel.whenListening = lambda: ready
        service = sdnotify.notify_service(tunnel, Clock(), environ={"NOTIFY_SOCKET": "/run/x"})
        self.addCleanup(service.notifier.close)
        self.addCleanup(service.publisher.removeObserver, service.status)
        self.assertIs(service.ready, ready)

    def test_observesAtOnce(self):
        """
        The service observes the log from when it is made, so that the
        tunnel's first lines, logged as its ends start, are statuses too.
        """
        tunnel = MultiService()
        service = sdnotify.notify_service(tunnel, Clock(), environ={"NOTIFY_SOCKET": "/run/x"})
        self.addCleanup(service.notifier.close)
        self.addCleanup(service.publisher.removeObserver, service.status)
        sent = []
        service.status._send = sent.append
        Logger(namespace="uhppoted_tunnel.app.tunnel.TunnelService").info("starting")
        self.assertEqual(sent, ["STATUS=starting"])
