"""The udp/listen and udp/broadcast connectors."""
from uhppoted_tunnel.connectors.udp import UDPConnectorMaker

udp = UDPConnectorMaker()
