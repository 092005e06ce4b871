# -*- test-case-name: tests.unit.test_tunnel -*-
"""
A tunnel: one in end and one out end joined by a router, as one
C{MultiService}.

The out end starts first and stops last, so that nothing the in end
accepts has nowhere to go. C{stopService} returns a Deferred that fires
once every socket of both ends is closed.
"""

import os
import platform

from twisted.application.service import MultiService, Service
from twisted.internet.defer import gatherResults
from twisted.logger import Logger

from uhppoted_tunnel import __version__
from uhppoted_tunnel.core.traffic import TrafficLog
from uhppoted_tunnel.interfaces import IN, OUT, ISecureEnd
from uhppoted_tunnel.core.router import Router
from uhppoted_tunnel.link.accepts import AcceptFailuresService
from uhppoted_tunnel.observe.defaults import DEFAULT_MAX_STREAMS
from uhppoted_tunnel.observe.telemetry import Telemetry, TelemetryService


class LockfileService(Service):
    """
    Holds the tunnel's lockfile while it runs.

    The lock is taken when the service is built (so a second copy fails
    before anything listens); the pid is written again on start, after
    twistd may have forked.
    """

    def __init__(self, lock):
        self.lock = lock

    def startService(self):
        Service.startService(self)
        self.lock.write_pid()

    def stopService(self):
        Service.stopService(self)
        self.lock.release()


def metrics_service(options, telemetry, reactor):
    """
    The C{--metrics} service and its status page. Their modules
    (C{twisted.web}, C{prometheus_client}, the page) are imported here, so
    that a tunnel that serves no metrics never loads them.
    """
    from uhppoted_tunnel.observe.monitor import monitor_service
    from uhppoted_tunnel.observe.status import StatusPage

    page = StatusPage(telemetry.snapshot, reactor, max_streams=options.get("max-status-streams", DEFAULT_MAX_STREAMS),
                      stall_timeout=options["stall-timeout"])
    return monitor_service(options["metrics"], telemetry, options, reactor, page=page)


class TunnelService(MultiService):
    """
    Relays requests from the in end to the out end and replies back.

    :ivar failure: C{None}, or the message of the error that stopped the
        tunnel (a server that cannot listen, a client out of retries).
    :ivar telemetry: its L{uhppoted_tunnel.observe.telemetry.Telemetry}.
    :ivar monitor: the C{--metrics} service, or C{None}.
    """

    log = Logger()
    log_tag = "TUNNEL"

    def __init__(self, options, reactor, lock=None):
        """
        :param options: parsed L{uhppoted_tunnel.app.options.Options}.
        :param reactor: the reactor for every socket and timer.
        :param lock: an acquired L{uhppoted_tunnel.app.lockfile.Lockfile}, or
            C{None}.
        :raise ValueError: when an end cannot be built from its connector
            string.
        """
        MultiService.__init__(self)
        self.reactor = reactor
        self.failure = None
        self.on_failure = None
        self._failing = None
        if lock is not None:
            LockfileService(lock).setServiceParent(self)
        self.telemetry = Telemetry(reactor, options["events"])
        # first, so that it hears every warning the ends log as they start
        TelemetryService(self.telemetry, reactor).setServiceParent(self)
        # accepts that fail for want of descriptors, a warning
        AcceptFailuresService(reactor).setServiceParent(self)
        out_maker, out_spec = options.ends[OUT]
        in_maker, in_spec = options.ends[IN]
        # an out end is handed requests: it needs no router
        self.out = out_maker.makeEnd(out_spec, OUT, options, None, reactor)
        if options["events"]:
            # a burst of events is normal for a busy site: no limit unless asked
            self.router = Router(reactor, options["event-rate-limit"], options["rate-limit-burst"], out=self.out)
        else:
            self.router = Router(reactor, options["rate-limit"], options["rate-limit-burst"],
                                 options["rate-limit-per-source"], options["rate-limit-per-source-burst"],
                                 out=self.out)
        if not options["events"] and options.get("log-level", "info") in ("debug", "info"):
            self.router.traffic = TrafficLog(reactor, out_spec.text)
        self.in_ = in_maker.makeEnd(in_spec, IN, options, self.router, reactor)
        self.telemetry.watch(self.router, (self.in_, self.out))
        self.monitor = None
        if options.get("metrics"):
            self.monitor = metrics_service(options, self.telemetry, reactor)
            self.telemetry.enable()
        self.telemetry.hook()
        for end in (self.out, self.in_, self.monitor):
            if end is not None:
                end.setServiceParent(self)
                end.whenFailed().addCallback(self.fail)
        self.description = "{} -> {}".format(in_spec.text, out_spec.text)

    def startService(self):
        # Go: "uhppoted-tunnel service v0.8.x - Linux (PID ...)"
        self.log.info("uhppoted-tunnel v{version} - {system} (PID {pid}): starting {description}",
                      version=__version__, system=platform.system(), pid=os.getpid(), description=self.description)
        # MultiService.startService, less the ends after one that failed at
        # once (a port in use): nothing more should open
        Service.startService(self)
        for service in self:
            if self.failure is not None:
                break
            service.startService()

    def reloadCertificates(self):
        """
        Read the TLS certificates, keys and CAs again (SIGHUP): connections
        made from now on use them; those made already carry on. A bad file
        is a warning, and the ones in use stay.
        """
        for end in (self.out, self.in_):
            if ISecureEnd.providedBy(end):
                end.reloadCertificates()

    def whenListening(self):
        """
        :return: a Deferred that fires once both ends listen (or, for an end
            that dials, have started), or fails with the first end's
            L{uhppoted_tunnel.link.lifecycle.EndFailed}.
        """
        services = [self.out, self.in_] + ([self.monitor] if self.monitor is not None else [])
        return gatherResults([service.whenListening() for service in services], consumeErrors=True).addCallbacks(
            lambda _: None, lambda failure: failure.value.subFailure)

    def stopService(self):
        if self._failing is not None and self._failing.active():
            self._failing.cancel()
        self.log.info("stopping")
        self.router.stop()
        return MultiService.stopService(self)

    def fail(self, message):
        """
        Stop the tunnel because of an error it cannot get past.

        :param message: what went wrong, one line.
        """
        if self.failure is not None:
            return
        self.failure = message
        if self.on_failure is None:
            return
        if self.running:
            # on the next turn of the reactor: an end may fail in the middle
            # of a state change (ClientService's), which must not be asked
            # to stop from within
            self._failing = self.reactor.callLater(0, self.on_failure, message)
        else:
            # failed while stopping (an event spool that cannot be written)
            self.on_failure(message)
