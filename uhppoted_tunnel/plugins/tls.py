"""The tls/server and tls/client connectors."""
from uhppoted_tunnel.core.declare import ConnectorPlugin, stream_kinds
from uhppoted_tunnel.transports.tls import options

tls = ConnectorPlugin("tls", "uhppoted_tunnel.transports.tls.secure:TLSConnectorMaker", stream_kinds("tls"),
                      options=options.OPTIONS, secure=stream_kinds("tls"),
                      title="TLS (tls/, wss/, grpcs/, https/)")
