"""The ip/out connector."""
from uhppoted_tunnel.ends.ip import IPConnectorMaker

ip = IPConnectorMaker()
