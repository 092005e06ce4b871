"""The zmq/server and zmq/client connectors."""
from uhppoted_tunnel.core.declare import ConnectorPlugin, stream_kinds
from uhppoted_tunnel.transports.zmq import options

zmq = ConnectorPlugin("zmq", "uhppoted_tunnel.transports.zmq.maker:ZMQConnectorMaker", stream_kinds("zmq"),
                      extra="zmq", options=options.OPTIONS, title="ZeroMQ (zmq/)")
