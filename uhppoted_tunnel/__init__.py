"""
Relays the UHPPOTE access controller UDP protocol across networks.

A tunnel joins one *in* connector to one *out* connector; see README.rst.
"""

__version__ = "0.1.0"
