"""
The tests. They run as if no HTTP proxy were configured: the proxy
variables of the environment (which client ends, curl and their children
would follow, even to 127.0.0.1) are removed once, here; a test that wants
one passes it to the child or to L{uhppoted_tunnel.app.options.Options}.
"""

import os

for _name in ("http_proxy", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY",
              "HTTP_PROXY"):
    os.environ.pop(_name, None)
