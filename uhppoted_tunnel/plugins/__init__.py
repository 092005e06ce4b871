"""
Connector plugins, found with
C{twisted.plugin.getPlugins(IConnectorMaker, uhppoted_tunnel.plugins)}.

Like C{twisted.plugins}, this package's path covers every
C{uhppoted_tunnel/plugins} folder on C{sys.path} (one without an
C{__init__.py}), so another distribution can add a connector kind by
installing a module here (C{tests/outoftree} does). A plugin module is a
declaration that imports nothing heavy: one
L{uhppoted_tunnel.core.declare.ConnectorPlugin} naming its prefixes and
their roles, the module that builds its ends (imported only when a
connector string names one of its prefixes), the pip extra that module
needs, and its options, declared in a light C{options.py} beside its
transport::

    zmq = ConnectorPlugin("zmq", "uhppoted_tunnel.transports.zmq.ends:ZMQConnectorMaker",
                          stream_kinds("zmq"), extra="zmq", options=options.OPTIONS)

The options become flags, TOML keys, defaults and C{check} validations,
and C{--help} lists them under the plugin's title.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
