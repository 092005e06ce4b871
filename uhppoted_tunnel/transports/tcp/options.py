# -*- test-case-name: tests.unit.test_options -*-
"""
The options of the tcp/ (and tls/) client ends: the HTTP proxy they dial
through. Light: the proxy module is imported only to check a value given.
"""

from uhppoted_tunnel.core.declare import Option


def proxy_value(value):
    """
    The C{proxy} converter: the text, once L{uhppoted_tunnel.transports.proxy}
    parses it.
    """
    from uhppoted_tunnel.transports.proxy import check_proxy

    return check_proxy(value)


OPTIONS = (
    Option("proxy", "Client ends (tcp/client, tls/client) dial HOST:PORT through this HTTP proxy with "
                    "CONNECT: http://[USER:PASS@]HOST[:PORT] (port 1080 if none); 'none' ignores the "
                    "proxy environment variables (default: https_proxy/HTTPS_PROXY for tls/, "
                    "http_proxy for tcp/, then all_proxy/ALL_PROXY, less no_proxy/NO_PROXY, as curl).",
           convert=proxy_value),
)
