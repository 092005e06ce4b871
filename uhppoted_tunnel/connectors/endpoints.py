# -*- test-case-name: tests.unit.test_stream,tests.unit.test_endpoints -*-
"""
Where a stream end listens or dials: a Go C{HOST:PORT} (bound to an
interface with C{::IFACE:}), or any Twisted endpoint description
(C{unix:/path}, C{systemd:domain=INET:index=0}, a plugin's).
"""

from twisted.internet import endpoints

from uhppoted_tunnel.addresses import go_address, is_ip_address, parse_host_port
from uhppoted_tunnel.bind import reactor_for

#: Go: a client gives up dialling after 5 s.
DIAL_TIMEOUT = 5


def server_endpoint(reactor, spec, backlog=None):
    """
    The endpoint a stream server end listens on.

    :param reactor: the reactor.
    :param spec: the connector spec.
    :param backlog: the listen backlog of a C{HOST:PORT} address (default
        Twisted's, 50); an endpoint description sets its own.
    :raise ValueError: for an unusable address.
    """
    parsed = _go_or_described(endpoints.serverFromString, reactor, spec)
    if not isinstance(parsed, tuple):
        return parsed
    host, port = parsed
    if host and not is_ip_address(host):
        raise ValueError("invalid address in '{}': listen on an IP address".format(spec.text))
    reactor = reactor_for(reactor, spec.interface)
    extra = {} if backlog is None else {"backlog": backlog}
    if ":" in host:
        return endpoints.TCP6ServerEndpoint(reactor, port, interface=host, **extra)
    return endpoints.TCP4ServerEndpoint(reactor, port, interface=host, **extra)


def client_endpoint(reactor, spec):
    """
    The endpoint a stream client end dials.

    :param reactor: the reactor.
    :param spec: the connector spec.
    :raise ValueError: for an unusable address.
    """
    parsed = _go_or_described(endpoints.clientFromString, reactor, spec)
    if not isinstance(parsed, tuple):
        return parsed
    host, port = parsed
    if not host or port == 0:
        raise ValueError("invalid address in '{}' (expected HOST:PORT)".format(spec.text))
    reactor = reactor_for(reactor, spec.interface)
    if is_ip_address(host):
        if ":" in host:
            return endpoints.TCP6ClientEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT)
        return endpoints.TCP4ClientEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT)
    return endpoints.HostnameEndpoint(reactor, host, port, timeout=DIAL_TIMEOUT)


def _go_or_described(parse, reactor, spec):
    """
    :return: C{(host, port)} for a Go address, else the endpoint its
        Twisted description makes (with C{parse}, the server or client
        string parser).
    """
    parsed = go_address(spec.address)
    if parsed is not None:
        return parsed
    if spec.interface is not None:
        raise ValueError("'{}': an interface binding needs a HOST:PORT address".format(spec.text))
    return _described(parse, reactor, spec)


def _described(parse, reactor, spec):
    """
    An endpoint from a Twisted endpoint description, or a one-line error
    naming the connector (endpoint parsers raise all kinds of exceptions:
    the systemd parser an C{IndexError} when no socket was passed in).
    """
    head = spec.address.split(":", 1)[0]
    if not head or is_ip_address(head) or head == "localhost":
        # meant as HOST:PORT, not a description
        try:
            parse_host_port(spec.address)
        except ValueError as e:
            raise ValueError("'{}': {}".format(spec.text, e)) from None
        raise ValueError("invalid address in '{}' (expected HOST:PORT)".format(spec.text))
    try:
        return parse(reactor, spec.address)
    except Exception as e:
        reason = str(e) or type(e).__name__
        if isinstance(e, IndexError) and spec.address.startswith("systemd:"):
            reason = "no such socket was passed in (LISTEN_FDS/LISTEN_FDNAMES)"
        raise ValueError("'{}': not a usable endpoint: {}".format(spec.text, reason)) from None
