# -*- test-case-name: tests.unit.test_addresses -*-
"""
Addresses as the Go tunnel writes them (C{HOST:PORT}, C{[IPV6]:PORT},
C{:PORT}) and as the log shows them.
"""

import ipaddress


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
    if ":" in host:
        return "[{}]:{}".format(host, port)
    return "{}:{}".format(host, port)


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
