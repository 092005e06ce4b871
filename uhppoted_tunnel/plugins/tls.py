"""The tls/server and tls/client connectors."""
from uhppoted_tunnel.transports.tls.secure import TLSConnectorMaker

tls = TLSConnectorMaker()
