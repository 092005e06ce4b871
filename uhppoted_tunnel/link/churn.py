# -*- test-case-name: tests.unit.test_churn -*-
"""
The throttled log of an end's connections (L{ConnectionLog}): each
connection's opening and closing at info while they are few, then a
count every C{WARN_INTERVAL} seconds naming the last peer, so that
connection churn (a scanner, a flapping site) cannot flood the log.
"""

from uhppoted_tunnel.core.throttle import Throttle, TokenBucket

#: Connections whose opening (and then closing) are logged one by one at once.
SHOWN_BURST = 20

#: Connections a second logged one by one on average past the first ones.
SHOWN_RATE = 0.1


class ConnectionLog:
    """
    Logs the connections of one end, throttled: a connection whose
    opening is logged has its closing logged too; the rest are counted and
    summarised.
    """

    def __init__(self, clock, log, burst=SHOWN_BURST, rate=SHOWN_RATE):
        """
        :param clock: an C{IReactorTime}.
        :param log: the end's C{Logger}, so the lines keep its namespace.
        :param burst: connections logged one by one at once.
        :param rate: connections a second logged one by one on average.
        """
        self.log = log
        self._budget = TokenBucket(rate, burst, clock.seconds)
        self._shown = set()
        self._summary = Throttle(clock, self._summarise)
        self._opened = 0
        self._closed = 0
        self._last = None

    def opened(self, connection, peer):
        """
        A connection is ready.
        """
        if self._budget.take():
            self._shown.add(connection)
            self.log.info("connected to {peer}", peer=peer)
        else:
            self._opened += 1
            self._last = peer
            self._summary.count()

    def closed(self, connection, peer):
        """
        A connection closed.
        """
        if connection in self._shown:
            self._shown.discard(connection)
            self.log.info("connection to {peer} closed", peer=peer)
        else:
            self._closed += 1
            self._last = peer
            self._summary.count()

    def _summarise(self, count):
        opened, closed = self._opened, self._closed
        self._opened = self._closed = 0
        self.log.info("{opened} more connection(s) opened and {closed} closed, not logged one by one, "
                      "the last with {peer}", opened=opened, closed=closed, peer=self._last)

    def flush(self):
        """
        Tell what is not yet told, and cancel the timer.
        """
        self._summary.flush()
