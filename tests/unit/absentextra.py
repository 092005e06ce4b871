"""
A transport module whose package is not installed, for
L{tests.unit.test_declare}: importing it fails as importing
C{uhppoted_tunnel.transports.zmq.maker} fails without pyzmq.
"""

import uhppoted_tunnel_test_absent_package  # noqa: F401  (never installed)

Maker = None
