"""The http and https connectors."""
from uhppoted_tunnel.connectors.http import HTTPConnectorMaker

http = HTTPConnectorMaker()
