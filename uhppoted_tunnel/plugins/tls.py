"""The tls/server and tls/client connectors."""
from uhppoted_tunnel.connectors.tls import TLSConnectorMaker

tls = TLSConnectorMaker()
