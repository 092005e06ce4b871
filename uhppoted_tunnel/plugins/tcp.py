"""The tcp/server and tcp/client connectors."""
from uhppoted_tunnel.connectors.stream import StreamConnectorMaker

tcp = StreamConnectorMaker("tcp")
