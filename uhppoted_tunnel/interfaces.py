# -*- test-case-name: tests.unit.test_plugins -*-
"""
The interfaces that connectors implement, and what each part may call on
the others.

A tunnel joins one I{in} end to one I{out} end through a
L{uhppoted_tunnel.core.router.Router}. An in end delivers every request it
receives to C{router.request(payload, reply)}; the router hands it to the
out end's L{IOutEnd.send}, and whatever the out end receives in answer goes
back through C{reply}.

Connector kinds are found as L{IConnectorMaker} plugins in
L{uhppoted_tunnel.plugins}.
"""

from twisted.application.service import IService
from twisted.internet.interfaces import IProtocolFactory
from zope.interface import Attribute, Interface

IN = "in"
OUT = "out"


class IConnectorMaker(Interface):
    """
    Builds the ends of one transport from connector strings.
    """

    prefixes = Attribute(
        "A tuple of the connector-string prefixes this maker builds, each "
        "including its separator, e.g. C{('tcp/server:', 'tcp/client:')}."
    )

    def roles(prefix):
        """
        The roles an end of this kind can play.

        :param prefix: one of C{prefixes}.
        :return: a frozenset of L{IN} and L{OUT}.
        """

    def relaysEvents(prefix):
        """
        Whether ends of this kind carry controller events, which makes the
        whole tunnel an event tunnel: its ends relay one way, keep no reply
        handlers, and its stream ends acknowledge and buffer events (see
        L{uhppoted_tunnel.core.events}). The tunnel's settings say so to every
        end as C{settings["events"]}.

        :param prefix: one of C{prefixes}.
        """

    def makeEnd(spec, role, settings, router, reactor):
        """
        Build an end.

        :param spec: the parsed L{uhppoted_tunnel.core.spec.ConnectorSpec}.
        :param role: L{IN} or L{OUT}.
        :param settings: the tunnel's L{uhppoted_tunnel.app.options.Options}.
        :param router: the tunnel's router, which an in end hands each
            request; C{None} for an out end (the router, built after it,
            is given it).
        :param reactor: the reactor to use for I/O and time.
        :return: an L{IInEnd} or L{IOutEnd} provider.
        :raise ValueError: with a one-line message when C{spec} cannot be
            used (a bad address, say); raised before anything listens.
        """


class IConnectorPlugin(IConnectorMaker):
    """
    A connector plugin's declaration: what the options, the help and the
    connector strings need, without importing the transport (see
    L{uhppoted_tunnel.core.declare.ConnectorPlugin}). It is an
    L{IConnectorMaker} whose C{makeEnd} loads the maker that builds the
    ends, so C{getPlugins(IConnectorMaker, uhppoted_tunnel.plugins)} finds
    both kinds of plugin.
    """

    name = Attribute("The transport's name, e.g. C{\"tcp\"}.")
    title = Attribute("How C{--help} titles the group of its options.")
    module = Attribute("The name of the module that builds its ends, imported by L{load}.")
    extra = Attribute("The pip extra that module needs (C{\"ws\"}), or C{None} for the core install.")
    options = Attribute("A tuple of L{uhppoted_tunnel.core.declare.Option}: its flags and TOML keys.")
    secure = Attribute("The prefixes whose ends use TLS (C{check} examines their certificates).")

    def load():
        """
        Import the module and build the maker (once).

        :return: the L{IConnectorMaker} provider that builds its ends.
        """


class IEnd(IService):
    """
    One end of a tunnel: a service that owns its sockets.

    C{startService} never raises: an end that cannot start says so through
    L{whenFailed} (and L{whenListening} fails), which is how the tunnel
    stops the same way under the console script and under twistd.
    C{stopService} returns a Deferred that fires once every socket of the
    end is closed and its timers cancelled.
    """

    role = Attribute("L{IN} or L{OUT}.")
    link = Attribute(
        "Its L{uhppoted_tunnel.link.lifecycle.LinkState}: whether it is up, and since when "
        "(L{uhppoted_tunnel.link.lifecycle.EndLifecycle} gives every end one).")
    spec = Attribute("The L{uhppoted_tunnel.core.spec.ConnectorSpec} it was made from.")
    events = Attribute(
        "True when the end relays events one way and never answers or "
        "waits for replies."
    )

    def whenListening():
        """
        :return: a Deferred that fires once the end listens (with its
            listening port) or, for an end that dials or only sends, once it
            has started (with C{None}); it fails with
            L{uhppoted_tunnel.link.lifecycle.EndFailed} if the end could not
            start.
        """

    def whenFailed():
        """
        :return: a Deferred that fires with a one-line message (naming the
            address) if the end cannot start or cannot go on: a port in use,
            a client out of retries.
        """


class IInEnd(IEnd):
    """
    An end that receives requests and passes them to C{router.request}.
    """


class IOutEnd(IEnd):
    """
    An end that sends requests on and delivers their replies.
    """

    def send(payload, reply):
        """
        Send one request.

        :param payload: the packet (bytes).
        :param reply: called with each reply packet that arrives for this
            request, any number of times (a broadcast is answered by every
            controller), or C{None} when no reply is wanted.
        """


class IFrameConnection(Interface):
    """
    What a relay may use of one connection of any transport (a TCP or TLS
    stream, a message transport's peer, ...): a connection carries whole frames
    C{(id, payload)}.
    """

    peer = Attribute("The peer's address as text, for the log (C{host:port}).")

    def sendFrame(frame_id, payload):
        """
        Send one frame, unless the peer is not reading what is sent to it
        (flow control), in which case the frame is dropped and counted.

        :param frame_id: the u32 id.
        :param payload: the packet (bytes), empty for an acknowledgement.
        :return: False if the frame was dropped.
        """

    def close():
        """
        Close the connection (what is queued is sent first).
        """

    def whenClosed():
        """
        :return: a Deferred that fires once the connection has closed (at
            once if it has).
        """


class IPeerIdentity(Interface):
    """
    A connection whose peer proved who it is (a TLS client certificate
    verified against C{--ca-cert}): the route table of a host out end
    (L{uhppoted_tunnel.core.routes}) knows the site by it rather than by
    its address.
    """

    identity = Attribute("The peer certificate's subject as text (C{CN=site-a,O=Example}).")


class IProvable(Interface):
    """
    A connection counted under a server end's caps, which may be closed to
    make room for a newcomer until its peer proves itself (a TLS handshake
    with a client certificate, a valid frame, a whole request).
    """

    def proven():
        """
        The peer has proved itself: the connection is not closed for
        others from now on.
        """


class IConnectionReporter(IProtocolFactory):
    """
    What a connection of any transport may use of its end's factory
    (L{uhppoted_tunnel.link.ends.FrameFactory}), and all it tells it.

    A connection is a C{Protocol} built by the factory's C{buildProtocol}
    (which gives it C{factory}, C{relay} and C{log_tag}) and connected
    (C{makeConnection}) only once it is ready for frames: a byte stream's
    L{uhppoted_tunnel.link.framed.FramedProtocol} over TCP, or after a TLS
    handshake or an upgrade; a message transport's own protocol
    (one call, one peer) connected to that
    transport when the peer is known. It provides L{IFrameConnection}; it
    calls L{connectionReady} from its C{connectionMade} and
    L{connectionClosed} from its C{connectionLost}, and hands each frame
    to C{relay.frameReceived(connection, frame_id, payload)}.
    """

    relay = Attribute("The end's L{IRelay}, which hears each frame of each connection.")
    clock = Attribute("An C{IReactorTime}, for a connection's timers (the stall timeout).")
    log_tag = Attribute("The tag of the end's log lines (C{TCP}, C{TLS}, ...).")
    max_payload = Attribute("The longest payload a frame may carry (C{--max-payload}).")
    max_send_queue = Attribute(
        "Bytes that may be queued for one peer before it counts as not reading (C{--max-send-queue}).")
    stall_timeout = Attribute(
        "Seconds a peer may read nothing sent to it before it is dropped (C{--stall-timeout}), or C{None} "
        "for no limit.")
    dead_peer_timeout = Attribute(
        "Seconds a peer may leave what is sent unacknowledged before its socket is dropped "
        "(C{--dead-peer-timeout}).")

    def connectionReady(connection):
        """
        An L{IFrameConnection} is ready for frames: the end and its relay
        now count it.
        """

    def connectionClosed(connection, reason):
        """
        A connection closed, ready or not.

        :param reason: a C{Failure}.
        """

    def frameTooLong(connection, error):
        """
        The peer sent what cannot be a frame (over C{--max-payload}, or not
        one frame): the connection is being dropped; the factory warns,
        throttled.

        :param error: the exception saying what was received.
        """

    def stalledTooLong(connection, timeout):
        """
        The peer read nothing for C{timeout} seconds: the connection is
        being dropped; the factory warns, throttled.
        """

    def frameDropped(connection):
        """
        A frame for a peer that is not reading was dropped; the factory
        counts it and warns, throttled.
        """


class ITally(Interface):
    """
    A part (an end, a relay, a factory) that counts what it dropped,
    refused or retried, read only when something asks (C{--metrics}, the
    status page).
    """

    def tally(t):
        """
        Add what it counted to a L{uhppoted_tunnel.core.counts.Tally}.
        """


class ICountingEndpoint(Interface):
    """
    An endpoint that counts, for the end's L{ITally}: failed handshakes,
    connections refused by the caps and frames it dropped; it may wrap
    another endpoint that counts.
    """

    endpoint = Attribute("The endpoint it wraps, or C{None}.")
    handshake_failures = Attribute("reason -> handshakes that failed (a dict, empty for none).")
    refused = Attribute("cap -> connections it refused (a dict, empty for none).")
    dropped = Attribute("reason -> frames it dropped itself, for a message transport whose endpoint "
                        "keeps its peers (a dict, empty for none).")


class ICertificateWatch(IService):
    """
    The expiry watch of a secure end's certificates.
    """

    certificates = Attribute("C{[(flag, path, not_after)]}: each certificate watched.")


class ICertificateReloader(Interface):
    """
    A secure part (an end, an endpoint) that reads its certificates,
    keys and CAs again on SIGHUP.
    """

    def reloadCertificates():
        """
        Read them again: connections made from now on use them; a bad file
        is a warning, and the ones in use stay.
        """


class ISecureEnd(ICertificateReloader):
    """
    An end whose transport authenticates and encrypts with certificates.
    """

    watch = Attribute("Its L{ICertificateWatch}.")


class ITelemetryServer(Interface):
    """
    An end that serves the tunnel's telemetry itself (C{http/}'s status
    pages).
    """

    def serveTelemetry(telemetry):
        """
        Serve this L{uhppoted_tunnel.observe.telemetry.Telemetry}.
        """


class IControllerObserver(Interface):
    """
    An end that notes each controller's address as it hears from it (the
    UDP ends).
    """

    seen_controllers = Attribute(
        "The L{uhppoted_tunnel.core.counts.Controllers} to note them in, or C{None} while nothing reads "
        "them.")


class IReplyTimer(Interface):
    """
    An out end that times the replies to its requests itself, from the
    timestamp it takes as each request goes out, and notes the controller
    of each reply where it matches it (see
    L{uhppoted_tunnel.core.replytimes}); the router then leaves its reply
    callbacks alone.
    """

    reply_times = Attribute(
        "The L{uhppoted_tunnel.core.replytimes.ReplyTimes} to record each reply in, or C{None} while nothing "
        "reads them.")


class IRelay(Interface):
    """
    What an end does with frames in its role: receive requests, send
    requests, receive events or send events (see
    L{uhppoted_tunnel.core.relays}). The transport tells the relay of
    each connection that becomes ready (after its handshake, if any), each
    frame and each loss; the relay decides what goes to the router, what is
    sent and what is answered, and reaches a connection only through
    L{IFrameConnection}.
    """

    def start():
        """
        The end is starting.
        """

    def stop():
        """
        The end is stopping: cancel timers, keep what must outlive the run.
        """

    def connected(connection):
        """
        An L{IFrameConnection} is ready for frames.
        """

    def disconnected(connection):
        """
        A ready connection has closed.
        """

    def frameReceived(connection, frame_id, payload):
        """
        A frame arrived on a ready connection (an empty payload included).
        """


class IOutRelay(IRelay):
    """
    The relay of an out end, which also sends what the router hands it.
    """

    def send(payload, reply):
        """
        Send a packet from the router: see L{IOutEnd.send}.
        """


class IReactorTurnEnd(Interface):
    """
    A reactor that runs calls at the end of its turn: once the events one
    poll reported are handled, before it polls again
    (L{uhppoted_tunnel.link.reactor}). A writer that gathers what a turn
    writes (L{uhppoted_tunnel.link.writes.TurnWriter}) sends it so, without
    a timed call per turn; under any other reactor it asks for
    C{callLater(0)}.
    """

    def callAtTurnEnd(f):
        """
        Call C{f()} once, at the end of the current turn (or, called between
        turns, before the reactor next waits for events).
        """
