# -*- test-case-name: tests.loopback.test_ip,tests.unit.test_ip -*-
"""
The C{ip/out:ADDRESS} end: routes each request to its controller.

The TOML section's C{[SECTION.controllers]} table names controllers by
serial number: C{udp::IP:PORT} (or a bare C{IP:PORT}) for UDP unicast,
C{tcp::IP:PORT} for a controller that takes requests over TCP. A UHPPOTE
request (64 bytes, start byte 0x17) for a serial in the table goes to that
controller; everything else (broadcasts to serial 0, unknown serials,
packets that are not UHPPOTE) goes to C{ADDRESS} exactly as
C{udp/broadcast:ADDRESS} would send it.

Each distinct UDP destination gets its own
L{uhppoted_tunnel.ends.broadcast.BroadcastEnd}, so replies are matched to
requests, and late ones dropped, as they are on the broadcast address.

Over TCP a controller answers a 64-byte request with one 64-byte reply on
the same connection, so each request gets a connection of its own: connect,
write, deliver the first 64 bytes received (or whatever arrived, when the
controller closes first), close. A set-ip request is never answered: the
connection is closed once it is written. A request gets C{--udp-timeout}
in all, connecting included. The Go tunnel's TCP path is a stub that only
prints the address.
"""

from functools import partial

from twisted.application.service import MultiService
from twisted.internet.defer import DeferredList, gatherResults
from twisted.logger import Logger
from twisted.plugin import IPlugin
from zope.interface import implementer

from uhppoted_tunnel.ends.controllertcp import ControllerTCP
from uhppoted_tunnel.ends.broadcast import BroadcastEnd
from uhppoted_tunnel.ends.udp import udp_address
from uhppoted_tunnel.interfaces import OUT, IConnectorMaker, IControllerObserver, IOutEnd, ITally
from uhppoted_tunnel.core.packets import controller_serial
from uhppoted_tunnel.core.spec import ConnectorSpec


@implementer(IOutEnd, ITally, IControllerObserver)
class IPOutEnd(MultiService):
    """
    C{ip/out:ADDRESS}: sends each request to its controller by UDP or TCP,
    as the controllers table says, and anything else to C{ADDRESS}.

    :ivar broadcast: the L{BroadcastEnd} for C{ADDRESS}.
    :ivar unicast: C{(host, port)} -> the L{BroadcastEnd} for that UDP
        destination.
    :ivar tcp: the L{ControllerTCP}.
    :ivar routes: serial -> a callable taking C{(payload, reply)}.
    """

    log = Logger()
    log_tag = "IP"
    role = OUT
    events = False

    def __init__(self, spec, destination, controllers, timeout, reactor, max_payload, trace=False):
        """
        :param spec: the connector spec; its interface binds the sockets
            that send to C{destination}.
        :param destination: C{(host, port)} for every request not routed.
        :param controllers: serial -> C{("udp" | "tcp", host, port)}.
        :param timeout: seconds to wait for replies.
        :param reactor: provides C{IReactorUDP}, C{IReactorTCP} and
            C{IReactorTime}.
        :param max_payload: the longest packet relayed.
        :param trace: log every packet with a hex dump.
        """
        MultiService.__init__(self)
        self.spec = spec
        self.destination = destination
        self.controllers = dict(controllers)
        self.broadcast = BroadcastEnd(spec, destination, timeout, reactor, max_payload, trace)
        self.broadcast.setServiceParent(self)
        self.tcp = ControllerTCP(timeout, reactor, max_payload, trace)
        self.tcp.setServiceParent(self)
        self.unicast = {}
        self.routes = {}
        for serial, (protocol, host, port) in sorted(self.controllers.items()):
            if protocol == "tcp":
                self.routes[serial] = partial(self.tcp.send, serial, (host, port))
                continue
            end = self.unicast.get((host, port))
            if end is None:
                # the Go tunnel binds only its broadcast socket to the
                # interface: a controller may be reached by a route
                unicast = ConnectorSpec(spec.text, spec.prefix, None, "{}:{}".format(host, port))
                end = self.unicast[host, port] = BroadcastEnd(unicast, (host, port), timeout, reactor, max_payload,
                                                              trace)
                end.setServiceParent(self)
            self.routes[serial] = end.send

    def startService(self):
        MultiService.startService(self)
        for serial, (protocol, host, port) in sorted(self.controllers.items()):
            self.log.info("controller {serial} via {protocol} {host}:{port}", serial=serial, protocol=protocol,
                          host=host, port=port)
        self.log.info("other requests via udp {host}:{port}{bound}", host=self.destination[0],
                      port=self.destination[1],
                      bound=" on " + self.spec.interface if self.spec.interface else "")

    def _ends(self):
        return [self.broadcast] + list(self.unicast.values())

    @property
    def link(self):
        """
        The link state of its broadcast socket: up once it is open.
        """
        return self.broadcast.link

    @property
    def seen_controllers(self):
        return self.broadcast.seen_controllers

    @seen_controllers.setter
    def seen_controllers(self, seen):
        for end in self._ends():
            end.seen_controllers = seen

    def tally(self, t):
        for end in self._ends():
            end.tally(t)
        self.tcp.tally(t)

    def whenListening(self):
        """
        :return: a Deferred that fires once every UDP socket is open, or
            fails if one could not be.
        """
        return gatherResults([end.whenListening() for end in self._ends()], consumeErrors=True).addCallbacks(
            lambda _: None, lambda failure: failure.value.subFailure)

    def whenFailed(self):
        """
        :return: a Deferred that fires with the message of the first of its
            UDP ends that fails.
        """
        return DeferredList([end.whenFailed() for end in self._ends()], fireOnOneCallback=True).addCallback(
            lambda result: result[0])

    def send(self, payload, reply):
        if not self.running:
            return
        route = self.routes.get(controller_serial(payload))
        if route is None:
            self.broadcast.send(payload, reply)
        else:
            route(payload, reply)


@implementer(IPlugin, IConnectorMaker)
class IPConnectorMaker:
    """
    Makes C{ip/out} ends.
    """

    prefixes = ("ip/out:",)

    def roles(self, prefix):
        return frozenset([OUT])

    def relaysEvents(self, prefix):
        return False

    def makeEnd(self, spec, role, settings, router, reactor):
        if role != OUT:
            raise ValueError("'{}' cannot be an in connector".format(spec.text))
        return IPOutEnd(spec, udp_address(spec, listen=False), getattr(settings, "controllers", {}),
                        settings["udp-timeout"], reactor, settings["max-payload"], settings["debug"])
