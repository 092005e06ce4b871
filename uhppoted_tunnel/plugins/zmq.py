"""The zmq/server and zmq/client connectors."""
from uhppoted_tunnel.connectors.zmq import ZMQConnectorMaker

zmq = ZMQConnectorMaker()
