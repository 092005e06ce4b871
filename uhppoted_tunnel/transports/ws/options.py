# -*- test-case-name: tests.unit.test_options -*-
"""
The options of the ws/ and wss/ (WebSocket) ends: allowed origins, the
bearer token, trusted reverse proxies and pings. Light: no autobahn here.
"""

from uhppoted_tunnel.core.addresses import normalize_origin, parse_networks
from uhppoted_tunnel.core.declare import LIST, Option
from uhppoted_tunnel.core.values import duration, list_of

#: how often an end pings its peer, in seconds
DEFAULT_PING = 30.0


def _network(text):
    return str(parse_networks([text])[0])


OPTIONS = (
    Option("ws-origins", "An origin (SCHEME://HOST[:PORT]) whose pages a ws/ or wss/ server admits; repeatable, "
                         "or a comma list. A request bearing any other Origin is refused (default: none).",
           default=(), convert=list_of("origins such as https://app.example.com", normalize_origin),
           kind=LIST, flag="ws-origin"),
    Option("token-file", "A file holding a bearer token: ws/ and wss/ servers require it in "
                         "'Authorization: Bearer TOKEN', clients send it (default: none)."),
    Option("trusted-proxies", "A reverse proxy (address or CIDR block) whose X-Forwarded-For a ws/ or wss/ server "
                              "logs as the peer; repeatable, or a comma list (default: none).",
           default=(), convert=list_of("addresses or CIDR blocks", _network), kind=LIST, flag="trusted-proxy"),
    Option("ws-ping", "How often ws/ and wss/ ends ping their peer; a peer that does not answer "
                      "within as long is disconnected (default 30s; 0 for no pings).",
           default=DEFAULT_PING, convert=duration()),
)
