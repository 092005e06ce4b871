"""
Connector implementations: one module per transport.

Each module defines the ends of its transport and a connector maker; the
makers are exported as plugins from L{uhppoted_tunnel.plugins}.
"""
