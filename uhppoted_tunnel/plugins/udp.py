"""The udp/listen and udp/broadcast connectors."""
from uhppoted_tunnel.ends.udp import UDPConnectorMaker

udp = UDPConnectorMaker()
