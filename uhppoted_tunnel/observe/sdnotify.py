# -*- test-case-name: tests.unit.test_sdnotify -*-
"""
systemd's service notification protocol (C{Type=notify} units).

The protocol is a few lines: each message is one datagram of
C{KEY=VALUE} lines sent to the C{AF_UNIX} datagram socket named by
C{NOTIFY_SOCKET} (a path, or C{@NAME} for the abstract namespace). It is
written here rather than taken from a library: the C{sdnotify} package
on PyPI is unmaintained, blocks, and hides every error; C{python-systemd}
needs C{libsystemd} headers to build. See C{sd_notify(3)}.

L{NotifyService} tells systemd what the tunnel is doing:

 - C{READY=1} once every end listens or has started dialling;
 - C{STATUS=...}, the tunnel's latest informational line ("connected to
   127.0.0.1:12345", "could not connect to ...: retrying in 20s"), at most
   one a second;
 - C{STOPPING=1} when it stops;
 - C{WATCHDOG=1} every half C{WATCHDOG_USEC} while the reactor turns.
"""

import os
import socket

from twisted.application.service import Service
from twisted.internet.task import LoopingCall
from twisted.logger import ILogObserver, Logger, LogLevel, formatEvent, globalLogPublisher
from zope.interface import implementer

#: The longest STATUS= text sent; systemctl shows one line.
MAX_STATUS = 200

#: The least time between two STATUS= messages, in seconds.
STATUS_INTERVAL = 1.0


def socket_address(value):
    """
    :param value: C{NOTIFY_SOCKET}: an absolute path or C{@NAME}.
    :return: the address for C{sendto}, or C{None} for anything else
        (systemd's C{vsock:} addresses are not supported).
    """
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(environ, pid):
    """
    How often to send C{WATCHDOG=1}: half of C{WATCHDOG_USEC}, when it is
    set and C{WATCHDOG_PID} (if set) names this process.

    :param environ: the environment.
    :param pid: this process's id.
    :return: seconds, or C{None} for no watchdog.
    """
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = environ.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            return None
    return usec / 2e6


class Notifier:
    """
    Sends notification datagrams to the service manager, never blocking
    and never raising: a message that cannot be sent is dropped, with one
    warning for the first.
    """

    log = Logger()
    log_tag = "SYSTEMD"

    def __init__(self, address, sock=None):
        """
        :param address: the address from L{socket_address}.
        :param sock: the socket to send from; a new non-blocking
            C{AF_UNIX} datagram socket when C{None}.
        """
        self.address = address
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock.setblocking(False)
        self._socket = sock
        self._warned = False

    def send(self, *assignments):
        """
        Send one message.

        :param assignments: C{"KEY=VALUE"} texts, one line each.
        :return: whether the message was sent.
        """
        data = "\n".join(assignments).encode("utf-8", "replace")
        try:
            self._socket.sendto(data, self.address)
        except OSError as e:
            if not self._warned:
                self._warned = True
                self.log.warn("could not notify systemd: {error}", error=e.strerror or e)
            return False
        return True

    def close(self):
        self._socket.close()


def one_line(text, limit=MAX_STATUS):
    """
    :return: C{text} on one line, at most C{limit} characters.
    """
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


@implementer(ILogObserver)
class StatusObserver:
    """
    Turns the tunnel's own informational events (and its warnings and
    errors) into C{STATUS=} messages, at most one every C{interval}
    seconds: a line that comes sooner is held, and only the latest held
    line is sent when the interval has passed.
    """

    def __init__(self, send, clock, interval=STATUS_INTERVAL):
        """
        :param send: called with C{"STATUS=..."}.
        :param clock: an C{IReactorTime}.
        :param interval: the least time between two messages, in seconds.
        """
        self._send = send
        self._clock = clock
        self._interval = interval
        self._held = None
        self._sent = None
        self._next = None
        self._call = None

    def __call__(self, event):
        namespace = event.get("log_namespace", "")
        if not namespace.startswith("uhppoted_tunnel") or namespace.startswith(__name__):
            return
        level = event.get("log_level")
        if level is None or level < LogLevel.info:
            return
        text = one_line(formatEvent(event))
        if not text:
            return
        self._held = text
        if self._call is not None:
            return
        now = self._clock.seconds()
        if self._next is None or now >= self._next:
            self._flush()
        else:
            self._call = self._clock.callLater(self._next - now, self._flush)

    def _flush(self):
        self._call = None
        text, self._held = self._held, None
        if text is None or text == self._sent:
            return
        self._sent = text
        self._next = self._clock.seconds() + self._interval
        self._send("STATUS=" + text)

    def stop(self):
        """
        Drop a held line and its timer.
        """
        self._held = None
        if self._call is not None:
            self._call.cancel()
            self._call = None


class NotifyService(Service):
    """
    Notifies systemd of the tunnel's progress; see the module docstring.

    Make it the last child of the tunnel's C{MultiService}: it starts after
    every end has started, and stops (sending C{STOPPING=1}) first.
    """

    log = Logger()
    log_tag = "SYSTEMD"

    def __init__(self, notifier, clock, ready=None, watchdog=None, publisher=globalLogPublisher):
        """
        :param notifier: a L{Notifier} (or anything with its C{send}).
        :param clock: an C{IReactorTime}, for the watchdog and the rate
            limit of C{STATUS=}.
        :param ready: a Deferred that fires once every end listens or has
            started dialling (and fails if one cannot); C{None} means the
            tunnel is ready when this service starts.
        :param watchdog: seconds between C{WATCHDOG=1} messages, or C{None}.
        :param publisher: the log publisher observed for C{STATUS=}.
        """
        self.notifier = notifier
        self.clock = clock
        self.ready = ready
        self.watchdog = watchdog
        self.publisher = publisher
        self.status = StatusObserver(notifier.send, clock)
        self._observing = False
        self._loop = None
        self._readyCall = None
        # None until the ends are ready (True) or one has failed (False)
        self._listening = True if ready is None else None
        if ready is not None:
            ready.addCallbacks(self._ready, self._failed)

    def observe(self):
        """
        Start turning log lines into statuses, if not yet: before the
        tunnel starts, so that its first lines ("listening on ...") are
        seen too.
        """
        if not self._observing:
            self._observing = True
            self.publisher.addObserver(self.status)

    def startService(self):
        Service.startService(self)
        self.observe()
        if self._listening:
            self._announce()
        if self.watchdog is not None:
            self._loop = LoopingCall(self.notifier.send, "WATCHDOG=1")
            self._loop.clock = self.clock
            self._loop.start(self.watchdog, now=True)

    def _ready(self, result):
        self._listening = True
        if self.running:
            self._announce()
        return result

    def _announce(self):
        # from the reactor's loop, so that systemd hears READY=1 only once
        # the reactor turns and handles SIGTERM (twistd starts services
        # before it runs the reactor)
        if self._readyCall is None:
            self._readyCall = self.clock.callLater(0, self.notifier.send, "READY=1")

    def _failed(self, reason):
        # the tunnel reports and acts on its own failure; systemd hears
        # no READY=1, and sees why in the status
        self._listening = False
        self.notifier.send("STATUS=" + one_line("could not start: " + reason.getErrorMessage()))
        return None

    def stopService(self):
        Service.stopService(self)
        self._observing = False
        self.publisher.removeObserver(self.status)
        self.status.stop()
        if self._readyCall is not None and self._readyCall.active():
            self._readyCall.cancel()
        self._readyCall = None
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        self.notifier.send("STOPPING=1", "STATUS=stopping")


def notify_service(tunnel, clock, environ=None, pid=None):
    """
    The L{NotifyService} for a tunnel run by systemd (C{NOTIFY_SOCKET} set),
    added as the tunnel's last child; nothing when C{NOTIFY_SOCKET} is not
    set.

    The tunnel's C{whenListening()}, where it has one, says when it is
    ready; a tunnel without it is ready once all its ends have started,
    which is when this service, its last child, starts.

    :param tunnel: the L{uhppoted_tunnel.app.tunnel.TunnelService}.
    :param clock: an C{IReactorTime}.
    :param environ: the environment, C{os.environ} when C{None}.
    :param pid: this process's id, C{os.getpid()} when C{None}.
    :return: the L{NotifyService}, or C{None}.
    """
    environ = os.environ if environ is None else environ
    value = environ.get("NOTIFY_SOCKET")
    if not value:
        return None
    address = socket_address(value)
    if address is None:
        NotifyService.log.warn("NOTIFY_SOCKET={value} is not a unix socket: not notifying systemd", value=value)
        return None
    # A tunnel that can say when every end listens (whenListening) is
    # ready then; one that cannot is ready once all its ends have started,
    # which is when this service starts as its last child: a server end
    # has listened by then, and a client end has begun dialling.
    when_listening = getattr(tunnel, "whenListening", None)
    ready = when_listening() if when_listening is not None else None
    interval = watchdog_interval(environ, os.getpid() if pid is None else pid)
    service = NotifyService(Notifier(address), clock, ready=ready, watchdog=interval)
    service.setServiceParent(tunnel)
    service.observe()
    return service
