"""The http and https connectors."""
from uhppoted_tunnel.core.declare import ConnectorPlugin
from uhppoted_tunnel.interfaces import IN

http = ConnectorPlugin("http", "uhppoted_tunnel.ends.http:HTTPConnectorMaker",
                       {"http/": ({IN}, False), "https/": ({IN}, False)}, secure=["https/"])
