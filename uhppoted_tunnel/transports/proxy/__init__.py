# -*- test-case-name: tests.unit.test_proxy,tests.loopback.test_proxy -*-
"""
Proxies, as endpoint wrappers any client end can use: L{client_endpoint}
gives a stream client end the endpoint it dials, the direct one or, when
a proxy is chosen for its host (L{choice}), one that reaches the host
through the proxy and is handed the endpoint that dials the proxy.

A proxy kind is a module of this package that supplies such a wrapper,
an C{IStreamClientEndpoint} built from C{(dial, proxy, host, port, clock,
timeout, log_tag)}: L{connect.ProxyEndpoint}, C{CONNECT} through an HTTP
proxy, and L{ssh.SSHEndpoint}, a C{direct-tcpip} channel through an SSH
server (made by L{ssh.ssh_endpoint} from the settings).

What this package offers the rest of the tunnel is imported here:
L{client_endpoint} and L{proxy_for} for the ends, L{describe} for
C{uhppoted-tunnel check}, L{check_proxy} for the options and the
configuration file, and L{Proxy}.
"""

import dataclasses

from twisted.logger import Logger

from uhppoted_tunnel.transports import endpoints
from uhppoted_tunnel.transports.proxy.choice import choose_for, describe
from uhppoted_tunnel.transports.proxy.connect import ProxyEndpoint
from uhppoted_tunnel.core.addresses import host_port
from uhppoted_tunnel.transports.proxy.urls import Proxy, SSHProxy, check_proxy
from uhppoted_tunnel.transports.tls.options import DEFAULT_HANDSHAKE_TIMEOUT

__all__ = ["Proxy", "check_proxy", "client_endpoint", "describe", "proxy_for"]

log = Logger()


def _kind(proxy):
    """
    How a log line names a proxy: C{HTTP proxy HOST:PORT}, C{SSH server
    USER@HOST:PORT}.
    """
    return "SSH server {}".format(proxy) if isinstance(proxy, SSHProxy) else "HTTP proxy {}".format(proxy)


def proxy_for(spec, settings, secure=False, log_tag="TCP", ssh=False):
    """
    The proxy a client end dials through (L{choice.choose}) when its address is
    a Go C{HOST:PORT}, and says in the log which and why: for the ends
    that dial through L{client_endpoint} (every stream transport, C{grpc/}
    included), and for a transport that speaks to proxies itself.

    :param settings: the tunnel's options (C{proxy}, and the environment
        as their C{environ}; none for a plain dict).
    :param secure: whether the end speaks TLS (C{https_proxy}).
    :param ssh: whether the caller can dial through an L{SSHProxy}.
    :return: C{(proxy, host, port)}: the L{Proxy} (or L{SSHProxy}), or C{None} to dial
        directly, and the host and port dialled (C{None} for a Twisted
        endpoint description).
    :raise ValueError: for an unusable address or proxy URL.
    """
    chosen = choose_for(spec, settings, secure)
    if chosen is None:
        return None, None, None
    host, port, choice = chosen
    if choice.proxy is None:
        if choice.why is not None:
            log.info("dialling {address} directly ({why})", address=spec.address, why=choice.why, log_tag=log_tag)
        return None, host, port
    if any(c <= " " or c == "\x7f" for c in host):
        raise ValueError("invalid host in '{}'".format(spec.text))
    if isinstance(choice.proxy, SSHProxy) and not ssh:
        raise ValueError("{}: {} ends cannot dial through an SSH server ({}): use an HTTP proxy, or a tcp/ or tls/ "
                         "end".format(choice.why, spec.kind, choice.proxy))
    log.info("dialling {address} through {proxy} ({why})", address=spec.address, proxy=_kind(choice.proxy),
             why=choice.why, log_tag=log_tag)
    return choice.proxy, host, port


def client_endpoint(reactor, spec, settings, secure=False, log_tag="TCP"):
    """
    The endpoint a stream client end dials: through the proxy chosen for
    its host (L{proxy_for}), else as L{endpoints.client_endpoint} makes it
    (a Twisted endpoint description is used as given).

    :param settings: the tunnel's options (C{proxy}, C{handshake-timeout},
        and the environment as their C{environ}; none for a plain dict).
    :param secure: whether the end speaks TLS (C{https_proxy}).
    :raise ValueError: for an unusable address or proxy URL, or, for an
        SSH server, an unusable identity or known-hosts file.
    """
    direct = endpoints.client_endpoint(reactor, spec)
    proxy, host, port = proxy_for(spec, settings, secure, log_tag, ssh=True)
    if proxy is None:
        return direct
    dial = endpoints.client_endpoint(reactor, dataclasses.replace(spec, address=host_port(proxy.host, proxy.port)))
    timeout = settings.get("handshake-timeout", DEFAULT_HANDSHAKE_TIMEOUT)
    if isinstance(proxy, SSHProxy):
        # conch only for a tunnel that goes through SSH
        from uhppoted_tunnel.transports.proxy.ssh import ssh_endpoint

        return ssh_endpoint(reactor, dial, proxy, host, port, settings, timeout, log_tag)
    return ProxyEndpoint(dial, proxy, host, port, reactor, timeout, log_tag)
