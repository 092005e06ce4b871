"""The ip/out connector."""
from uhppoted_tunnel.core.declare import ConnectorPlugin
from uhppoted_tunnel.interfaces import OUT

ip = ConnectorPlugin("ip", "uhppoted_tunnel.ends.ip:IPConnectorMaker", {"ip/out:": ({OUT}, False)})
