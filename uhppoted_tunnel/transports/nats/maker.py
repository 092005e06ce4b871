# -*- test-case-name: tests.unit.test_nats,tests.loopback.test_nats -*-
"""
The NATS transport: C{nats/client:HOST:PORT} (and C{natss/client:} over
TLS, as C{grpcs/} is C{grpc/} over TLS, with the C{tls/} flags), in and
out, and C{nats/event/client:} for event tunnels.

Only client ends: the cluster is the server. An end is the stream
ends' C{ClientEnd} (L{uhppoted_tunnel.link.ends}), whose
C{ClientService} retries a cluster it cannot reach (5 s, 10 s, ...,
C{--max-retries}); its endpoint (L{uhppoted_tunnel.transports.nats.link})
makes one NATS link per attempt, one L{NATSConnection} for the relay
whatever the number of sites and hosts, and the subjects route each
frame (L{uhppoted_tunnel.transports.nats.roles},
L{uhppoted_tunnel.transports.nats.subjects}). nats-py is asyncio: it runs
on a loop the reactor steps on its own thread
(L{uhppoted_tunnel.transports.nats.stepper}; see
L{uhppoted_tunnel.transports.nats.bridge}), the reactor stays the
default one.
"""

import ssl

from twisted.internet.asyncioreactor import AsyncioSelectorReactor
from twisted.internet.interfaces import IReactorFDSet
from twisted.logger import Logger

from uhppoted_tunnel.core.addresses import parse_host_port
from uhppoted_tunnel.interfaces import IN
from uhppoted_tunnel.link.ends import ClientEnd
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker
from uhppoted_tunnel.transports.nats import roles, session
from uhppoted_tunnel.transports.nats.bridge import LoopThread, ReactorLoop
from uhppoted_tunnel.transports.nats.connection import NATSConnection
from uhppoted_tunnel.transports.nats.link import NATSClientEndpoint
from uhppoted_tunnel.transports.nats.options import credentials_problem
from uhppoted_tunnel.transports.nats.stepper import ReactorStepper
from uhppoted_tunnel.transports.nats.subjects import Subjects
from uhppoted_tunnel.transports.tls import certs

DEFAULT_PORT = 4222

#: the one loop of every NATS end of the process
LOOPS = LoopThread("nats")

_JWT = b"-----BEGIN NATS USER JWT-----"


def credentials(path):
    """
    The keyword arguments of C{nats.connect} for a credentials file: a
    C{.creds} file (a user JWT and its seed) or an nkey seed file.

    :raise ValueError: naming the flag when it cannot be read.
    """
    if not path:
        return {}
    data = certs.read_file(path, "--nats-credentials")
    if _JWT in data:
        return {"user_credentials": path}
    if data.strip().startswith(b"SU"):
        return {"nkeys_seed": path}
    raise ValueError("--nats-credentials '{}': neither a .creds file nor an nkey seed (SU...)".format(path))


def tls_context(settings):
    """
    A natss/ client's TLS context: the CA (C{--ca-cert}) and, as for
    C{tls/client}, its own certificate if C{--cert}/C{--key} name one or
    C{client.cert} and C{client.key} are there.
    """
    certs.load_ca(settings["ca-cert"])
    cert, key = settings["cert"], settings["key"]
    if cert or key:
        cert, key = cert or "client.cert", key or "client.key"
        certs.load_identity(cert, key)
    else:
        try:
            cert, key = "client.cert", "client.key"
            certs.load_identity(cert, key)
        except ValueError:
            cert = key = None
    context = ssl.create_default_context(cafile=settings["ca-cert"])
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert:
        context.load_cert_chain(cert, key)
    return context


class NATSConnectorMaker(StreamConnectorMaker):
    """
    Makes C{nats/client}, C{nats/event/client} and their C{natss/} forms.
    """

    log = Logger()
    log_tag = "NATS"
    protocol = NATSConnection

    def __init__(self, kind="nats", loops=None, run=session.run):
        """
        :param loops: where the asyncio halves run (a L{LoopThread}, ...),
            or C{None} to choose by the reactor (L{loopsFor}).
        :param run: the asyncio half of a link.
        """
        StreamConnectorMaker.__init__(self, kind)
        self.prefixes = (kind + "/client:", kind + "/event/client:")
        self.secure = kind == "natss"
        self.loops = loops
        self.run = run
        self._steppers = {}

    def makeEnd(self, spec, role, settings, router, reactor):
        return ClientEnd(spec, role, router, reactor, settings, self.clientEndpoint(reactor, spec, settings, role),
                         self.log_tag, protocol=self.protocol)

    def url(self, spec):
        """
        :return: the NATS URL of a connector's address.
        :raise ValueError: one line naming the connector.
        """
        if spec.interface is not None:
            raise ValueError("'{}': nats/ ends cannot be bound to a network interface".format(spec.text))
        address = spec.address if ":" in spec.address else "{}:{}".format(spec.address, DEFAULT_PORT)
        try:
            host, port = parse_host_port(address)
        except ValueError as e:
            raise ValueError("'{}': {}".format(spec.text, e)) from None
        if ":" in host:
            host = "[{}]".format(host)
        return "{}://{}:{}".format("tls" if self.secure else "nats", host, port)

    def clientEndpoint(self, reactor, spec, settings, role=IN):
        subjects = Subjects(settings.get("nats-subject") or "uhppoted.tunnel")
        options = credentials(settings.get("nats-credentials"))
        problem = credentials_problem(settings.get("nats-credentials"))
        if problem is not None:
            self.log.warn("--nats-credentials {problem}", problem=problem)
        if self.secure:
            options["tls"] = tls_context(settings)
        plan = session.Plan(self.url(spec), options, pending=settings.get("nats-pending-limit") or 1024 * 1024)
        max_payload = settings["max-payload"]
        events = settings["events"]
        if events:
            plan.stream = (subjects.stream, (subjects.events,))
            if role == IN:
                plan.consume = (settings.get("nats-durable") or "uhppoted-tunnel", subjects.events)

                def role_of(link):
                    return roles.EventTake(max_payload, link.command, link.bad)
            else:
                def role_of(link):
                    return roles.EventStore(subjects, link.command)
        elif role == IN:
            serials = tuple(settings.get("nats-serials") or ())
            plan.subscribe = (subjects.broadcast,) + tuple(subjects.request(serial) for serial in serials)

            def role_of(link):
                return roles.SiteRequests(subjects, max_payload, link.command, link.bad, reactor.seconds, serials,
                                          learn=not serials)
        else:
            plan.inbox = True

            def role_of(link):
                return roles.HostRequests(subjects, max_payload, link.command, link.bad, link.noSite)
        return NATSClientEndpoint(reactor, spec.address, plan, role_of, self.loopsFor(reactor), self.run)

    def loopsFor(self, reactor):
        """
        Where the links' asyncio halves run: on the reactor's own loop
        under the asyncio reactor; else on a loop the reactor steps on its
        own thread (L{ReactorStepper}) if it watches descriptors; else on
        the NATS loop's thread.
        """
        if isinstance(reactor, AsyncioSelectorReactor):
            # Twisted names the reactor's loop only privately
            return ReactorLoop(reactor._asyncioEventloop)
        if self.loops is not None:
            return self.loops
        if IReactorFDSet.providedBy(reactor):
            stepper = self._steppers.get(reactor)
            if stepper is None:
                stepper = self._steppers[reactor] = ReactorStepper(reactor)
            return stepper
        return LOOPS
