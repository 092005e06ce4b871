"""
Relays the UHPPOTE access controller UDP protocol across networks.

A tunnel joins one *in* connector to one *out* connector; see README.rst.
"""

import os

__version__ = "0.1.0"

#: The socket-activation variables as the process started with them, read
#: before C{twisted.internet.endpoints} is imported (which removes them):
#: see L{uhppoted_tunnel.core.listenfds}.
LISTEN_ENVIRONMENT = {name: os.environ[name] for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")
                      if name in os.environ}
