# -*- test-case-name: tests.unit.test_xmpp -*-
"""
What an C{xmpp/} end drops, warned of and counted: stanzas from others
than the peer, frames that are not well formed or too long, frames that
found the send queue full or waited too long in it. One warning, then a
count at most every 10 s per kind (L{Throttle}); the totals are the end's
metrics by reason.
"""

from twisted.logger import Logger

from uhppoted_tunnel.core.counts import QUEUE_FULL
from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.transports.xmpp.frames import BAD_BASE64, BAD_FRAME, BAD_ID, STRANGER, TOO_LONG

#: The warning for each kind of thing dropped (C{{n}} of them, the last
#: from or for C{{sender}}).
WARNINGS = {
    STRANGER: "dropped {n} stanza(s) from others than the peer {peer}, the last from {sender}",
    BAD_ID: "dropped {n} frame(s) with a missing or bad id, the last from {sender}",
    BAD_BASE64: "dropped {n} frame(s) that were not base64, the last from {sender}",
    TOO_LONG: "dropped {n} frame(s) over --max-payload {limit} bytes, the last from {sender}",
    "full": "dropped {n} frame(s) for {sender}: {limit} bytes already wait to be sent at --xmpp-rate {rate} "
            "bytes/s (--max-send-queue)",
    "stale": "dropped {n} frame(s) that waited longer than --udp-timeout for their turn: more is sent than "
             "--xmpp-rate {rate} bytes/s allows",
}


class Drops:
    """
    The throttled warnings and counts of one C{xmpp/} end's drops.
    """

    log = Logger()
    log_tag = "XMPP"

    def __init__(self, clock, peer, max_payload, max_send_queue, rate):
        """
        :param clock: an C{IReactorTime}.
        :param peer: the L{uhppoted_tunnel.transports.xmpp.frames.Peer}.
        :param max_payload: C{--max-payload}.
        :param max_send_queue: C{--max-send-queue}.
        :param rate: C{--xmpp-rate}.
        """
        self.peer = peer
        self.max_payload = max_payload
        self.max_send_queue = max_send_queue
        self.rate = rate
        self._senders = {}
        self._warnings = {kind: Throttle(clock, self._warner(kind)) for kind in WARNINGS}

    def _warner(self, kind):
        return lambda count: self._warn(kind, count)

    def dropped(self, kind, sender, n=1):
        """
        Count something dropped, for a throttled warning.

        :param kind: a key of L{WARNINGS}.
        :param sender: who sent (or was to get) it.
        """
        self._senders[kind] = sender
        self._warnings[kind].count(n)

    def _warn(self, kind, count):
        self.log.warn(WARNINGS[kind], n=count, sender=self._senders.get(kind), peer=str(self.peer),
                      limit=self.max_send_queue if kind == "full" else self.max_payload, rate=self.rate)

    @property
    def refusedStanzas(self):
        """
        Stanzas dropped because they came from others than the peer.
        """
        return self._warnings[STRANGER].total

    def counts(self):
        """
        :return: the metrics' reason -> frames (or stanzas) dropped.
        """
        counted = {kind: throttle.total for kind, throttle in self._warnings.items()}
        return {QUEUE_FULL: counted["full"] + counted["stale"], TOO_LONG: counted[TOO_LONG],
                BAD_FRAME: counted[BAD_ID] + counted[BAD_BASE64], STRANGER: counted[STRANGER]}

    def flush(self):
        """
        Warn now of what is not yet warned of (the end is stopping).
        """
        for throttle in self._warnings.values():
            throttle.flush()
