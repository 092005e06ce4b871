# -*- test-case-name: tests.loopback.test_integration -*-
"""
The C{uhtunnel} twistd plugin: C{twistd -n uhtunnel --in ... --out ...}.

twistd has no way to report a configuration error or a fatal runtime
error as an exit code, so L{makeService} prints the one-line error and
exits 2 itself, and a tunnel that fails at run time (a port in use, a
client out of retries) stops the reactor and exits 1 once it has shut
down. (After a clean stop by a signal, twistd re-raises the signal on
itself, so its exit status is "killed by SIGTERM", as for any twistd
application.)
"""

import os
import sys

from uhppoted_tunnel.app.launch import build, reload_on_hangup, stop_reactor
from uhppoted_tunnel.app.lockfile import LockfileError
from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.observe.sdnotify import notify_service

__all__ = ["Options", "makeService", "build"]


def _maybeGlobalReactor(reactor):
    if reactor is None:
        from twisted.internet import reactor
    return reactor


def makeService(options, reactor=None):
    """
    Build the tunnel for twistd.

    :param options: parsed L{Options}.
    :param reactor: the reactor; the global one when C{None}.
    """
    reactor = _maybeGlobalReactor(reactor)
    try:
        service = build(options, reactor)
    except (ValueError, LockfileError) as e:
        sys.stderr.write("uhtunnel: {}\n".format(e))
        raise SystemExit(2)
    # under systemd (Type=notify): READY=1, STATUS=, STOPPING=1, WATCHDOG=1
    notify_service(service, reactor)

    def failed(message):
        # an end may fail while twistd starts the service, before the
        # reactor runs: stop it as soon as it does
        reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
        reactor.callWhenRunning(stop_reactor, reactor)

    service.on_failure = failed
    reload_on_hangup(service, reactor)
    return service
