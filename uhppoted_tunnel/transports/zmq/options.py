# -*- test-case-name: tests.unit.test_options -*-
"""
The options of the zmq/ ends: CURVE key files. Light: no pyzmq here.
"""

from uhppoted_tunnel.core.declare import Option

OPTIONS = (
    Option("zmq-server-key", "CURVE for zmq/ ends: the server's key file (zmq.auth.create_certificates "
                             "makes them): NAME.key_secret on a zmq/server, NAME.key on a zmq/client."),
    Option("zmq-client-key", "A zmq/client's own CURVE key file (NAME.key_secret)."),
    Option("zmq-authorized-keys", "A folder of the public key files (*.key) of the clients a "
                                  "zmq/server accepts."),
)
