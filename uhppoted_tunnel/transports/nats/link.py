# -*- test-case-name: tests.unit.test_nats -*-
"""
The reactor's side of one NATS link (L{NATSLink}) and the endpoint that
makes one per attempt (L{NATSClientEndpoint}).

A link is what the end's L{uhppoted_tunnel.transports.nats.connection.NATSConnection}
is connected to: it starts its asyncio half
(L{uhppoted_tunnel.transports.nats.session}) on the NATS loop, handles
what that half reports, in order, on the reactor's side, and hands the
role (L{uhppoted_tunnel.transports.nats.roles}) each message and each
frame to send. C{connect} fires once the NATS connection is up and the
role's subscriptions are in place, or fails with L{DialFailed} saying
why; the client end's C{ClientService} owns the retries.
"""

import asyncio

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IStreamClientEndpoint, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from uhppoted_tunnel.core.throttle import Throttle
from uhppoted_tunnel.interfaces import ICountingEndpoint
from uhppoted_tunnel.link.limits import NOTHING
from uhppoted_tunnel.transports.nats.bridge import ISameThread, Mailbox, waker


class DialFailed(Exception):
    """
    An attempt failed before the link was ready; the message says why.
    """


@implementer(ITransport)
class NATSLink:
    """
    One attempt, and once ready the link, to a NATS cluster.

    :ivar connecting: fires with the protocol once the link is ready, or
        fails with L{DialFailed}.
    :ivar disconnected: whether the link is gone.
    """

    log = Logger()
    log_tag = "NATS"
    disconnected = False

    def __init__(self, endpoint, factory, role):
        """
        :param endpoint: the L{NATSClientEndpoint} (the reactor, the
            loop, the plan and the address).
        :param factory: the end's factory (wrapped by C{ClientService}).
        :param role: C{role(link)}: makes what frames mean here (a role
            of L{uhppoted_tunnel.transports.nats.roles}).
        """
        self.endpoint = endpoint
        self.reactor = endpoint.reactor
        self.factory = factory
        self.peer = endpoint.address
        self.protocol = None
        self.connecting = Deferred(self._cancel)
        self._ended = False
        self._outbox = None
        clock = self.reactor
        self._bad = Throttle(clock, self._warnBad)
        self._slow = Throttle(clock, self._warnSlow)
        self._errors = Throttle(clock, self._warnErrors)
        self._no_site = Throttle(clock, self._warnNoSite)
        self._last = {}
        self.role = role(self)

    def start(self, loops, run):
        """
        Start the asyncio half on the NATS loop.

        :param loops: where the asyncio half runs: the reactor's
            L{uhppoted_tunnel.transports.nats.stepper.ReactorStepper}, a
            L{uhppoted_tunnel.transports.nats.bridge.LoopThread} or a
            L{uhppoted_tunnel.transports.nats.bridge.ReactorLoop}.
        :param run: the coroutine function of the asyncio half
            (L{uhppoted_tunnel.transports.nats.session.run}).
        """
        loop = loops.acquire()
        wakeup = asyncio.Event()
        if ISameThread.providedBy(loops):
            to_reactor, to_loop = loops.wakers(loop, wakeup)
        else:
            to_reactor, to_loop = self.reactor.callFromThread, waker(loop, wakeup)
        inbox = Mailbox(to_reactor, self.handle, limit=self.endpoint.plan.inbound)
        self._outbox = Mailbox(to_loop, None)
        loops.run(loop, run, self.endpoint.plan, inbox, self._outbox, wakeup)

    def command(self, *item):
        """
        Ask the NATS loop to do something (see
        L{uhppoted_tunnel.transports.nats.session.Session._write}).
        """
        self._outbox.put(item)

    # what the asyncio half reports, in the reactor thread

    def handle(self, item):
        getattr(self, "_on_" + item[0])(*item[1:])

    def _on_ready(self, peer, inbox):
        if self._ended:
            return
        self.peer = peer
        protocol = self.factory.buildProtocol(IPv4Address("TCP", "0.0.0.0", 0))
        if protocol is None:
            self.loseConnection()
            self._fail("refused by the client end")
            return
        self.protocol = protocol
        self.role.ready(protocol, inbox)
        protocol.makeConnection(self)
        self.connecting.callback(protocol)

    def _on_failed(self, reason):
        self._ended = True
        self.disconnected = True
        self._fail(reason)

    def _fail(self, reason):
        if not self.connecting.called:
            self.connecting.errback(Failure(DialFailed(reason)))

    def _on_lost(self, reason):
        self._ended = True
        if self.protocol is None:
            self._fail(reason)
            return
        if self.disconnected:
            why = ConnectionDone()
        else:
            why = ConnectionLost(reason)
            self.log.warn("lost the NATS cluster ({reason}): every node was tried", reason=reason)
        self.disconnected = True
        for throttle in (self._bad, self._slow, self._errors, self._no_site):
            throttle.flush()
        self.protocol.connectionLost(Failure(why))

    def _on_message(self, subject, reply, data, headers):
        if self.protocol is not None and not self.disconnected:
            self.role.message(subject, reply, data, headers)

    def _on_event(self, token, data, headers):
        if self.protocol is not None and not self.disconnected:
            self.role.event(token, data, headers)

    def _on_stored(self, frame_id):
        if self.protocol is not None and not self.disconnected:
            self.role.stored(frame_id)

    def _on_disconnected(self):
        self.log.warn("lost NATS server {peer}: failing over to the cluster's other nodes", peer=self.peer)

    def _on_reconnected(self, peer):
        self.peer = peer
        self.log.info("reconnected to NATS server {peer}", peer=peer)

    def _on_slow(self):
        self._slow.count()

    def _on_dropped(self, frames):
        if self.protocol is not None:
            for _ in range(frames):
                self.protocol.frameDropped()

    def _on_error(self, text):
        self._last["error"] = text
        self._errors.count()

    # what the role reports

    def bad(self, subject, why, reason):
        """
        A message that is not a frame of this end: dropped, counted (in the
        end's metrics, by C{reason}) and warned of (throttled).
        """
        self.endpoint.countDropped(reason)
        self._last["bad"] = (subject, why)
        self._bad.count()

    def noSite(self):
        self._no_site.count()

    def _warnBad(self, count):
        subject, why = self._last["bad"]
        self.log.warn("ignored {count} message(s) that are not this tunnel's frames, the last on {subject}: {why}",
                      count=count, subject=subject, why=why)

    def _warnSlow(self, count):
        self.log.warn("this end is not keeping up with NATS (slow consumer): messages were dropped "
                      "({count} time(s); --nats-pending-limit)", count=count)

    def _warnErrors(self, count):
        self.log.warn("NATS: {error} ({count} time(s))", error=self._last["error"], count=count)

    def _warnNoSite(self, count):
        self.log.warn("{count} request(s) reached no site: no site serves their controller yet (a site learns its "
                      "controllers from their replies to a broadcast, or lists them with --nats-serial)",
                      count=count)

    # ITransport, for the connection

    def sendFrame(self, frame_id, payload):
        return self.role.sendFrame(frame_id, payload)

    def write(self, data):
        pass

    def writeSequence(self, data):
        pass

    def loseConnection(self):
        if self._outbox is not None and not self.disconnected:
            self.disconnected = True
            self.command("close")

    def _cancel(self, d):
        self._ended = True
        self.loseConnection()

    def getPeer(self):
        return IPv4Address("TCP", "0.0.0.0", 0)

    def getHost(self):
        return IPv4Address("TCP", "0.0.0.0", 0)


@implementer(IStreamClientEndpoint, ICountingEndpoint)
class NATSClientEndpoint:
    """
    Connects to a NATS cluster: one L{NATSLink} per attempt; counts, for
    the end's metrics, the messages its links dropped as not this
    tunnel's frames (C{dropped}, by reason), whatever the attempt.
    """

    #: nothing wrapped; no handshakes or caps of its own
    endpoint = None
    handshake_failures = refused = NOTHING

    log = Logger()
    log_tag = "NATS"

    def __init__(self, reactor, address, plan, role, loops, run):
        """
        :param address: C{host:port} as the user wrote it, for the log.
        :param plan: the L{uhppoted_tunnel.transports.nats.session.Plan}.
        :param role: C{role(link)}: makes the link's role.
        :param loops: where the links' asyncio halves run (as for
            L{NATSLink.start}).
        :param run: the asyncio half's coroutine function.
        """
        self.reactor = reactor
        self.address = address
        self.plan = plan
        self.role = role
        self.loops = loops
        self.run = run
        self.dropped = {}

    def countDropped(self, reason):
        """
        One message dropped for C{reason} (a metrics reason:
        C{too_long}, C{empty}, C{bad_frame}).
        """
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def connect(self, factory):
        link = NATSLink(self, factory, self.role)
        link.start(self.loops, self.run)
        return link.connecting

    def __repr__(self):
        return "<NATSClientEndpoint {}>".format(self.address)
