"""The udp/listen and udp/broadcast connectors."""
from uhppoted_tunnel.core.declare import BOTH, ConnectorPlugin
from uhppoted_tunnel.interfaces import IN, OUT

udp = ConnectorPlugin("udp", "uhppoted_tunnel.ends.udp:UDPConnectorMaker",
                      {"udp/listen:": ({IN}, False), "udp/broadcast:": ({OUT}, False), "udp/event:": (BOTH, True)})
