"""The zmq/server and zmq/client connectors."""
from uhppoted_tunnel.transports.zmq.maker import ZMQConnectorMaker

zmq = ZMQConnectorMaker()
