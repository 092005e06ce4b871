# -*- mode: python -*-
"""
Deploy a tunnel with twistd from a TOML file:

    UHTUNNEL_CONFIG=/etc/uhppoted/uhppoted-tunnel.toml#host twistd -n -y uhtunnel.tac

(uhppoted-tunnel sample tac > uhtunnel.tac writes this file.)

UHTUNNEL_CONFIG takes what --config takes (FILE#SECTION, FILE::SECTION,
FILE); UHTUNNEL_ARGS may add command-line flags (e.g. "--debug").
"""

import os
import shlex
import sys

from twisted.application.service import Application
from twisted.python import usage

from uhppoted_tunnel.app.options import Options
from uhppoted_tunnel.app.tap import makeService

options = Options()
try:
    options.parseOptions(
        ["--config", os.environ.get("UHTUNNEL_CONFIG", "/etc/uhppoted/uhppoted-tunnel.toml#host")]
        + shlex.split(os.environ.get("UHTUNNEL_ARGS", ""))
    )
except usage.UsageError as e:
    sys.stderr.write("uhtunnel.tac: {}\n".format(e))
    raise SystemExit(2)

application = Application("uhppoted-tunnel")
makeService(options).setServiceParent(application)
