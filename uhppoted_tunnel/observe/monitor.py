# -*- test-case-name: tests.unit.test_monitor,tests.loopback.test_metrics -*-
"""
What a tunnel serves about itself over HTTP: on C{--metrics ADDR} (its own
small site) and on an C{http/} or C{https/} end, when there is one.

=============== ==============================================================
C{/metrics}     Prometheus text (or OpenMetrics, if the scraper asks for it)
C{/healthz}     C{200 ok}: the process is up and its reactor turns
C{/readyz}      C{200} with JSON when every end is up, else C{503} with a JSON
                C{reason} naming the ends that are not
C{/status.json} the status snapshot (L{uhppoted_tunnel.observe.telemetry})
=============== ==============================================================

The site of C{--metrics} is the HTTP ends' plumbing (L{uhppoted_tunnel.observe.web}):
security headers (the CSP included) on every answer, a request deadline
(C{--http-request-timeout}), bounded bodies, and the connection caps
(C{--max-connections}, C{--max-connections-per-source}).

L{site_root} builds its root resource; a status page (a resource for
C{/}, its assets and its stream) can be mounted there with C{page=}.

Scrapes are answered synchronously, in the reactor's thread: the numbers
are the reactor's own objects, read without locks, and a scrape of a
tunnel takes about a millisecond. (C{prometheus_client}'s own
Twisted resource runs the registry in the reactor's thread pool instead,
and imports the global reactor.)
"""


from prometheus_client.exposition import choose_encoder
from twisted.application.service import Service
from twisted.internet.defer import gatherResults, maybeDeferred
from twisted.logger import Logger
from twisted.web.resource import NoResource, Resource

from uhppoted_tunnel.core.addresses import format_address, is_loopback
from uhppoted_tunnel.transports.endpoints import server_endpoint
from uhppoted_tunnel.observe.jsonapi import respond
from uhppoted_tunnel.link.lifecycle import EndLifecycle
from uhppoted_tunnel.link.limits import LISTEN_BACKLOG, limit_endpoint
from uhppoted_tunnel.observe.metrics import registry_for
from uhppoted_tunnel.core.spec import ConnectorSpec
from uhppoted_tunnel.observe.web import DEFAULT_REQUEST_TIMEOUT, ConnectionTracker, QuietSite, add_security_headers

#: The paths served, in the order an index lists them.
PATHS = (b"metrics", b"healthz", b"readyz", b"status.json")


class MetricsPage(Resource):
    """
    C{/metrics}: the tunnel's registry, in the format the scraper asks for.
    """

    isLeaf = True

    def __init__(self, registry):
        Resource.__init__(self)
        self.registry = registry

    def render_GET(self, request):
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(None if accept is None else accept.decode("latin-1"))
        request.setHeader(b"Content-Type", content_type.encode("ascii"))
        request.setHeader(b"Cache-Control", b"no-store")
        return encoder(self.registry)


class HealthPage(Resource):
    """
    C{/healthz}: the process is up.
    """

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        return b"ok\n"


class ReadyPage(Resource):
    """
    C{/readyz}: 200 when every end is up, 503 naming those that are not.
    """

    isLeaf = True

    def __init__(self, telemetry):
        Resource.__init__(self)
        self.telemetry = telemetry

    def render_GET(self, request):
        ready, document = self.telemetry.readiness()
        return respond(request, 200 if ready else 503, document)


class StatusPage(Resource):
    """
    C{/status.json}: the status snapshot.
    """

    isLeaf = True

    def __init__(self, telemetry):
        Resource.__init__(self)
        self.telemetry = telemetry

    def render_GET(self, request):
        return respond(request, 200, self.telemetry.snapshot())


class Index(Resource):
    """
    C{/} when no status page is mounted: the paths served, as text.
    """

    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        return b"uhppoted-tunnel\n" + b"".join(b"/" + path + b"\n" for path in PATHS)


class MonitorRoot(Resource):
    """
    The four paths, and everything else to the status page (or, without
    one, an index at C{/} and 404 elsewhere).
    """

    def __init__(self, telemetry, registry, page=None):
        Resource.__init__(self)
        self.page = page
        self.putChild(b"metrics", MetricsPage(registry))
        self.putChild(b"healthz", HealthPage())
        self.putChild(b"readyz", ReadyPage(telemetry))
        self.putChild(b"status.json", StatusPage(telemetry))

    def getChild(self, path, request):
        if self.page is not None:
            # the page sees the path as its own root would
            request.prepath.pop()
            request.postpath.insert(0, path)
            return self.page
        if path == b"":
            return Index()
        return NoResource()

    def leaf(self, request):
        """
        The resource for a one-part path, or C{None} (for an end that
        serves these paths beside its own).
        """
        if len(request.postpath) != 1:
            return None
        return self.children.get(request.postpath[0])


def site_root(telemetry, reactor=None, settings=None, page=None, registry=None):
    """
    The root resource of a tunnel's monitoring site.

    :param telemetry: the tunnel's L{uhppoted_tunnel.observe.telemetry.Telemetry}.
    :param reactor: unused, for symmetry with the other site builders.
    :param settings: unused, likewise.
    :param page: a resource to serve C{/} and every path but the four, or
        C{None}.
    :param registry: the registry for C{/metrics}; the telemetry's own
        (L{uhppoted_tunnel.observe.metrics.registry_for}) when C{None}.
    """
    return MonitorRoot(telemetry, registry_for(telemetry) if registry is None else registry, page)


class MonitorSite(QuietSite):
    """
    The C{--metrics} site: security headers on every answer, bounded
    bodies, no access log.
    """

    secure = False

    def getResourceFor(self, request):
        request.responseHeaders.removeHeader(b"Server")
        add_security_headers(request, self.secure)
        return QuietSite.getResourceFor(self, request)


class MonitorService(EndLifecycle, Service):
    """
    C{--metrics ADDR}: listens for scrapes, health checks and the status
    page. A port it cannot listen on stops the tunnel, as an end's would.
    """

    log = Logger()
    log_tag = "METRICS"
    role = "metrics"
    def __init__(self, spec, endpoint, root, reactor, settings, page=None):
        """
        :param spec: the address as a L{ConnectorSpec}.
        :param endpoint: the (capped) endpoint to listen on.
        :param root: the root resource (L{site_root}).
        :param settings: the tunnel's options (C{http-request-timeout}).
        :param page: the status page mounted at C{/}, stopped with the
            service, or C{None}.
        """
        self.page = page
        self.spec = spec
        self.endpoint = endpoint
        self.reactor = reactor
        self.factory = ConnectionTracker(MonitorSite(root, reactor=reactor), clock=reactor,
                                         request_timeout=settings.get("http-request-timeout",
                                                                      DEFAULT_REQUEST_TIMEOUT))
        self.factory.log_tag = self.log_tag

    def startService(self):
        Service.startService(self)
        self.listenOn(self.endpoint, self.factory)

    def announce(self, address):
        shown = format_address(address)
        self.log.info("metrics, health and status on {url}",
                      url="http://{}/".format(shown) if getattr(address, "host", None) else shown)
        if not is_loopback(address):
            self.log.warn("{address} serves the tunnel's metrics and status (controller serials, peer addresses) "
                          "to anyone who can reach it: bind it to a loopback or management address",
                          address=format_address(address))

    def stopService(self):
        Service.stopService(self)
        port = self.cancelListen()
        if self.page is not None:
            self.page.stop()
        self.factory.flush()
        limited = self.endpoint.factory
        if limited is not None:
            limited.flush()
        stopping = [self.factory.closeAll(self.reactor)]
        if port is not None:
            stopping.append(maybeDeferred(port.stopListening))
        return gatherResults(stopping, consumeErrors=True)


def monitor_service(address, telemetry, settings, reactor, page=None):
    """
    The service of C{--metrics ADDR}.

    :param address: C{HOST:PORT}, or a Twisted endpoint description
        (C{unix:/run/uhppoted/metrics.sock}, C{systemd:NAME}, ...).
    :raise ValueError: one line naming C{--metrics}, for an unusable
        address.
    """
    spec = ConnectorSpec(address, "", None, address)
    try:
        listening = server_endpoint(reactor, spec, backlog=LISTEN_BACKLOG, freebind=settings.get("freebind", False))
    except ValueError as e:
        raise ValueError("--metrics: {}".format(e)) from None
    endpoint = limit_endpoint(listening, settings, reactor, MonitorService.log_tag)
    return MonitorService(spec, endpoint, site_root(telemetry, page=page), reactor, settings, page)
