"""The xmpp/client connectors."""
from uhppoted_tunnel.transports.xmpp.maker import XMPPConnectorMaker

xmpp = XMPPConnectorMaker()
