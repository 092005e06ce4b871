"""
The twistd plugin: C{twistd -n uhtunnel --in CONNECTOR --out CONNECTOR}.
"""

from twisted.application.service import ServiceMaker

uhtunnel = ServiceMaker(
    "uhppoted-tunnel",
    "uhppoted_tunnel.app.tap",
    "Relays the UHPPOTE access controller UDP protocol across networks",
    "uhtunnel",
)
