"""The ip/out connector."""
from uhppoted_tunnel.connectors.ip import IPConnectorMaker

ip = IPConnectorMaker()
