"""The tcp/server and tcp/client connectors."""
from uhppoted_tunnel.link.ends import StreamConnectorMaker

tcp = StreamConnectorMaker("tcp")
