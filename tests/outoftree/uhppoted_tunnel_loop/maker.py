"""
The loop/ ends: tcp/ ends that say C{--loop-greeting} as they are made.
"""

from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel.interfaces import IN, OUT, IConnectorMaker
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker


@implementer(IConnectorMaker)
class LoopConnectorMaker:
    log = Logger()

    prefixes = ("loop/server:", "loop/client:")

    def __init__(self):
        self.stream = StreamConnectorMaker("loop")

    def roles(self, prefix):
        return frozenset([IN, OUT])

    def relaysEvents(self, prefix):
        return False

    def makeEnd(self, spec, role, settings, router, reactor):
        self.log.info("{kind} greets: {greeting}", kind=spec.kind, greeting=settings["loop-greeting"])
        return self.stream.makeEnd(spec, role, settings, router, reactor)
