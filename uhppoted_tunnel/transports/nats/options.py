# -*- test-case-name: tests.unit.test_nats -*-
"""
The options of the nats/ and natss/ ends: credentials, the subject
prefix, the serials a site serves, the hosts' durable consumer and the
client's pending limit. Light: no nats-py here.
"""

import os
import stat

from uhppoted_tunnel.core.declare import LIST, Option
from uhppoted_tunnel.core.values import integer, read_integer, shown, string
from uhppoted_tunnel.transports.nats.subjects import (
    DEFAULT_DURABLE,
    DEFAULT_PREFIX,
    check_durable,
    check_prefix,
    check_serial,
)

#: bytes a NATS client may hold for a slow subscription (nats-py's is 64 MiB)
DEFAULT_PENDING = 1024 * 1024


def credentials_problem(path, settings=None):
    """
    What C{check} says of a credentials file: missing, not a file, or
    readable by others.

    :return: a one-line message, or C{None}.
    """
    if not path:
        return None
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        return "'{}': {} (a .creds file or an nkey seed file)".format(path, e.strerror)
    if not stat.S_ISREG(mode):
        return "'{}': not a file".format(path)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return ("'{}': others can read it (mode {:o}): anyone on this machine could join the cluster as this "
                "end; chmod 600 it".format(path, stat.S_IMODE(mode)))
    return None


def serials(value):
    """
    Controller serials: a TOML list of numbers (or of strings), or the
    command line's comma list.
    """
    if type(value) is str:
        value = [part.strip() for part in value.split(",") if part.strip()]
    if type(value) is not list or not all(type(item) in (int, str) for item in value):
        raise ValueError("expected a list of controller serial numbers, got {}".format(shown(value)))
    return sorted(set(check_serial(item) for item in value))


OPTIONS = (
    Option("nats-credentials", "nats/ and natss/ ends: a NATS credentials file (.creds: a user JWT and its nkey "
                               "seed) or an nkey seed file (default: none).",
           validate=credentials_problem),
    Option("nats-subject", "nats/ and natss/ ends: the subject prefix both halves use (default {}).".format(
        DEFAULT_PREFIX), default=DEFAULT_PREFIX, convert=lambda value: check_prefix(string(value))),
    Option("nats-serials", "A nats/ site (in end) serves only these controllers: their requests are all it "
                           "subscribes to besides broadcasts; repeatable, or a comma list (default: it learns "
                           "them from its controllers' replies).",
           default=(), convert=serials, kind=LIST, flag="nats-serial"),
    Option("nats-durable", "The durable JetStream consumer that nats/event hosts read events with; hosts "
                           "sharing it share the events (default {}).".format(DEFAULT_DURABLE),
           default=DEFAULT_DURABLE, convert=lambda value: check_durable(string(value))),
    Option("nats-pending-limit", "Bytes a nats/ end holds for messages it has not handled yet; past it, "
                                 "messages are dropped with a warning (slow consumer) (default 1048576).",
           default=DEFAULT_PENDING, convert=integer(65536), read=read_integer),
)
