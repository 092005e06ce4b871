"""The xmpp/client connectors."""
from uhppoted_tunnel.core.declare import BOTH, ConnectorPlugin
from uhppoted_tunnel.transports.xmpp import options

xmpp = ConnectorPlugin("xmpp", "uhppoted_tunnel.transports.xmpp.maker:XMPPConnectorMaker",
                       {"xmpp/client:": (BOTH, False), "xmpp/event/client:": (BOTH, True)},
                       options=options.OPTIONS, title="XMPP (xmpp/)")
