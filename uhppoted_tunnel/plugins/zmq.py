"""The zmq/server and zmq/client connectors."""
from uhppoted_tunnel.transports.zmq.ends import ZMQConnectorMaker

zmq = ZMQConnectorMaker()
