"""The ws/ and wss/ (WebSocket) server and client connectors."""
from uhppoted_tunnel.transports.ws.maker import WSConnectorMaker

ws = WSConnectorMaker("ws")
wss = WSConnectorMaker("wss")
