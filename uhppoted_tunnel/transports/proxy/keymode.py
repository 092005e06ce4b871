# -*- test-case-name: tests.unit.test_sshproxy -*-
"""
Whether others than its owner may read an SSH key file, apart from the
key handling (L{uhppoted_tunnel.transports.proxy.sshfiles}), so that
choosing a proxy loads no SSH code (conch) until an C{ssh://} proxy is
used.
"""

import os
import stat


def identity_mode_warning(path):
    """
    A warning when others than the owner may read the key file at
    C{path} (as OpenSSH refuses it: "UNPROTECTED PRIVATE KEY FILE"), or
    C{None}.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return ("--ssh-identity '{}' can be read by others (mode {:04o}): chmod 600 it".format(
            path, stat.S_IMODE(mode)))
    return None
