"""The xmpp/client connectors."""
from uhppoted_tunnel.connectors.xmpp import XMPPConnectorMaker

xmpp = XMPPConnectorMaker()
