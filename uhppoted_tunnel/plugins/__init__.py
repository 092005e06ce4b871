"""
Connector maker plugins, found with
C{twisted.plugin.getPlugins(IConnectorMaker, uhppoted_tunnel.plugins)}.

Like C{twisted.plugins}, this package's path covers every
C{uhppoted_tunnel/plugins} folder on C{sys.path}, so another distribution
can add a connector kind by installing a module here.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
