# -*- test-case-name: tests.unit.test_descriptors -*-
"""
The process's descriptor limit at start: the soft C{RLIMIT_NOFILE} is
raised to the hard one (as Go's runtime does), and a limit still below
what the connection caps need is a warning in words, so that a flood
meets the caps (refused, with a warning naming the flag) before it meets
the limit (accepts that fail).
"""

from twisted.logger import Logger

from uhppoted_tunnel.interfaces import IN, OUT
from uhppoted_tunnel.link.limits import DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_SOURCE

#: Descriptors a tunnel needs beside its ends' connections: its listening
#: and UDP sockets, log and spool files, the reactor's own, a client end.
MARGIN = 64

log = Logger(namespace="uhppoted_tunnel")


def capped(kind):
    """
    :param kind: a connector's kind (C{tcp/server}, C{http}, C{udp/listen}).
    :return: whether an end of that kind accepts connections under the caps.
    """
    return kind.endswith("/server") or kind.split("/")[0] in ("http", "https")


def weight(kind):
    """
    :param kind: a connector's kind.
    :return: descriptors an end of that kind may hold for each connection
        C{--max-connections} allows: none for an end not under the caps;
        two for a gRPC server (it takes twice as many connections as
        calls, so that a client over the cap is told why); else one.
    """
    if not capped(kind):
        return 0
    return 2 if kind.split("/")[0] in ("grpc", "grpcs") else 1


def capped_ends(options):
    """
    :param options: parsed L{uhppoted_tunnel.app.options.Options}.
    :return: the descriptors the tunnel's ends (C{--metrics} included) may
        hold for each connection C{--max-connections} allows.
    """
    ends = sum(weight(options.ends[role][1].kind) for role in (IN, OUT) if role in options.ends)
    return ends + (1 if options.get("metrics") else 0)


def needed(options):
    """
    The descriptors the tunnel's caps may hold open at once.

    :param options: parsed L{uhppoted_tunnel.app.options.Options}.
    """
    return MARGIN + capped_ends(options) * (options.get("max-connections") or DEFAULT_MAX_CONNECTIONS)


def fit_caps(options, limit):
    """
    Lower C{--max-connections} (and C{--max-connections-per-source}) so
    that the caps bite before the open-file limit does: a connection over
    a cap is refused with a warning, or makes room by closing the oldest
    unproven one, where one over the limit would be closed unserved.

    :param options: parsed L{uhppoted_tunnel.app.options.Options}, changed.
    :param limit: the open-file limit (L{raise_limit}'s).
    :return: the cap now.
    """
    cap = options.get("max-connections") or DEFAULT_MAX_CONNECTIONS
    ends = capped_ends(options)
    if not ends or limit < 0 or MARGIN + ends * cap <= limit:
        return cap
    fitted = max(1, (limit - MARGIN) // ends)
    options["max-connections"] = fitted
    per_source = options.get("max-connections-per-source") or DEFAULT_MAX_CONNECTIONS_PER_SOURCE
    options["max-connections-per-source"] = min(per_source, fitted)
    log.warn("lowered --max-connections from {cap} to {fitted} on each server end to fit the open-file limit of "
             "{limit}", cap=cap, fitted=fitted, limit=limit)
    return fitted


def raise_limit(want, resource):
    """
    Raise the soft descriptor limit to the hard one, and warn when it is
    still below C{want}.

    :param want: the descriptors needed (L{needed}).
    :param resource: the C{resource} module, or what stands in for it.
    :return: the soft limit now.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != soft and (hard == resource.RLIM_INFINITY or hard > soft):
        target = hard
        if hard == resource.RLIM_INFINITY:
            # an unlimited hard limit is refused as a soft one on some
            # systems: ask for what is needed and a good deal more
            target = max(soft, want * 4, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warn("could not raise the open-file limit from {soft} to {hard}: {error}", soft=soft, hard=hard,
                     error=e.strerror if isinstance(e, OSError) else str(e))
    if soft != resource.RLIM_INFINITY and soft < want:
        log.warn("the open-file limit is {soft}, below the {want} descriptors the connection caps may need "
                 "(--max-connections on each server end, and a margin): raise it (ulimit -n, LimitNOFILE= in the "
                 "unit) or lower --max-connections", soft=soft, want=want)
    return soft
