"""
The twistd plugins: C{twistd -n uhtunnel --in CONNECTOR --out CONNECTOR}, and
the reactor C{twistd -r uhppoted} chooses.
"""

from twisted.application.reactors import Reactor
from twisted.application.service import ServiceMaker

uhtunnel = ServiceMaker(
    "uhppoted-tunnel",
    "uhppoted_tunnel.app.tap",
    "Relays the UHPPOTE access controller UDP protocol across networks",
    "uhtunnel",
)

#: C{twistd -r uhppoted}: the tunnel's own epoll reactor
#: (L{uhppoted_tunnel.link.reactor}), which C{uhppoted-tunnel} installs itself.
uhppoted = Reactor("uhppoted", "uhppoted_tunnel.link.reactor",
                   "the uhppoted-tunnel's epoll reactor (fewer costs per event; Linux)")
