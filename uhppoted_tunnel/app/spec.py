# -*- test-case-name: tests.unit.test_spec -*-
"""
The installed connector plugins, found once per process: which maker
builds each connector-string prefix (the strings themselves are
L{uhppoted_tunnel.core.spec}'s).

Finding the plugins imports only their declarations
(L{uhppoted_tunnel.core.declare}); a transport's module is imported when
a connector string names one of its prefixes.
"""

from collections.abc import Mapping
from functools import cache

from twisted.plugin import getPlugins

import uhppoted_tunnel.plugins
from uhppoted_tunnel.interfaces import IConnectorMaker, IConnectorPlugin


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


