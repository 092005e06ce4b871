"""The tcp/server and tcp/client connectors."""
from uhppoted_tunnel.transports.tcp.maker import StreamConnectorMaker

tcp = StreamConnectorMaker("tcp")
