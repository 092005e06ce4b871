# -*- test-case-name: tests.unit.test_spec -*-
"""
Connector strings, as the Go tunnel writes them.

A connector string is a kind prefix followed by an address, optionally
with a network interface to bind to::

    udp/listen:0.0.0.0:60000
    tcp/client::eth0:192.0.2.10:12345      (bound to eth0)
    tcp/server:[::1]:12345
    http/0.0.0.0:8080

L{parse} only splits the string, given the makers by prefix; each maker
interprets the address. Which makers are installed is
L{uhppoted_tunnel.app.spec}'s to find.
"""

from dataclasses import dataclass

from uhppoted_tunnel.core.hints import closest_prefix


@dataclass(frozen=True)
class ConnectorSpec:
    """
    A connector string split into its parts.

    :ivar text: the string as given.
    :ivar prefix: the kind prefix, separator included (C{"tcp/server:"}).
    :ivar interface: the network interface to bind to, or C{None}.
    :ivar address: the rest.
    """

    text: str
    prefix: str
    interface: str | None
    address: str

    @property
    def kind(self):
        """
        The prefix without its separator, e.g. C{tcp/server}.
        """
        return self.prefix.rstrip(":/") if self.prefix.endswith(":") else self.prefix.rstrip("/")


def parse(text, makers):
    """
    Split a connector string.

    :param text: the connector string.
    :param makers: a dict of prefix to maker (see L{connector_makers}).
    :return: C{(maker, spec)}.
    :raise ValueError: for an unknown kind or a malformed interface.
    """
    prefix = max((p for p in makers if text.startswith(p)), key=len, default=None)
    if prefix is None:
        meant = closest_prefix(text, makers)
        if meant is not None:
            raise ValueError("unknown connector '{}': did you mean {}?".format(text, meant))
        kinds = ", ".join(sorted(makers))
        raise ValueError("unknown connector '{}' (expected one of {})".format(text, kinds))
    rest = text[len(prefix) :]
    interface = None
    if rest.startswith(":") and ":" in rest[1:]:
        interface, _, rest = rest[1:].partition(":")
        if not interface or not rest:
            raise ValueError("invalid interface binding in '{}' (expected e.g. {}:eth0:ADDRESS)".format(text, prefix))
    elif prefix.endswith("/") and rest.startswith("::") and ":" in rest[2:]:
        interface, _, rest = rest[2:].partition(":")
    if not rest:
        raise ValueError("connector '{}' has no address".format(text))
    return makers[prefix], ConnectorSpec(text, prefix, interface, rest)
