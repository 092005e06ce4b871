# -*- test-case-name: tests.unit.test_proxy -*-
"""
Which proxy a client end dials through, if any, as curl chooses it:
C{--proxy URL} (TOML C{proxy}), or else the environment
(C{https_proxy}/C{HTTPS_PROXY} for secure ends, C{http_proxy} in lower
case only for plain ones, then C{all_proxy}/C{ALL_PROXY});
C{no_proxy}/C{NO_PROXY} names the hosts dialled directly, whichever way
the proxy was given; C{--proxy none} turns proxies off.

Pure logic: the environment is passed in.
"""

import dataclasses
import ipaddress
import re

from uhppoted_tunnel.core.addresses import go_address
from uhppoted_tunnel.transports.proxy.keymode import identity_mode_warning
from uhppoted_tunnel.transports.proxy.urls import NONE, Proxy, SSHProxy, parse_proxy


def _split_host(host):
    """
    :return: C{(kind, value)}: C{("ip", ip_address)} or C{("name", text)}.
    """
    try:
        return "ip", ipaddress.ip_address(host.split("%")[0].strip("[]"))
    except ValueError:
        return "name", host.rstrip(".").lower()


def no_proxy_matches(host, no_proxy):
    """
    Whether C{no_proxy} says to dial C{host} directly, as curl reads it: a
    list separated by commas (or blanks); C{*} alone matches every host; a
    name matches itself and the names under it (C{example.com} and
    C{.example.com} both match C{example.com} and C{www.example.com}, not
    C{notexample.com}), without regard to case or a final dot; an IP
    address matches itself, and an address with C{/BITS} the range (CIDR);
    names match names and addresses addresses (nothing is resolved).

    :param host: the host dialled (a name, or an IP address).
    :param no_proxy: the list, or C{None}.
    """
    if not no_proxy:
        return False
    if no_proxy.strip() == "*":
        return True
    kind, value = _split_host(host)
    for token in re.split(r"[\s,]+", no_proxy):
        if not token:
            continue
        if kind == "name":
            pattern = token.rstrip(".").lower()
            if pattern.startswith("."):
                pattern = pattern[1:]
            if pattern and (value == pattern or value.endswith("." + pattern)):
                return True
            continue
        address, slash, bits = token.strip("[]").partition("/")
        try:
            network = ipaddress.ip_network(address.split("%")[0] + (slash + bits if slash else ""), strict=False)
        except ValueError:
            continue
        if network.version == value.version and value in network:
            return True
    return False


#: The variables a proxy is read from, in curl's order: the scheme's own
#: (https_proxy for secure ends, http_proxy, lower case only, for plain
#: ones: CGI sets HTTP_PROXY from a request's "Proxy:" header), then
#: all_proxy.
SECURE_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
PLAIN_VARIABLES = ("http_proxy", "all_proxy", "ALL_PROXY")
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")


def _first(environ, names):
    """
    :return: C{(name, value)} of the first variable set to a non-empty
        value (curl takes an empty one as unset), or C{(None, None)}.
    """
    for name in names:
        value = environ.get(name)
        if value:
            return name, value
    return None, None


@dataclasses.dataclass(frozen=True)
class Choice:
    """
    What a client end dials through, and why.

    :ivar proxy: the L{Proxy} or L{SSHProxy}, or C{None} to dial directly.
    :ivar why: where the proxy (or its absence) came from, for the log
        line; C{None} when nothing asked for a proxy.
    """

    proxy: Proxy | SSHProxy | None
    why: str | None = None


def choose(host, setting, source, environ, secure):
    """
    The proxy for a client end that dials C{host}, as curl chooses it.

    :param host: the host dialled.
    :param setting: C{--proxy} (or TOML C{proxy}) as given, or C{None}.
    :param source: how a message names where C{setting} came from.
    :param environ: the environment.
    :param secure: whether the end speaks TLS (C{https_proxy}) or not
        (C{http_proxy}).
    :raise ValueError: for an unusable proxy URL, naming where it came from.
    """
    if setting is not None and setting.strip().lower() in NONE:
        return Choice(None, "{} none".format(source) if setting.strip() else "{} is empty".format(source))
    name, no_proxy = _first(environ, NO_PROXY_VARIABLES)
    if setting is not None:
        where, text = source, setting
    else:
        where, text = _first(environ, SECURE_VARIABLES if secure else PLAIN_VARIABLES)
        if where is None:
            return Choice(None)
    if no_proxy_matches(host, no_proxy):
        return Choice(None, "{} matches {} (not {})".format(name, host, where))
    try:
        proxy = parse_proxy(text)
    except ValueError as e:
        hint = "" if setting is not None else " (--proxy none ignores the environment)"
        raise ValueError("{}: {}{}".format(where, e, hint)) from None
    if proxy is None:
        return Choice(None, where)
    return Choice(proxy, where)


def choose_for(spec, settings, secure):
    """
    The proxy for a client end's connector, from its settings.

    :param spec: the connector spec.
    :param settings: the tunnel's options (C{proxy}, with C{sources} naming
        where it came from and the environment as C{environ}); a plain
        dict has no environment.
    :param secure: whether the end speaks TLS (C{https_proxy}).
    :return: C{(host, port, choice)}, or C{None} for an address that is not
        a Go C{HOST:PORT} (a Twisted endpoint description is used as
        given).
    :raise ValueError: for an unusable proxy URL.
    """
    address = go_address(spec.address)
    if address is None or not address[0]:
        return None
    host, port = address
    sources = getattr(settings, "sources", None) or {}
    environ = getattr(settings, "environ", None) or {}
    return host, port, choose(host, settings.get("proxy"), sources.get("proxy", "--proxy"), environ, secure)


def describe(spec, settings, secure):
    """
    What L{uhppoted_tunnel.transports.proxy.client_endpoint} will say about a client end's proxy, for
    C{uhppoted-tunnel check}, or C{None} when there is nothing to say.
    """
    chosen = choose_for(spec, settings, secure)
    if chosen is None or chosen[2].why is None:
        return None
    choice = chosen[2]
    if choice.proxy is None:
        return "{} dials {} directly ({})".format(spec.kind, spec.address, choice.why)
    if isinstance(choice.proxy, SSHProxy):
        note = "{} dials {} through SSH server {} ({})".format(spec.kind, spec.address, choice.proxy, choice.why)
        identity = settings.get("ssh-identity")
        warning = identity_mode_warning(identity) if identity else None
        return note if warning is None else note + "; warning: " + warning
    return "{} dials {} through HTTP proxy {} ({})".format(spec.kind, spec.address, choice.proxy, choice.why)
