"""The tcp/server and tcp/client connectors."""
from uhppoted_tunnel.core.declare import ConnectorPlugin, stream_kinds
from uhppoted_tunnel.transports.tcp import options

tcp = ConnectorPlugin("tcp", "uhppoted_tunnel.transports.tcp.maker:StreamConnectorMaker", stream_kinds("tcp"),
                      arguments=["tcp"], options=options.OPTIONS, title="tcp/ and tls/ client")
