# -*- test-case-name: tests.unit.test_declare -*-
"""
How a connector plugin declares itself, importing nothing heavy.

A plugin module in L{uhppoted_tunnel.plugins} holds one
L{ConnectorPlugin}: its prefixes and their roles, the module (a string)
whose maker builds its ends, the pip extra that module needs, and its
L{Option}s (from a light C{options.py} beside its transport). The plugin
scan imports only these declarations; a transport's own modules are
imported when a tunnel names one of its prefixes (L{ConnectorPlugin.load}),
as twistd's C{ServiceMaker} names its module.
"""

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from twisted.plugin import IPlugin
from zope.interface import implementer

from uhppoted_tunnel.interfaces import IN, OUT, IConnectorPlugin
from uhppoted_tunnel.core.values import string

#: the kinds of option: C{--NAME VALUE}, C{--NAME} (on/off), and a
#: repeatable C{--FLAG VALUE} whose values add up to a list
PARAMETER, FLAG, LIST = "parameter", "flag", "list"

BOTH = frozenset([IN, OUT])

#: the distribution's name, as pip knows it
DISTRIBUTION = "uhppoted-tunnel"


class MissingExtra(ValueError):
    """
    A connector's transport needs a package that is not installed: its pip
    extra was not asked for. The message is one line that names the
    command which installs it.
    """

    def __init__(self, plugin, missing):
        ValueError.__init__(
            self,
            "the {name}/ connectors need the Python package '{missing}', which is not installed: "
            "pip install '{distribution}[{extra}]'".format(
                name=plugin.name, missing=missing, distribution=DISTRIBUTION, extra=plugin.extra))
        self.extra = plugin.extra
        self.missing = missing


@dataclass(frozen=True)
class Option:
    """
    One setting: a command-line flag and a TOML key.

    :ivar name: the TOML key, and the flag (C{--NAME}) unless C{flag} says.
    :ivar help: the C{--help} text, defaults included.
    :ivar default: the value when neither the command line nor the file
        gives one.
    :ivar convert: C{value -> converted}, the value as the TOML file types
        it, raising C{ValueError} with a message such as "expected a
        string, got 3" (see L{uhppoted_tunnel.core.values}).
    :ivar read: C{text -> value}, the command-line text typed as the file
        would type it (C{str}, L{values.read_integer}, ...).
    :ivar kind: L{PARAMETER}, L{FLAG} or L{LIST}.
    :ivar flag: the command-line flag when it differs from the key
        (C{ws-origin} for C{ws-origins}).
    :ivar validate: what C{uhppoted-tunnel check} checks beyond C{convert}
        (a file that must exist, say): C{(value, settings) -> message or
        None}, the message one line naming the problem and the fix.
    """

    name: str
    help: str
    default: Any = None
    convert: Callable = string
    read: Callable = str
    kind: str = PARAMETER
    flag: str | None = None
    validate: Callable | None = None

    @property
    def command_line(self):
        """
        The flag's name, without its dashes.
        """
        return self.flag or self.name


def stream_kinds(name):
    """
    The four prefixes of a stream transport and what each can do: a server
    and a client, each in either role, and their event-tunnel variants.

    :return: a dict for L{ConnectorPlugin}'s C{kinds}.
    """
    return {
        name + "/server:": (BOTH, False),
        name + "/client:": (BOTH, False),
        name + "/event/server:": (BOTH, True),
        name + "/event/client:": (BOTH, True),
    }


def installed_missing(extra):
    """
    The distributions of this package's C{extra} that are not installed
    (L{uhppoted_tunnel.core.extras.missing}).
    """
    # importlib.metadata (and the zipfile and csv it brings) only when a
    # plugin that needs an extra is loaded: a core tunnel never pays for it
    from uhppoted_tunnel.core import extras

    return extras.missing(DISTRIBUTION, extra)


@implementer(IPlugin, IConnectorPlugin)
class ConnectorPlugin:
    """
    A connector plugin's declaration, and the lazy L{IConnectorMaker} that
    builds its ends once the named module is imported.

    :param name: the transport's name (C{"tcp"}), which titles its options.
    :param maker: C{"module:attribute"}: a callable that, given
        C{arguments}, returns the L{IConnectorMaker}.
    :param kinds: C{prefix -> (roles, relays events)}, in order.
    :param arguments: passed to C{maker}.
    :param extra: the pip extra C{module} needs (C{"ws"}), or C{None} for
        the core install.
    :param options: the transport's L{Option}s.
    :param secure: the prefixes whose ends use TLS, which C{check} examines
        (a prefix ending C{/client:} is a TLS client; any other a server).
    :param title: how C{--help} titles the options' group.
    :param missing: C{extra -> names} of the extra's distributions that are
        not installed (by default read from the metadata of
        L{DISTRIBUTION}).
    """

    def __init__(self, name, maker, kinds, *, arguments=(), extra=None, options=(), secure=(), title=None,
                 missing=None):
        self.name = name
        self.maker = maker
        self.arguments = tuple(arguments)
        self.extra = extra
        self.options = tuple(options)
        self.secure = tuple(secure)
        self.title = title or name
        self._kinds = {prefix: (frozenset(roles), bool(events)) for prefix, (roles, events) in kinds.items()}
        self.prefixes = tuple(self._kinds)
        self._loaded = None
        self._missing = missing or installed_missing

    @property
    def module(self):
        """
        The module that builds this plugin's ends, by name.
        """
        return self.maker.partition(":")[0]

    def roles(self, prefix):
        return self._kinds[prefix][0]

    def relaysEvents(self, prefix):
        return self._kinds[prefix][1]

    def load(self):
        """
        Import the module and make the maker, once.

        :return: the L{IConnectorMaker} provider.
        :raise MissingExtra: when the plugin's extra is not installed (a
            distribution it adds is missing), or the module needs a package
            that is not installed and the plugin declares an extra.
        """
        if self._loaded is None:
            absent = self._missing(self.extra) if self.extra is not None else []
            if absent:
                raise MissingExtra(self, absent[0])
            module, _, attribute = self.maker.partition(":")
            try:
                imported = importlib.import_module(module)
            except ModuleNotFoundError as e:
                missing = (e.name or "").partition(".")[0]
                if self.extra is None or not missing or missing == __name__.partition(".")[0]:
                    raise
                raise MissingExtra(self, missing) from None
            self._loaded = getattr(imported, attribute)(*self.arguments)
        return self._loaded

    def makeEnd(self, spec, role, settings, router, reactor):
        return self.load().makeEnd(spec, role, settings, router, reactor)
