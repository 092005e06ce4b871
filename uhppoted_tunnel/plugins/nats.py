"""The nats/client connectors, and natss/ over TLS."""
from uhppoted_tunnel.core.declare import BOTH, ConnectorPlugin
from uhppoted_tunnel.transports.nats import options

nats = ConnectorPlugin("nats", "uhppoted_tunnel.transports.nats.maker:NATSConnectorMaker",
                       {"nats/client:": (BOTH, False), "nats/event/client:": (BOTH, True)},
                       arguments=["nats"], extra="nats", options=options.OPTIONS, title="NATS (nats/, natss/)")
natss = ConnectorPlugin("natss", "uhppoted_tunnel.transports.nats.maker:NATSConnectorMaker",
                        {"natss/client:": (BOTH, False), "natss/event/client:": (BOTH, True)},
                        arguments=["natss"], extra="nats", secure=("natss/client:", "natss/event/client:"))
