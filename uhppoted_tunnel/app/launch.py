# -*- test-case-name: tests.loopback.test_integration -*-
"""
What the console script (L{uhppoted_tunnel.app.cli}) and the twistd plugin
(L{uhppoted_tunnel.app.tap}) share to start a tunnel: take the lockfile and
build the service (the descriptor limit raised first,
L{uhppoted_tunnel.app.descriptors}), stop the reactor on a failure, reload certificates on
SIGHUP. Both import it; neither imports the other.
"""

import resource
import signal

from twisted.internet.error import ReactorNotRunning

from uhppoted_tunnel.app.descriptors import fit_caps, needed, raise_limit
from uhppoted_tunnel.app.lockfile import Lockfile
from uhppoted_tunnel.app.tunnel import TunnelService


def build(options, reactor):
    """
    Take the lockfile and build the tunnel.

    :param options: parsed L{uhppoted_tunnel.app.options.Options}.
    :param reactor: the reactor.
    :return: a L{TunnelService}.
    :raise ValueError: for a connector that cannot be built, or an event
        spool that cannot be written.
    :raise LockfileError: when another copy holds the lockfile.
    """
    options.checkFiles()
    fit_caps(options, raise_limit(needed(options), resource))
    lock = Lockfile(options["lockfile"])
    lock.acquire()
    try:
        return TunnelService(options, reactor, lock)
    except BaseException:
        lock.release()
        raise


def stop_reactor(reactor):
    """
    Stop the reactor, unless it is stopping already (a failure while the
    tunnel stops, such as an event spool that cannot be written: the exit
    code still says it).
    """
    try:
        reactor.stop()
    except ReactorNotRunning:
        pass


def reload_on_hangup(service, reactor):
    """
    On SIGHUP, the tunnel reads its TLS certificates again (on the
    reactor's thread, not in the signal handler).
    """
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda signum, frame: reactor.callFromThread(service.reloadCertificates))
