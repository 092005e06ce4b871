# -*- test-case-name: tests.loopback.test_nats -*-
"""
The asyncio half of one NATS link: L{run} connects with nats-py, sets up
what the end's role needs (subscriptions, a reply inbox, the events'
JetStream stream and consumer), then carries out the commands the
reactor puts in its outbox and reports what happens to the reactor's
inbox (L{uhppoted_tunnel.transports.nats.bridge.Mailbox}), until the
reactor closes it or nats-py gives up.

It runs on the NATS loop (stepped by the reactor,
L{uhppoted_tunnel.transports.nats.stepper}, or on a thread of its own,
L{uhppoted_tunnel.transports.nats.bridge.LoopThread}) and touches
nothing of the reactor's: every decision is the reactor
side's (L{uhppoted_tunnel.transports.nats.link}).

One attempt is one C{connect}, with nats-py's own reconnection off, so
the client end's C{ClientService} owns the retries of a cluster that
cannot be reached (Go's 5 s, 10 s, ... and C{--max-retries}); once
connected, nats-py's reconnection is on, with every node the cluster
told of: a lost node is a failover inside the link, and only a cluster
lost for longer than L{FAILOVER_ATTEMPTS} rounds ends the link.
"""

import asyncio
from dataclasses import dataclass, field

import nats
import nats.errors
import nats.js.errors
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StorageType

from uhppoted_tunnel.transports.nats.batch import Batches


#: seconds a connection (TCP, TLS and the NATS handshake) may take
CONNECT_TIMEOUT = 5

#: once connected: tries of each node of the cluster before the link ends
FAILOVER_ATTEMPTS = 5
FAILOVER_WAIT = 1

#: seconds between pings, and unanswered pings before a node counts as gone
PING_INTERVAL = 10
MAX_OUTSTANDING_PINGS = 2

#: seconds JetStream has to store an event before it is sent again
STORE_TIMEOUT = 2.0

#: events a host may hold unacknowledged: one, so that the order holds
#: whatever happens to a host (an event taken by a host that dies is sent
#: again before any later one, once L{ACK_WAIT} has passed)
BATCH = 1

#: seconds before an event a host took and did not acknowledge is sent again
ACK_WAIT = 10.0

#: how long the events are kept, and the window in which a resent message id
#: is stored once
MAX_AGE = 7 * 24 * 3600.0
DUPLICATE_WINDOW = 600.0


@dataclass
class Plan:
    """
    What one link sets up, from the end's role.

    :ivar url: C{nats://HOST:PORT} or C{tls://HOST:PORT}.
    :ivar options: more keyword arguments for C{nats.connect} (credentials,
        TLS context).
    :ivar subscribe: subjects to subscribe to at once.
    :ivar inbox: whether to subscribe to a reply inbox of the link's own.
    :ivar stream: C{(name, subjects)} of a JetStream stream to create when
        missing, or C{None}.
    :ivar consume: C{(durable, filter)} of a durable pull consumer to read
        the stream with, or C{None}.
    :ivar pending: the bytes a subscription may hold before messages are
        dropped (slow consumer).
    :ivar inbound: the most reports the reactor may have waiting.
    """

    url: str
    options: dict = field(default_factory=dict)
    subscribe: tuple = ()
    inbox: bool = False
    stream: tuple | None = None
    consume: tuple | None = None
    pending: int = 1024 * 1024
    inbound: int = 4096


def describe(error):
    """
    What went wrong, as a sentence for the log.
    """
    if isinstance(error, nats.errors.AuthorizationError) or "authoriz" in str(error).lower():
        return "the server refused this end's credentials (authorization violation): check --nats-credentials"
    if isinstance(error, nats.errors.NoServersError):
        return "no NATS server could be reached"
    if isinstance(error, (asyncio.TimeoutError, nats.errors.TimeoutError)):
        return "timed out connecting to the NATS server"
    if isinstance(error, OSError):
        return error.strerror or str(error) or type(error).__name__
    return str(error) or type(error).__name__


async def run(plan, inbox, outbox, wakeup):
    """
    One link, on the NATS loop.

    :param plan: a L{Plan}.
    :param inbox: the reactor's L{Mailbox}: reports.
    :param outbox: the L{Mailbox} the reactor puts commands in, made with
        L{uhppoted_tunnel.transports.nats.bridge.waker}C{(loop, wakeup)}.
    :param wakeup: the C{asyncio.Event} set when there are commands.
    """
    await Session(plan, inbox, outbox, wakeup).run()


class Session:
    """
    A link's nats-py client and the tasks that serve it.
    """

    def __init__(self, plan, inbox, outbox, wakeup):
        self.plan = plan
        self.inbox = inbox
        self.outbox = outbox
        self.nc = None
        self.js = None
        self.reply_inbox = None
        self._wake = wakeup
        self._done = asyncio.Event()
        self._store = asyncio.Queue()
        self._taken = {}
        self._acked = asyncio.Event()
        self._closing = False
        self._ready = False
        self._slow = False
        self._failed_store = None

    def report(self, *item, force=False):
        inbox = self.inbox
        if inbox.put(item, force=force):
            if self._slow and len(inbox) < inbox.limit // 2:
                # caught up: the next overflow is warned of again
                self._slow = False
        elif not self._slow:
            # the reactor is behind: one warning's worth, then drop quietly
            self._slow = True
            inbox.put(("slow",), force=True)

    async def run(self):
        try:
            await self._connect()
        except Exception as e:
            self.report("failed", describe(e), force=True)
            if self.nc is not None:
                await self._close_quietly()
            return
        peer = self.nc.connected_url.netloc if self.nc.connected_url else self.plan.url
        self._ready = True
        self.report("ready", peer, self.reply_inbox, force=True)
        tasks = [asyncio.ensure_future(self._write())]
        if self.plan.stream is not None and self.plan.consume is None:
            tasks.append(asyncio.ensure_future(self._storeEvents()))
        if self.plan.consume is not None:
            tasks.append(asyncio.ensure_future(self._consume()))
        await self._done.wait()
        reason = "closed"
        try:
            for task in tasks:
                task.cancel()
            # a task of nats-py's may take a cancellation for a timeout:
            # the link ends all the same
            await asyncio.wait(tasks, timeout=CONNECT_TIMEOUT)
            await asyncio.wait_for(self._nakTaken(), CONNECT_TIMEOUT)
        except Exception:
            pass
        finally:
            if not self._closing:
                reason = describe(self.nc.last_error or ConnectionError("the link was lost"))
            await self._close_quietly()
            self.report("lost", reason, force=True)

    async def _connect(self):
        plan = self.plan
        nc = self.nc = nats.NATS()
        await nc.connect(servers=[plan.url], allow_reconnect=False, connect_timeout=CONNECT_TIMEOUT,
                         reconnect_time_wait=FAILOVER_WAIT, max_reconnect_attempts=FAILOVER_ATTEMPTS,
                         ping_interval=PING_INTERVAL, max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                         error_cb=self._error, disconnected_cb=self._disconnected,
                         reconnected_cb=self._reconnected, closed_cb=self._closed, pending_size=plan.pending,
                         name="uhppoted-tunnel", **plan.options)
        # connected: from now on nats-py fails over to the cluster's other
        # nodes by itself (the retries before a first connection are the
        # client end's)
        nc.options["allow_reconnect"] = True
        for subject in plan.subscribe:
            await self._subscribe(subject)
        if plan.inbox:
            self.reply_inbox = nc.new_inbox()
            await self._subscribe(self.reply_inbox)
        if plan.stream is not None:
            self.js = nc.jetstream(timeout=STORE_TIMEOUT * 2)
            await self._ensureStream(*plan.stream)
        await nc.flush(timeout=CONNECT_TIMEOUT)

    async def _subscribe(self, subject):
        await self.nc.subscribe(subject, cb=self._message, pending_bytes_limit=self.plan.pending)

    async def _ensureStream(self, name, subjects):
        try:
            await self.js.stream_info(name)
            return
        except nats.js.errors.NotFoundError:
            pass
        error = None
        for replicas in range(3, 0, -1):
            try:
                await self.js.add_stream(name=name, subjects=list(subjects), storage=StorageType.FILE,
                                         num_replicas=replicas, max_age=MAX_AGE,
                                         duplicate_window=DUPLICATE_WINDOW)
                return
            except nats.js.errors.BadRequestError as e:
                # another end made it meanwhile, or fewer nodes than replicas
                if "already in use" in str(e):
                    return
                error = e
            except nats.js.errors.APIError as e:
                error = e
        raise error

    # nats-py's callbacks

    async def _message(self, msg):
        self.report("message", msg.subject, msg.reply, msg.data, msg.headers)

    async def _error(self, error):
        if isinstance(error, nats.errors.SlowConsumerError):
            self.report("slow")
        elif self.nc is not None and self.nc.is_connected:
            self.report("error", describe(error))

    async def _disconnected(self):
        if self._ready and not self._closing:
            self.report("disconnected", force=True)

    async def _reconnected(self):
        url = self.nc.connected_url
        self.report("reconnected", url.netloc if url else "?", force=True)

    async def _closed(self):
        self._done.set()

    # the reactor's commands

    async def _write(self):
        """
        Carry out the reactor's commands, a turn's worth at a time: the
        frames it publishes on one subject with one reply subject in a
        turn go as one message (L{Batches}), before any other command of
        the turn that follows them.
        """
        batches = Batches()
        while True:
            await self._wake.wait()
            self._wake.clear()
            for command in self.outbox.take():
                kind = command[0]
                try:
                    if kind == "publish":
                        full = batches.add(command[1], command[3], command[2])
                        if full is not None:
                            await self._publish((full,))
                        continue
                    if batches:
                        await self._publish(batches.take())
                    if kind == "subscribe":
                        await self._subscribe(command[1])
                    elif kind == "store":
                        self._store.put_nowait(command[1:])
                    elif kind == "ack":
                        await self._ack(command[1])
                    elif kind == "close":
                        self._closing = True
                        self._done.set()
                        return
                except nats.errors.Error as e:
                    self.report("error", describe(e))
            if batches:
                await self._publish(batches.take())

    async def _publish(self, messages):
        publish = self.nc.publish
        for subject, reply, data, frames in messages:
            try:
                await publish(subject, data, reply=reply or "")
            except nats.errors.OutboundBufferLimitError:
                self.report("dropped", frames)
            except nats.errors.Error as e:
                self.report("error", describe(e))

    async def _close_quietly(self):
        try:
            await asyncio.wait_for(self.nc.close(), CONNECT_TIMEOUT)
        except Exception:
            pass

    # events: a site stores them in order, a host takes them in order

    async def _storeEvents(self):
        """
        Store each event in the stream, one at a time and in order: the
        next is published only once JetStream has stored this one (sent
        again, with its message id, until it has).
        """
        while True:
            subject, data, msgid, frame_id = await self._store.get()
            while True:
                try:
                    await self.js.publish(subject, data, timeout=STORE_TIMEOUT, headers={"Nats-Msg-Id": msgid})
                    break
                except Exception as e:
                    # a failover under way (a timeout, no responders while
                    # the stream elects a leader, a reconnection): the same
                    # message again, which JetStream stores once
                    self._failed_store = describe(e)
                    await asyncio.sleep(0.2)
            self.report("stored", frame_id, force=True)

    async def _consume(self):
        """
        Take events from the durable consumer one at a time, and the next
        only once the reactor has acknowledged this one (or L{ACK_WAIT}
        has passed, after which JetStream sends it again): the consumer
        allows one unacknowledged event, so the events come in the order
        stored whatever happens to a host.
        """
        durable, subject = self.plan.consume
        config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT, ack_wait=ACK_WAIT,
                                max_ack_pending=BATCH, deliver_policy=DeliverPolicy.ALL, filter_subject=subject)
        subscription = None
        token = 0
        while not self._done.is_set():
            try:
                if subscription is None:
                    subscription = await self.js.pull_subscribe(subject, durable=durable, stream=self.plan.stream[0],
                                                                config=config, pending_bytes_limit=self.plan.pending)
                messages = await subscription.fetch(BATCH, timeout=2)
            except (nats.errors.TimeoutError, asyncio.TimeoutError):
                continue
            except Exception as e:
                # a failover under way: the consumer's leader moves
                self.report("error", describe(e))
                await asyncio.sleep(0.5)
                continue
            self._acked.clear()
            for msg in messages:
                token += 1
                self._taken[token] = msg
                self.report("event", token, msg.data, msg.headers, force=True)
            try:
                await asyncio.wait_for(self._acked.wait(), ACK_WAIT)
            except asyncio.TimeoutError:
                pass

    async def _ack(self, token):
        msg = self._taken.pop(token, None)
        if msg is not None:
            await msg.ack()
        if not self._taken:
            self._acked.set()

    async def _nakTaken(self):
        taken, self._taken = self._taken, {}
        for msg in taken.values():
            try:
                await msg.nak()
            except Exception:
                pass
        if taken:
            # sent before the connection closes: the next host gets them now
            await self.nc.flush(timeout=CONNECT_TIMEOUT)
