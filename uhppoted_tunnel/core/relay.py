# -*- test-case-name: tests.unit.test_stream,tests.unit.test_events,tests.unit.test_lifecycle -*-
"""
What every relay shares (L{Relay}: its collaborators and no-ops for what
it does not care about; L{Numbering} of the frames an out end
originates), and L{TracingRelay}, which logs every frame around another
relay with C{--debug}.
"""

from twisted.logger import Logger
from zope.interface import implementer

from uhppoted_tunnel.core.packets import hexdump
from uhppoted_tunnel.interfaces import IOutRelay


class Relay:
    """
    No-ops for what a relay does not care about.
    """

    log = Logger()
    log_tag = "TCP"

    def __init__(self, settings, router, clock, connections, log_tag="TCP", failed=None):
        self.router = router
        self.clock = clock
        self.connections = connections
        self.log_tag = log_tag
        if failed is not None:
            self.failed = failed

    def failed(self, log_format, **fields):
        """
        The relay cannot go on: unless it was given its end's
        L{uhppoted_tunnel.link.lifecycle.EndLifecycle.failed}, it logs it.
        """
        self.log.error(log_format, **fields)

    def start(self):
        pass

    def stop(self):
        pass

    def connected(self, connection):
        pass

    def disconnected(self, connection):
        pass


@implementer(IOutRelay)
class TracingRelay:
    """
    With C{--debug}: logs every frame received and every packet sent, with
    a hex dump, around another relay (so that without it the hot path pays
    nothing).
    """

    log = Logger()

    def __init__(self, relay, log_tag):
        self.relay = relay
        self.log_tag = log_tag
        self.start = relay.start
        self.stop = relay.stop
        self.connected = relay.connected
        self.disconnected = relay.disconnected

    def frameReceived(self, connection, frame_id, payload):
        self.log.debug("received frame {id} ({n} bytes) from {peer}\n{dump}", id=frame_id, n=len(payload),
                       peer=connection.peer, dump=hexdump(payload))
        self.relay.frameReceived(connection, frame_id, payload)

    def send(self, payload, reply):
        # says what really happens to the frame: sent to whom, or held
        peers = self.relay.connections
        if peers:
            self.log.debug("sending {n} bytes to {peers}\n{dump}", n=len(payload),
                           peers=", ".join(str(connection.peer) for connection in peers), dump=hexdump(payload))
        else:
            self.log.debug("no peer connected: holding {n} bytes until one connects\n{dump}", n=len(payload),
                           dump=hexdump(payload))
        self.relay.send(payload, reply)


class Numbering:
    """
    Frame ids for the requests or events an out end originates: 1 to
    2**32-1, then round again.
    """

    __slots__ = ("_last",)

    def __init__(self):
        self._last = 0

    def next(self):
        self._last = self._last + 1 if self._last < 0xFFFFFFFF else 1
        return self._last

    def after(self, last):
        """
        Carry on from C{last} (ids loaded from a spool).
        """
        self._last = last
