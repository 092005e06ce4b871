"""The ws/ and wss/ (WebSocket) server and client connectors."""
from uhppoted_tunnel.core.declare import ConnectorPlugin, stream_kinds
from uhppoted_tunnel.transports.ws import options

ws = ConnectorPlugin("ws", "uhppoted_tunnel.transports.ws.maker:WSConnectorMaker", stream_kinds("ws"),
                     arguments=["ws"], extra="ws", options=options.OPTIONS, title="WebSocket (ws/, wss/)")
wss = ConnectorPlugin("wss", "uhppoted_tunnel.transports.ws.maker:WSConnectorMaker", stream_kinds("wss"),
                      arguments=["wss"], extra="ws", secure=stream_kinds("wss"))
