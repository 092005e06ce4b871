# -*- test-case-name: tests.unit.test_stream,tests.unit.test_endpoints -*-
"""
Where a stream end listens or dials: a Go C{HOST:PORT} (bound to an
interface with C{::IFACE:}), or any Twisted endpoint description
(C{unix:/path}, C{systemd:domain=INET:index=0}, a plugin's).
"""

import os
import re
import socket
import sys

from twisted.internet import endpoints
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from uhppoted_tunnel import LISTEN_ENVIRONMENT
from uhppoted_tunnel.core.addresses import go_address, is_ip_address, parse_host_port
from uhppoted_tunnel.core.listenfds import PassedSockets
from uhppoted_tunnel.link.bind import FreebindReactor, reactor_for

#: Go: a client gives up dialling after 5 s.
DIAL_TIMEOUT = 5

#: A socket systemd passed, as a unit's C{ListenStream=} or
#: C{ListenDatagram=} makes it: C{systemd} (the first), C{systemd:N} (by
#: index) or C{systemd:NAME} (by C{FileDescriptorName=}).
_SYSTEMD = re.compile(r"^systemd(?::([^:=]+))?$")


def systemd_socket(spec, environ=None):
    """
    The descriptor of the socket systemd passed for a connector written
    C{KIND:systemd}, C{KIND:systemd:N} or C{KIND:systemd:NAME}.

    :param spec: the connector spec.
    :param environ: the environment (default C{os.environ}).
    :return: the descriptor, or C{None} when the address is not one of
        those forms.
    :raise ValueError: naming the connector when no such socket was
        passed (C{LISTEN_FDS}, C{LISTEN_FDNAMES}, C{LISTEN_PID}).
    """
    match = _SYSTEMD.match(spec.address)
    if match is None:
        return None
    if spec.interface is not None:
        raise ValueError("'{}': a socket systemd passes is bound by the unit, not by ::IFACE:".format(spec.text))
    which = match.group(1)
    passed = passed_sockets(environ)
    descriptors = passed.inheritedDescriptors()
    if which is None or which.isdigit():
        index = int(which or 0)
        if index < len(descriptors):
            return descriptors[index]
        raise ValueError("'{}': systemd passed no such socket ({} socket(s) passed; see the unit's "
                         "ListenStream=/ListenDatagram=, and LISTEN_FDS and LISTEN_PID)".format(
                             spec.text, len(descriptors)))
    named = passed.inheritedNamedDescriptors()
    if which in named:
        return named[which]
    if descriptors and not named:
        raise ValueError("'{}': systemd passed {} socket(s) but no names (LISTEN_FDNAMES): use {}:systemd:N, or "
                         "name them (FileDescriptorName= in the unit, --fdname with systemd-socket-activate)".format(
                             spec.text, len(descriptors), spec.prefix.rstrip(":")))
    raise ValueError("'{}': systemd passed no such socket (names {}; see the unit's ListenStream=/ListenDatagram= "
                     "and FileDescriptorName=)".format(spec.text, ", ".join(sorted(named)) or "none"))


def passed_sockets(environ=None):
    """
    The sockets passed to this process.

    :param environ: the environment (default: the one the process started
        with, L{uhppoted_tunnel.LISTEN_ENVIRONMENT}, or what Twisted read
        into its C{systemd:} endpoint parser, which C{check} replaces).
    :return: a L{PassedSockets} or Twisted's C{ListenFDs}.
    """
    if environ is not None:
        return PassedSockets.fromEnvironment(environ, os.getpid())
    started = PassedSockets.fromEnvironment(LISTEN_ENVIRONMENT, os.getpid())
    if started.inheritedDescriptors():
        return started
    return endpoints._SystemdParser._sddaemon


def adopt(descriptor):
    """
    Make a passed socket fit for the reactor: non-blocking
    (systemd-socket-activate, for one, passes blocking sockets, on which
    the reactor's read loop would wait for the next datagram instead of
    returning).

    :return: its address family, for the reactor's C{adopt*} methods.
    """
    os.set_blocking(descriptor, False)
    probe = socket.socket(fileno=descriptor)
    try:
        return probe.family
    finally:
        probe.detach()


@implementer(IStreamServerEndpoint)
class SystemdServerEndpoint:
    """
    Listens on a stream socket systemd passed (the family is read from
    the socket when it is adopted, not before).
    """

    def __init__(self, reactor, descriptor):
        self.reactor = reactor
        self.descriptor = descriptor

    def listen(self, factory):
        return endpoints.AdoptedStreamServerEndpoint(self.reactor, self.descriptor,
                                                      adopt(self.descriptor)).listen(factory)


def server_endpoint(reactor, spec, backlog=None, freebind=False):
    """
    The endpoint a stream server end listens on.

    :param reactor: the reactor.
    :param spec: the connector spec.
    :param backlog: the listen backlog of a C{HOST:PORT} address (default
        Twisted's, 50); an endpoint description sets its own.
    :param freebind: let a C{HOST:PORT} address be bound before it is up
        (C{--freebind}).
    :raise ValueError: for an unusable address.
    """
    descriptor = systemd_socket(spec)
    if descriptor is not None:
        return SystemdServerEndpoint(reactor, descriptor)
    parsed = _go_or_described(endpoints.serverFromString, reactor, spec)
    if not isinstance(parsed, tuple):
        return parsed
    host, port = parsed
    if host and not is_ip_address(host):
        raise ValueError("invalid address in '{}': listen on an IP address".format(spec.text))
    if freebind and not _memory_reactor(reactor):
        reactor = FreebindReactor(reactor)
    reactor = reactor_for(reactor, spec.interface)
    extra = {} if backlog is None else {"backlog": backlog}
    if ":" in host:
        return endpoints.TCP6ServerEndpoint(reactor, port, interface=host, **extra)
    return endpoints.TCP4ServerEndpoint(reactor, port, interface=host, **extra)


def _memory_reactor(reactor):
    """
    Whether C{reactor} is Twisted's C{MemoryReactor} (C{check} builds the
    ends on one), without importing C{twisted.internet.testing}, which
    imports trial: a reactor cannot be one unless that module is loaded.
    """
    testing = sys.modules.get("twisted.internet.testing")
    return testing is not None and isinstance(reactor, testing.MemoryReactor)


def client_endpoint(reactor, spec):
    """
    The endpoint a stream client end dials.

    :param reactor: the reactor.
    :param spec: the connector spec.
    :raise ValueError: for an unusable address.
    """
    parsed = _go_or_described(endpoints.clientFromString, reactor, spec)
    if not isinstance(parsed, tuple):
        return parsed
    host, port = parsed
    if not host or port == 0:
        raise ValueError("invalid address in '{}' (expected HOST:PORT)".format(spec.text))
    reactor = reactor_for(reactor, spec.interface)
    if is_ip_address(host):
        if ":" in host:
            return endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT)
        return endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT)
    return endpoints.HostnameEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT)


def _go_or_described(parse, reactor, spec):
    """
    :return: C{(host, port)} for a Go address, else the endpoint its
        Twisted description makes (with C{parse}, the server or client
        string parser).
    """
    parsed = go_address(spec.address)
    if parsed is not None:
        return parsed
    if spec.interface is not None:
        raise ValueError("'{}': an interface binding needs a HOST:PORT address".format(spec.text))
    return _described(parse, reactor, spec)


def _described(parse, reactor, spec):
    """
    An endpoint from a Twisted endpoint description, or a one-line error
    naming the connector (endpoint parsers raise all kinds of exceptions:
    the systemd parser an C{IndexError} when no socket was passed in).
    """
    head = spec.address.split(":", 1)[0]
    if not head or is_ip_address(head) or head == "localhost":
        # meant as HOST:PORT, not a description
        try:
            parse_host_port(spec.address)
        except ValueError as e:
            raise ValueError("'{}': {}".format(spec.text, e)) from None
        raise ValueError("invalid address in '{}' (expected HOST:PORT)".format(spec.text))
    try:
        return parse(reactor, spec.address)
    except Exception as e:
        reason = str(e) or type(e).__name__
        if isinstance(e, IndexError) and spec.address.startswith("systemd:"):
            reason = "no such socket was passed in (LISTEN_FDS/LISTEN_FDNAMES)"
        raise ValueError("'{}': not a usable endpoint: {}".format(spec.text, reason)) from None
