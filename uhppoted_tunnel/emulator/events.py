# -*- test-case-name: tests.loopback.test_emulator,tests.unit.test_emulator -*-
"""
Controllers pushing status events to their listener, as real controllers
do: L{push_events} sends a number of them, round-robin over the
controllers, one every interval, from the emulator's own port.
"""

import datetime

from twisted.internet.defer import Deferred
from twisted.logger import Logger


class EventPusher:
    """
    Sends a number of events to a listener, round-robin over controllers,
    one every C{interval} seconds: see L{push_events}.

    :ivar sent: events sent so far.
    :ivar done: fires with C{sent} once all are sent.
    """

    log = Logger()

    def __init__(self, reactor, port, controllers, listener, count, interval, now=datetime.datetime.now):
        self.reactor = reactor
        self.port = port
        self.controllers = list(controllers)
        self.listener = listener
        self.count = count
        self.interval = interval
        self.now = now
        self.sent = 0
        self.done = Deferred(self._cancel)
        self._call = None
        self._start = None

    def start(self):
        """
        Send the first event on the next turn of the reactor.

        :return: L{done}.
        """
        if self.count <= 0 or not self.controllers:
            self.done.callback(0)
        else:
            self._start = self.reactor.seconds()
            self._call = self.reactor.callLater(0, self._next)
        return self.done

    def _next(self):
        self._call = None
        controller = self.controllers[self.sent % len(self.controllers)]
        try:
            packet = controller.event(self.now())
            self.port.write(packet, self.listener)
        except Exception:
            self.log.failure("{controller} could not send event {index} to {host}:{port}", controller=controller,
                             index=controller.event_index, host=self.listener[0], port=self.listener[1])
            self.done.errback()
            return
        self.sent += 1
        self.log.debug("controller {serial}: sent event {index} to {host}:{port}", serial=controller.serial,
                       index=controller.event_index, host=self.listener[0], port=self.listener[1])
        if self.sent >= self.count:
            self.done.callback(self.sent)
            return
        # on a fixed schedule from the start, so that a late turn does not
        # delay every later event
        delay = self._start + self.sent * self.interval - self.reactor.seconds()
        self._call = self.reactor.callLater(max(0.0, delay), self._next)

    def _cancel(self, done):
        if self._call is not None:
            self._call.cancel()
            self._call = None


def push_events(reactor, port, controllers, listener, count, interval, now=datetime.datetime.now):
    """
    Push C{count} events in all to C{listener}, taking the controllers in
    turn (with controllers A and B: A1, B1, A2, B2, ...), the first on the
    next turn of the reactor and then one every C{interval} seconds.

    :param reactor: an IReactorTime.
    :param port: the UDP port to send from (the emulator's, from L{listen}).
    :param controllers: the L{Controller}s whose events these are.
    :param listener: C{(host, port)} to send to.
    :param count: how many events to send.
    :param interval: seconds between events (0: as fast as the reactor turns).
    :param now: a callable returning the local time, for the events' timestamps.
    :return: a Deferred firing with the number sent; cancelling it stops
        sending.
    """
    return EventPusher(reactor, port, controllers, listener, count, interval, now).start()
