"""The loop/server and loop/client connectors, from another distribution."""
from uhppoted_tunnel.core.declare import BOTH, ConnectorPlugin

from uhppoted_tunnel_loop import options

loop = ConnectorPlugin("loop", "uhppoted_tunnel_loop.maker:LoopConnectorMaker",
                       {"loop/server:": (BOTH, False), "loop/client:": (BOTH, False)},
                       options=options.OPTIONS, title="Loop (loop/, out of tree)")
