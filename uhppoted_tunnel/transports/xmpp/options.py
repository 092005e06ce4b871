# -*- test-case-name: tests.unit.test_options -*-
"""
The options of the xmpp/ ends: the account's password, the peer, the
server and the send rate. Light: no twisted.words here.
"""

from uhppoted_tunnel.core.declare import Option
from uhppoted_tunnel.core.values import integer, read_integer

#: bytes per second sent to the server, under prosody's 10 kB/s
DEFAULT_XMPP_RATE = 9000

OPTIONS = (
    Option("xmpp-password-file", "The file holding the password of an xmpp/ end's account (its first line)."),
    Option("xmpp-peer", "The JID of the other half's account, for an xmpp/ end: user@domain (any of its "
                        "resources) or user@domain/resource."),
    Option("xmpp-server", "The XMPP server's HOST:PORT, for an xmpp/ end (default: as the account's "
                          "domain's DNS SRV records say, or DOMAIN:5222)."),
    Option("xmpp-rate", "Bytes per second an xmpp/ end sends to its server, under the server's limit "
                        "(default {}: prosody allows 10 kB/s).".format(DEFAULT_XMPP_RATE),
           default=DEFAULT_XMPP_RATE, convert=integer(256), read=read_integer),
)
