"""The ws/ and wss/ (WebSocket) server and client connectors."""
from uhppoted_tunnel.connectors.websocket import WSConnectorMaker

ws = WSConnectorMaker("ws")
wss = WSConnectorMaker("wss")
