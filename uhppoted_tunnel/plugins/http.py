"""The http and https connectors."""
from uhppoted_tunnel.ends.http import HTTPConnectorMaker

http = HTTPConnectorMaker()
