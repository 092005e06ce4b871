# -*- test-case-name: tests.unit.test_addresses -*-
"""
Addresses as the Go tunnel writes them (C{HOST:PORT}, C{[IPV6]:PORT},
C{:PORT}) and as the log shows them.
"""

import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address


def parse_host_port(address, default_host=None):
    """
    Parse a Go-style C{HOST:PORT}, C{[IPV6]:PORT} or C{:PORT} address.

    :param address: the address text.
    :param default_host: the host used when the address has none; when
        C{None} a host is required.
    :return: C{(host, port)} with IPv6 brackets removed.
    :raise ValueError: naming the problem.
    """
    if address.startswith("["):
        host, sep, port = address[1:].partition("]:")
        if not sep:
            raise ValueError("invalid address '{}' (expected [IPv6]:PORT)".format(address))
        ipaddress.IPv6Address(host.split("%")[0])
    else:
        host, sep, port = address.rpartition(":")
        if not sep:
            raise ValueError("invalid address '{}' (expected HOST:PORT)".format(address))
        if ":" in host:
            raise ValueError("invalid address '{}' (write IPv6 addresses as [ADDRESS]:PORT)".format(address))
    if not host:
        if default_host is None:
            raise ValueError("invalid address '{}' (expected HOST:PORT)".format(address))
        host = default_host
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("invalid port in '{}' (expected 0..65535)".format(address))
    return host, int(port)


def is_ip_address(host):
    """
    True if C{host} is a literal IPv4 or IPv6 address.
    """
    try:
        ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return False
    return True


def is_loopback(address):
    """
    Whether a listening address is reachable from this machine only (a
    loopback IP address, or not an IP address at all: a UNIX socket).
    """
    host = getattr(address, "host", None)
    if host is None:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def format_address(address):
    """
    A Twisted address as C{host:port} (an IPv6 host in brackets), a UNIX
    address as its path, anything else as its text.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None or port is None:
        name = getattr(address, "name", None)
        return name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name or address)
    return host_port(host, port)


def host_port(host, port):
    """
    C{HOST:PORT}, with an IPv6 host in brackets.
    """
    return "[{}]:{}".format(host, port) if ":" in host else "{}:{}".format(host, port)


def tcp_address(host, port):
    """
    :return: C{host}, C{port} as a Twisted TCP address (an IPv6 one for a
        host with a colon).
    """
    return (IPv6Address if ":" in host else IPv4Address)("TCP", host, port)


#: Endpoint types that mark an address as a Twisted endpoint description
#: rather than a Go C{HOST:PORT}.
ENDPOINT_TYPES = frozenset(["tcp", "tcp6", "unix", "ssl", "tls", "systemd", "tor", "onion"])


def go_address(address):
    """
    Parse a Go-style stream address, or return C{None} when the address is
    a Twisted endpoint description.

    :return: C{(host, port)} or C{None}.
    """
    head = address.split(":", 1)[0]
    if head in ENDPOINT_TYPES:
        return None
    try:
        return parse_host_port(address, default_host="")
    except ValueError:
        return None


#: The port each web scheme implies, left out of a normalized origin.
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalize_origin(text):
    """
    An origin as browsers send it in C{Origin}: C{SCHEME://HOST[:PORT]},
    in lower case, without the scheme's default port (and without a
    trailing C{/}, which some people write).

    :param text: e.g. C{"https://App.Example.com:443"}.
    :return: e.g. C{"https://app.example.com"}.
    :raise ValueError: for anything else (a path, C{null}, no scheme).
    """
    if not isinstance(text, str):
        raise ValueError("expected an origin such as https://app.example.com, got {!r}".format(text))
    scheme, sep, rest = text.strip().partition("://")
    scheme = scheme.lower()
    if rest.endswith("/"):
        rest = rest[:-1]
    if not sep or scheme not in _DEFAULT_PORTS or not rest or any(c in rest for c in "/?#@ \t\\"):
        raise ValueError("invalid origin {!r} (expected SCHEME://HOST[:PORT], e.g. https://app.example.com)".format(
            text))
    if rest.startswith("["):
        host, bracket, port = rest[1:].partition("]")
        if not bracket or (port and not port.startswith(":")):
            raise ValueError("invalid origin {!r} (write IPv6 hosts as [ADDRESS])".format(text))
        try:
            host = "[{}]".format(ipaddress.IPv6Address(host).compressed)
        except ValueError:
            raise ValueError("invalid origin {!r} (not an IPv6 address in brackets)".format(text)) from None
        port = port[1:]
    else:
        host, _, port = rest.partition(":")
        if not host or ":" in port:
            raise ValueError("invalid origin {!r} (expected SCHEME://HOST[:PORT])".format(text))
    if port:
        if not port.isdigit() or not 0 < int(port) <= 65535:
            raise ValueError("invalid port in origin {!r}".format(text))
        if int(port) == _DEFAULT_PORTS[scheme]:
            port = ""
    return "{}://{}{}".format(scheme, host.lower(), ":" + str(int(port)) if port else "")


def parse_networks(texts):
    """
    Networks written as CIDR blocks or single addresses
    (C{127.0.0.1}, C{10.0.0.0/8}, C{::1}).

    :param texts: an iterable of text.
    :return: a tuple of C{ipaddress} networks.
    :raise ValueError: naming the first one that is not a network.
    """
    networks = []
    for text in texts:
        try:
            networks.append(ipaddress.ip_network(text.strip() if isinstance(text, str) else text, strict=False))
        except (TypeError, ValueError):
            raise ValueError("invalid network {!r} (expected an address or a CIDR block, e.g. 127.0.0.1 or "
                             "10.0.0.0/8)".format(text)) from None
    return tuple(networks)
