# -*- test-case-name: tests.unit.test_spec -*-
"""
Connector strings, as the Go tunnel writes them.

A connector string is a kind prefix followed by an address, optionally
with a network interface to bind to::

    udp/listen:0.0.0.0:60000
    tcp/client::eth0:192.0.2.10:12345      (bound to eth0)
    tcp/server:[::1]:12345
    http/0.0.0.0:8080

The prefixes come from the connector maker plugins, so parsing only splits
the string; each maker interprets the address. Finding the plugins imports
only their declarations (L{uhppoted_tunnel.core.declare}); a transport's
module is imported when a connector string names one of its prefixes.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache

from twisted.plugin import getPlugins

import uhppoted_tunnel.plugins
from uhppoted_tunnel.interfaces import IConnectorMaker, IConnectorPlugin


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


@cache
def installed():
    """
    The connector plugins installed, scanned once per process (the options,
    the file's keys and the connector strings all ask).

    :return: a tuple of L{IConnectorMaker} providers, some also
        L{IConnectorPlugin}.
    """
    return tuple(getPlugins(IConnectorMaker, uhppoted_tunnel.plugins))


def connector_plugins():
    """
    Every installed connector plugin's declaration, by name.

    :return: a list of L{IConnectorPlugin} providers, sorted by name.
    """
    found = [plugin for plugin in installed() if IConnectorPlugin.providedBy(plugin)]
    return sorted(found, key=lambda plugin: plugin.name)


class Makers(Mapping):
    """
    The installed connector makers by prefix. A plugin declared with
    L{uhppoted_tunnel.core.declare.ConnectorPlugin} is loaded (its module
    imported) when one of its prefixes is looked up; a plain
    L{IConnectorMaker} plugin is its own maker.

    :param plugins: L{IConnectorMaker} providers, some also
        L{IConnectorPlugin}.
    """

    def __init__(self, plugins):
        self._plugins = {prefix: plugin for plugin in plugins for prefix in plugin.prefixes}

    def __getitem__(self, prefix):
        plugin = self._plugins[prefix]
        return plugin.load() if IConnectorPlugin.providedBy(plugin) else plugin

    def __iter__(self):
        return iter(self._plugins)

    def __len__(self):
        return len(self._plugins)

    def declared(self, prefix):
        """
        The plugin that declares C{prefix}, without loading it.
        """
        return self._plugins[prefix]


def connector_makers():
    """
    Every installed connector maker, mapped from each prefix it builds.

    :return: a L{Makers} mapping of prefix to L{IConnectorMaker} provider.
    """
    return Makers(installed())


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
